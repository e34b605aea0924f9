//! Postgres access: one pool per process, and one way to touch tenant data.
//!
//! [`Db`] owns the process-wide pool and never hands it out: request code gets a [`Tx`] from
//! [`Db::begin`], a transaction whose first statements set the user/org context with `set_config(..., true)`
//! (transaction-local, so pooled connections and PgBouncer in transaction mode cannot carry one request's
//! identity into the next). Statements are named and cached per connection, or unnamed where the connection
//! goes through a pooler that cannot keep them (`DATABASE_STATEMENTS`, [`statements`]); nothing else depends
//! on session state.

mod error;
pub(crate) mod guard;
pub(crate) mod migrate;
pub(crate) mod provision;
mod statements;
pub(crate) mod tls;
pub(crate) mod tx;

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, QueueMode, RecyclingMethod, Runtime};

use crate::config::{DatabaseConfig, RlsFailureMode};
use crate::error::{AppError, ErrorCode};

pub(crate) use error::map_db_error;
pub(crate) use statements::{Param, StatementMode};
pub(crate) use tx::{FirstRows, MemberAccess, RlsContext, Statement, Tx};

/// Counters the health and metrics endpoints read.
#[derive(Debug, Default)]
pub struct DbStats {
    /// RLS contexts that could not be set.
    pub rls_failures: AtomicU64,
    /// Requests shed because no connection became free within the wait timeout.
    pub acquire_timeouts: AtomicU64,
    /// When the recent RLS failures happened (last 5 minutes).
    rls_recent: std::sync::Mutex<std::collections::VecDeque<std::time::Instant>>,
    /// The latest pool wait times, in microseconds (a ring of `WAIT_SAMPLES`).
    waits: std::sync::Mutex<std::collections::VecDeque<u32>>,
}

const WAIT_SAMPLES: usize = 2048;
const RLS_WINDOW: Duration = Duration::from_secs(300);

