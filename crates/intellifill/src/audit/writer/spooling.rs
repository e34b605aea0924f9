//! The writer's side of the disk spool: appending within `AUDIT_SPOOL_MAX_BYTES`, holding the rows that do
//! not fit (or that a failing disk refused), and replaying segments into the table one at a time.
//!
//! While rows are held the writer takes nothing more from its queues: they fill, and the admission control
//! refuses new requests (`audit_requests_refused_total{reason="spool_full"}`) rather than let anything go
//! unaudited. Every interval the writer replays the oldest segment (which frees room once the database
//! answers) and tries the held rows again: straight into the table when the spool is empty and the database
//! answers, else into the spool. At shutdown the bound no longer applies ([`Writer::finish`]).

use std::sync::atomic::Ordering;

use super::super::AuditEvent;
use super::super::spool::SegmentId;
use super::Writer;

impl Writer {
    /// Rows wait in memory because the spool had no room for them.
    pub(super) fn holding(&self) -> bool {
        !self.held.is_empty()
    }

    /// `rows` to the spool, behind any held rows; what does not fit is held.
    pub(super) async fn spool_rows(&mut self, rows: Vec<AuditEvent>) {
        if rows.is_empty() {
            return;
        }
        if self.holding() && !self.unbounded {
            self.held.extend(rows);
            return;
        }
        let rest = self.append(rows).await;
        if !rest.is_empty() {
            self.hold(rest);
        }
    }

    /// Append as many of `rows` as the bound allows (all of them at shutdown); returns the others. A failed
    /// write keeps them all for a retry, except at shutdown, where they are lost (counted).
    async fn append(&mut self, rows: Vec<AuditEvent>) -> Vec<AuditEvent> {
        let n = rows.len();
        let limit = (!self.unbounded).then_some(self.config.spool_max_bytes);
        let spool = self.spool.clone();
        let appended = tokio::task::spawn_blocking(move || {
            let result = spool.append_within(&rows, limit);
            (rows, result)
        })
        .await;
        let (mut rows, result) = match appended {
            Ok(done) => done,
            Err(e) => {
                self.lost(n as u64, &e.to_string());
                return Vec::new();
            }
        };
        match result {
            Ok((appended, _)) => {
                self.stats.spooled.fetch_add(appended as u64, Ordering::Relaxed);
                metrics::counter!("audit_events_spooled_total").increment(appended as u64);
                rows.split_off(appended)
            }
            Err(e) if self.unbounded => {
                self.lost(n as u64, &e.to_string());
                Vec::new()
            }
            Err(e) => {
                tracing::error!(events = n, error = %e, "the audit spool cannot be written: events held in memory");
                rows
            }
        }
    }

    /// Keep `rows` until the spool has room; the first of an episode is counted and logged.
    fn hold(&mut self, rows: Vec<AuditEvent>) {
        if !self.holding() {
            metrics::counter!("audit_spool_full_total").increment(1);
            tracing::warn!(
                spool_bytes = self.spool.pending_bytes(),
                max_bytes = self.config.spool_max_bytes,
                events = rows.len(),
                "audit spool full: the writer holds events and takes no more until replay frees room \
                 (audited requests are refused once memory is full)"
            );
            self.backlog.set_spool_full(true);
        }
        self.held.extend(rows);
    }

    /// The held rows again: into the table when the spool is empty and the database answers, else into the
    /// spool as far as it has room.
    pub(super) async fn retry_held(&mut self) {
        let held = std::mem::take(&mut self.held);
        if self.spool.pending_records() == 0 && !self.database_down {
            self.write_rows(held).await;
        } else {
            self.held = self.append(held).await;
        }
        if !self.holding() {
            self.backlog.set_spool_full(false);
            tracing::info!(spool_bytes = self.spool.pending_bytes(), "audit spool has room again: the writer resumes");
        }
    }

    pub(super) fn lost(&self, n: u64, why: &str) {
        self.stats.dropped.fetch_add(n, Ordering::Relaxed);
        metrics::counter!("audit_events_dropped_total").increment(n);
        tracing::error!(events = n, error = why, "audit events lost: the spool cannot be written");
    }

    pub(super) async fn seal(&self) {
        let spool = self.spool.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || spool.seal()).await {
            tracing::error!(error = %e, "cannot seal the audit spool segment");
        }
    }

    /// Replay the oldest segment (sealing the open one when none is sealed). Returns whether more is left to
    /// replay; `false` too when the database refused (then `database_down` is set, and the next interval
    /// tries again).
    pub(super) async fn replay_segment(&mut self) -> bool {
        if self.spool.pending_records() == 0 {
            self.database_down = false;
            return false;
        }
        let mut sealed = self.sealed().await;
        if sealed.is_empty() {
            self.seal().await;
            sealed = self.sealed().await;
        }
        let Some(&id) = sealed.first() else { return false };
        let spool = self.spool.clone();
        let events: Vec<AuditEvent> = match tokio::task::spawn_blocking(move || spool.read(id)).await {
            Ok(Ok(events)) => events,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot read an audit spool segment");
                return false;
            }
            Err(_) => return false,
        };
        for chunk in events.chunks(self.config.batch_size.max(1)) {
            if let Err(e) = self.insert(chunk).await {
                self.database_down = true;
                tracing::debug!(error = %e, "audit replay deferred: the database is still unavailable");
                return false;
            }
        }
        let spool = self.spool.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || spool.remove(id)).await {
            tracing::error!(error = %e, "cannot remove a replayed audit spool segment");
            return false;
        }
        let n = events.len() as u64;
        self.stats.replayed.fetch_add(n, Ordering::Relaxed);
        metrics::counter!("audit_events_replayed_total").increment(n);
        tracing::info!(events = n, "audit spool segment replayed");
        self.database_down = false;
        self.spool.pending_records() > 0
    }

    async fn sealed(&self) -> Vec<SegmentId> {
        let spool = self.spool.clone();
        match tokio::task::spawn_blocking(move || spool.sealed()).await {
            Ok(Ok(segments)) => segments,
            _ => Vec::new(),
        }
    }
}
