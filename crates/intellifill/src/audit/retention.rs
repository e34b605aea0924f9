//! Retention: `intellifill audit retention`, by class, whole partitions at a time.
//!
//! Each retention class (`security`, `write`, `read`, see `audit_retention_class` in migration 0006) keeps
//! its rows for its own number of days. A month partition whose end is at or before the class's cutoff (the
//! month boundary at or before now minus its days) is detached and dropped, or moved to the `audit_archive`
//! schema with `--keep-detached` (to archive, then drop by hand: docs/DEPLOY.md), and every removal is
//! recorded in `audit_retention_log`. Nothing is deleted row by row except the few expired rows a late
//! replay left in a DEFAULT partition. Runs as the owner role over a direct connection: the runtime role can
//! neither run it nor delete an audit row.

use chrono::{DateTime, Utc};

/// The retention classes, longest-kept first.
pub(crate) const CLASSES: [&str; 3] = ["security", "write", "read"];

/// Days kept per class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Retention {
    pub security_days: i32,
    pub write_days: i32,
    pub read_days: i32,
}

impl Retention {
    /// The days `class` keeps.
    pub(crate) fn days(&self, class: &str) -> i32 {
        match class {
            "security" => self.security_days,
            "write" => self.write_days,
            _ => self.read_days,
        }
    }
}

/// One partition (or the expired rows of a DEFAULT partition) removed, or to be removed in a dry run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Removed {
    pub class: &'static str,
    pub partition: String,
    pub rows: i64,
    /// The end of the partition's range (for the DEFAULT partition: the cutoff).
    pub until: DateTime<Utc>,
}

/// Options of one run.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Run {
    /// Move detached partitions to schema `audit_archive` instead of dropping them.
    pub keep_detached: bool,
    /// Report what would go; change nothing.
    pub dry_run: bool,
}

/// Apply `retention` to every class (one transaction per class); returns what was (or would be) removed.
pub(crate) async fn apply(
    client: &tokio_postgres::Client,
    retention: Retention,
    run: Run,
) -> anyhow::Result<Vec<Removed>> {
    let mut removed = Vec::new();
    for class in CLASSES {
        let rows = client
            .query(
                "SELECT leaf, leaf_rows, leaf_end FROM audit_retention_apply($1, $2, $3, $4)",
                &[&class, &retention.days(class), &run.keep_detached, &run.dry_run],
            )
            .await
            .map_err(|e| anyhow::anyhow!("retention of class {class} failed: {}", message(&e)))?;
        removed.extend(rows.iter().map(|r| Removed { class, partition: r.get(0), rows: r.get(1), until: r.get(2) }));
    }
    Ok(removed)
}

fn message(e: &tokio_postgres::Error) -> String {
    e.as_db_error().map_or_else(|| e.to_string(), |db| format!("{} ({})", db.message(), db.code().code()))
}

/// The report the command prints: one line per partition, then one per class.
pub(crate) fn report(removed: &[Removed], retention: Retention, run: Run) -> String {
    let verb = match (run.dry_run, run.keep_detached) {
        (true, _) => "would remove",
        (false, true) => "detached to audit_archive",
        (false, false) => "dropped",
    };
    let mut out = String::new();
    for r in removed {
        out.push_str(&format!(
            "{}: {verb} {} ({} row(s), before {})\n",
            r.class,
            r.partition,
            r.rows,
            r.until.to_rfc3339()
        ));
    }
    for class in CLASSES {
        let mine: Vec<&Removed> = removed.iter().filter(|r| r.class == class).collect();
        let rows: i64 = mine.iter().map(|r| r.rows).sum();
        out.push_str(&format!(
            "{class} (kept {} days): {} partition(s), {rows} row(s) {verb}\n",
            retention.days(class),
            mine.len()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_names_every_partition_and_totals_each_class() {
        let until = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").expect("time").with_timezone(&Utc);
        let removed = vec![
            Removed { class: "read", partition: "audit_log_read_202512".into(), rows: 7, until },
            Removed { class: "read", partition: "audit_log_read_default".into(), rows: 1, until },
        ];
        let retention = Retention { security_days: 2557, write_days: 1096, read_days: 400 };
        let text = report(&removed, retention, Run::default());
        assert!(text.contains("read: dropped audit_log_read_202512 (7 row(s), before 2026-01-01T00:00:00+00:00)"));
        assert!(text.contains("read (kept 400 days): 2 partition(s), 8 row(s) dropped"));
        assert!(text.contains("security (kept 2557 days): 0 partition(s), 0 row(s) dropped"));
        let dry = report(&removed, retention, Run { dry_run: true, keep_detached: false });
        assert!(dry.contains("would remove audit_log_read_202512"));
        assert_eq!(retention.days("write"), 1096);
    }
}