/// Pool wait-time percentiles over the latest acquisitions, in milliseconds.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WaitStats {
    pub samples: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl DbStats {
    fn record_wait(&self, waited: Duration) {
        let us = waited.as_micros().min(u128::from(u32::MAX)) as u32;
        let mut w = self.waits.lock().unwrap_or_else(|p| p.into_inner());
        if w.len() == WAIT_SAMPLES {
            w.pop_front();
        }
        w.push_back(us);
    }

    pub fn wait_stats(&self) -> WaitStats {
        let mut samples: Vec<u32> = self.waits.lock().unwrap_or_else(|p| p.into_inner()).iter().copied().collect();
        if samples.is_empty() {
            return WaitStats::default();
        }
        samples.sort_unstable();
        let pick = |p: f64| {
            let i = ((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1;
            f64::from(samples[i]) / 1000.0
        };
        WaitStats {
            samples: samples.len(),
            p50_ms: pick(0.50),
            p90_ms: pick(0.90),
            p99_ms: pick(0.99),
            max_ms: f64::from(samples[samples.len() - 1]) / 1000.0,
        }
    }

    fn record_rls_failure(&self) {
        self.rls_failures.fetch_add(1, Ordering::Relaxed);
        let now = std::time::Instant::now();
        let mut recent = self.rls_recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.push_back(now);
        while recent.front().is_some_and(|t| now.duration_since(*t) > RLS_WINDOW) {
            recent.pop_front();
        }
    }

    /// RLS failures in the last 5 minutes.
    pub fn rls_failures_last_5_min(&self) -> usize {
        let now = std::time::Instant::now();
        let recent = self.rls_recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.iter().filter(|t| now.duration_since(**t) <= RLS_WINDOW).count()
    }
}

/// Pool status for health reporting.
#[derive(Debug, Clone, Copy, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolStatus {
    pub size: usize,
    pub idle: usize,
    pub active: usize,
    pub waiting: usize,
    pub max: usize,
}

/// A pooled connection kept by a background task (see [`Db::hold`]).
pub struct HeldConnection(Option<deadpool_postgres::Object>, StatementMode);

impl HeldConnection {
    /// One statement without tenant context (same rules as [`Db::unscoped`]).
    pub async fn unscoped(&self, sql: &str, params: &[Param<'_>]) -> Result<Vec<tokio_postgres::Row>, AppError> {
        let conn = self.0.as_ref().ok_or_else(|| AppError::internal(anyhow::anyhow!("connection discarded")))?;
        statements::query(conn, self.1, sql, params).await.map_err(map_db_error)
    }

    pub fn is_closed(&self) -> bool {
        self.0.as_ref().is_none_or(|c| c.is_closed())
    }

    /// Drop the connection instead of returning it to the pool (its state is unknown after a failure).
    pub fn discard(mut self) {
        if let Some(conn) = self.0.take() {
            let _ = deadpool_postgres::Object::take(conn);
        }
    }
}

/// The database handle held in the app state.
#[derive(Clone)]
pub struct Db {
    pool: Pool,
    /// `db_pool_wait_seconds`, registered once.
    pool_wait: metrics::Histogram,
    statement_timeout_ms: String,
    statements: StatementMode,
    rls_failure_mode: RlsFailureMode,
    stats: Arc<DbStats>,
}

impl Db {
    /// Build the pool. Connections are opened lazily; [`guard::check_runtime_role`] runs the first query.
    pub fn connect(cfg: &DatabaseConfig, url: &str) -> anyhow::Result<Db> {
        let mut pg = tokio_postgres::Config::from_str(url)
            .map_err(|_| anyhow::anyhow!("DATABASE_URL is not a valid connection string"))?;
        pg.application_name("intellifill");
        pg.connect_timeout(cfg.connect_timeout);
        pg.keepalives(true);
        let tls = tls::connector(cfg.ca_file.as_deref())?;
        let manager = Manager::from_config(pg, tls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(cfg.pool_max_size)
            .wait_timeout(Some(cfg.pool_wait_timeout))
            .create_timeout(Some(cfg.connect_timeout))
            .recycle_timeout(Some(Duration::from_secs(5)))
            // The most recently returned connection first: below full load the same few backends serve every
            // request and stay warm (the default, oldest first, rotates through all of them; measured in
            // docs/PERFORMANCE.md).
            .queue_mode(QueueMode::Lifo)
            .runtime(Runtime::Tokio1)
            .build()?;
        tracing::info!(
            statements = cfg.statements.as_str(),
            "database statements: {} (DATABASE_STATEMENTS)",
            cfg.statements.as_str()
        );
        Ok(Db {
            pool,
            pool_wait: metrics::histogram!("db_pool_wait_seconds"),
            statement_timeout_ms: cfg.statement_timeout.as_millis().to_string(),
            statements: cfg.statements,
            rls_failure_mode: cfg.rls_failure_mode,
            stats: Arc::new(DbStats::default()),
        })
    }

    pub fn stats(&self) -> &DbStats {
        &self.stats
    }

    pub fn pool_status(&self) -> PoolStatus {
        let s = self.pool.status();
        PoolStatus {
            size: s.size,
            idle: s.available,
            active: s.size - s.available,
            waiting: s.waiting,
            max: s.max_size,
        }
    }

    /// Readiness probe: one round trip on a pooled connection.
    pub async fn ping(&self) -> Result<(), AppError> {
        let conn = self.acquire().await?;
        conn.simple_query("SELECT 1").await.map_err(map_db_error)?;
        Ok(())
    }

    /// One statement outside any request transaction and without tenant context, on a pooled connection.
    /// For the audit writer and the security lock-out, which go through SECURITY DEFINER functions that can
    /// only append audit rows or switch a user off; without context the runtime role's policies show no row
    /// and allow no write to a tenant table, so this cannot become a back door.
    pub async fn unscoped(&self, sql: &str, params: &[Param<'_>]) -> Result<Vec<tokio_postgres::Row>, AppError> {
        let conn = self.acquire().await?;
        statements::query(&conn, self.statements, sql, params).await.map_err(map_db_error)
    }

    /// Take a connection out of the pool for a long-lived background task, to keep between uses: the audit
    /// writer's own share of the pool. Once it holds one it never queues behind request traffic again (and
    /// request traffic never queues behind it); the pool lends it like any other and gets it back on drop.
    pub async fn hold(&self) -> Result<HeldConnection, AppError> {
        Ok(HeldConnection(Some(self.acquire().await?), self.statements))
    }

    /// Close the pool: idle connections are dropped now, checked-out ones when they come back.
    pub fn close(&self) {
        self.pool.close();
    }

    async fn acquire(&self) -> Result<deadpool_postgres::Object, AppError> {
        Ok(self.acquire_timed().await?.0)
    }

    /// A pooled connection and how long it took to get it.
    async fn acquire_timed(&self) -> Result<(deadpool_postgres::Object, Duration), AppError> {
        let started = std::time::Instant::now();
        let result = self.pool.get().await;
        let waited = started.elapsed();
        self.stats.record_wait(waited);
        self.pool_wait.record(waited.as_secs_f64());
        result.map(|conn| (conn, waited)).map_err(|e| match e {
            PoolError::Timeout(_) => {
                self.stats.acquire_timeouts.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("db_pool_acquire_timeouts_total").increment(1);
                AppError::new(ErrorCode::DatabaseUnavailable, "the database is busy, retry shortly").with_retry_after(1)
            }
            PoolError::Backend(e) => map_db_error(e),
            other => AppError::new(ErrorCode::DatabaseUnavailable, "the database is unavailable")
                .with_retry_after(1)
                .with_source(other),
        })
    }

    fn record_rls_failure(&self, error: &tokio_postgres::Error, ctx: &RlsContext) {
        self.stats.record_rls_failure();
        metrics::counter!("rls_context_failures_total").increment(1);
        tracing::error!(
            event = "security.rls_context_failed",
            user_id = %ctx.user_id,
            organization_id = ctx.org_id.map(tracing::field::display),
            error = %error,
            "could not set the RLS context"
        );
    }
}
