//! Audit partition maintenance: months of `audit_log` partitions created ahead, by every instance.
//!
//! `audit_log` is partitioned by retention class, then by month (migration 0006). Each instance calls
//! `audit_partitions_ensure(AUDIT_PARTITIONS_AHEAD_MONTHS)` once at start and then every
//! `AUDIT_PARTITION_CHECK_SECONDS`: one statement, so one transaction, under a transaction-level advisory
//! lock (any number of instances at once, through PgBouncer in transaction mode too: nothing outlives the
//! statement). The function only ever adds partitions and moves rows out of a class's DEFAULT partition into
//! the month made for them, so the runtime role may run it; dropping partitions is retention's, owner only
//! ([`super::retention`]). An insert no month covers is never refused: it lands in the DEFAULT partition.
//!
//! Metrics: `audit_partitions_covered_until_seconds` (unix time up to which every class is covered),
//! `audit_partition_default_rows` (rows waiting in DEFAULT partitions), `audit_partitions_created_total`,
//! `audit_partition_maintenance_failures_total` and `audit_partition_maintenance_last_success_seconds`.

use chrono::{DateTime, Utc};
use tokio_postgres::types::Type;

use crate::config::PartitionConfig;
use crate::db::Db;
use crate::error::AppError;

const ENSURE: &str = "SELECT created, default_rows, covered_until FROM audit_partitions_ensure($1)";

/// What one maintenance run found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Maintained {
    /// Partitions this run created (0 when another instance had already made them).
    pub created: i32,
    /// Rows in the DEFAULT partitions after the run: rows no month could take (expired by retention).
    pub default_rows: i64,
    /// Every class has partitions up to this instant.
    pub covered_until: Option<DateTime<Utc>>,
}

/// One maintenance run (creates what is missing, moves what waits in DEFAULT partitions), with metrics.
pub(crate) async fn maintain(db: &Db, ahead_months: i32) -> Result<Maintained, AppError> {
    let result = db.unscoped(ENSURE, &[(&ahead_months, Type::INT4)]).await.and_then(|rows| {
        let row = rows.first().ok_or_else(|| AppError::internal(anyhow::anyhow!("no maintenance row")))?;
        Ok(Maintained { created: row.get(0), default_rows: row.get(1), covered_until: row.get(2) })
    });
    match &result {
        Ok(done) => {
            metrics::counter!("audit_partitions_created_total").increment(done.created.max(0) as u64);
            metrics::gauge!("audit_partition_default_rows").set(done.default_rows as f64);
            if let Some(until) = done.covered_until {
                metrics::gauge!("audit_partitions_covered_until_seconds").set(until.timestamp() as f64);
            }
            metrics::gauge!("audit_partition_maintenance_last_success_seconds").set(Utc::now().timestamp() as f64);
            if done.created > 0 {
                tracing::info!(created = done.created, covered_until = ?done.covered_until, "audit partitions created");
            }
            if done.default_rows > 0 {
                tracing::warn!(
                    rows = done.default_rows,
                    "audit rows wait in DEFAULT partitions (older than their class's retention: the next \
                     `intellifill audit retention` removes them)"
                );
            }
        }
        Err(e) => {
            metrics::counter!("audit_partition_maintenance_failures_total").increment(1);
            tracing::error!(error = %e, "audit partition maintenance failed (retried at the next interval)");
        }
    }
    result
}

/// Run [`maintain`] now and then every `check_interval`, until the returned handle is aborted.
pub(crate) fn spawn(db: Db, config: PartitionConfig) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(config.check_interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let _ = maintain(&db, config.ahead_months).await;
        }
    })
}
