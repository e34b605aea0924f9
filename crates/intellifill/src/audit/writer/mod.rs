//! The background writer: queue -> rows -> batches -> Postgres, or -> disk spool -> replay.
//!
//! A request arrives as [`super::layer::RequestFacts`]; the writer makes its row as it takes it from the
//! queue ([`rows`]: on a blocking thread, one batch at a time), so everything after that point (batches,
//! spool, replay) deals in rows only.
//!
//! One task owns the whole write path, so ordering is simple: while anything is waiting in the spool, new
//! batches are appended behind it (first in, first out) and the spool is replayed oldest segment first; a
//! segment is deleted only after its rows are committed. The task keeps one pooled connection between batches
//! ([`Db::hold`]): the audit log's whole share of the pool, so under load it never queues behind requests (nor
//! they behind it). Every insert is `audit_append(arrays...)`, an `INSERT ... SELECT FROM unnest(...) ON
//! CONFLICT (id) DO NOTHING`: one round trip per batch, and a batch replayed twice (crash between commit and
//! delete) stores each event once.
//!
//! The task does one bounded piece of work at a time (a batch taken from the queue or the overflow, a spool
//! segment replayed) and looks at its control channel between pieces, so a flood never hides a shutdown from
//! it. On shutdown ([`WriterHandle::shutdown`]) it writes what is queued to Postgres until the deadline, every
//! insert racing it, and the rest to the spool (past `AUDIT_SPOOL_MAX_BYTES` if it must: at that point the only
//! alternative is losing events).
//!
//! The spool is bounded (`AUDIT_SPOOL_MAX_BYTES`, see [`spooling`]): at the bound the writer holds the rows
//! that do not fit and takes nothing more from its queues until replay frees room, so the queues fill and the
//! admission control ([`super::backlog`]) refuses new requests.

pub(crate) mod columns;
mod rows;
mod spooling;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot, watch};

pub(crate) use self::rows::Finishing;
use super::backlog::Backlog;
use super::queue::Wake;
use super::spool::Spool;
use super::{AuditEvent, AuditStats, Queued};
use crate::config::WriterConfig;
use crate::db::Db;
use columns::Columns;

/// `audit_append` (SECURITY DEFINER, migration 0002) inserts with `ON CONFLICT (id) DO NOTHING`: under RLS an
/// `ON CONFLICT` insert must also pass SELECT policies, which a context-free writer must not have.
pub(crate) const INSERT: &str =
    "SELECT audit_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)";

/// Below this pool size the writer does not keep a connection between batches.
const MIN_POOL_TO_HOLD: usize = 4;

enum Control {
    Flush(oneshot::Sender<()>),
    Shutdown(oneshot::Sender<()>),
}

/// Handle on the writer task.
pub(crate) struct WriterHandle {
    control: mpsc::Sender<Control>,
    deadline: watch::Sender<Option<tokio::time::Instant>>,
    spool: Arc<Spool>,
}

impl WriterHandle {
    pub(crate) fn spool_pending(&self) -> u64 {
        self.spool.pending_records()
    }

    pub(crate) fn spool_bytes(&self) -> u64 {
        self.spool.pending_bytes()
    }

    /// Write what is queued (to the database if it answers, else to the spool) and try a replay.
    pub(crate) async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.control.send(Control::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Write everything queued and stop: to the database until `deadline` (an insert still running then is
    /// given up, its batch spooled), the rest to the spool. Idempotent.
    pub(crate) async fn shutdown(&self, deadline: tokio::time::Instant) {
        // First, so that an insert already running sees it.
        let _ = self.deadline.send(Some(deadline));
        let (tx, rx) = oneshot::channel();
        if self.control.send(Control::Shutdown(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// The shutdown deadline, once there is one.
struct Stopping(watch::Receiver<Option<tokio::time::Instant>>);

impl Stopping {
    fn deadline(&self) -> Option<tokio::time::Instant> {
        *self.0.borrow()
    }

    /// The deadline is set and over: the database is not tried any more.
    fn passed(&self) -> bool {
        self.deadline().is_some_and(|d| tokio::time::Instant::now() >= d)
    }

    /// Resolves when the deadline is set and over (never, while there is none).
    async fn reached(&self) {
        let mut rx = self.0.clone();
        loop {
            let deadline = *rx.borrow_and_update();
            match deadline {
                Some(d) => return tokio::time::sleep_until(d).await,
                None if rx.changed().await.is_err() => return std::future::pending().await,
                None => {}
            }
        }
    }
}

struct Writer {
    db: Db,
    spool: Arc<Spool>,
    stats: Arc<AuditStats>,
    config: WriterConfig,
    queue: super::queue::Receiver<Queued>,
    overflow: mpsc::Receiver<Queued>,
    backlog: Arc<Backlog>,
    batch: Vec<AuditEvent>,
    /// Rows that did not fit in the spool: while there are any, nothing more is taken from the queues.
    held: Vec<AuditEvent>,
    /// The flush interval is over: everything waiting goes, batch by batch, the last one partial.
    drain_all: bool,
    /// Set when an insert failed; cleared by a successful replay.
    database_down: bool,
    /// Set at shutdown: the final rows go to the spool whatever its bound.
    unbounded: bool,
    /// The spool holds segments to replay and the database answered the last replay.
    replaying: bool,
    /// The writer's own connection, kept between batches (its share of the pool).
    conn: Option<crate::db::HeldConnection>,
    finishing: Arc<Finishing>,
    stopping: Stopping,
}

/// What the writer reads from and writes to.
pub(crate) struct Channels {
    pub queue: super::queue::Receiver<Queued>,
    pub overflow: mpsc::Receiver<Queued>,
    pub backlog: Arc<Backlog>,
}

pub(crate) fn spawn(
    db: Db,
    spool: Arc<Spool>,
    stats: Arc<AuditStats>,
    config: WriterConfig,
    finishing: Arc<Finishing>,
    channels: Channels,
) -> WriterHandle {
    let (control_tx, control_rx) = mpsc::channel(8);
    let (deadline_tx, deadline_rx) = watch::channel(None);
    let writer = Writer {
        db,
        spool: spool.clone(),
        stats,
        batch: Vec::with_capacity(config.batch_size),
        config,
        queue: channels.queue,
        overflow: channels.overflow,
        backlog: channels.backlog,
        held: Vec::new(),
        drain_all: false,
        database_down: false,
        unbounded: false,
        replaying: false,
        conn: None,
        finishing,
        stopping: Stopping(deadline_rx),
    };
    tokio::spawn(writer.run(control_rx));
    WriterHandle { control: control_tx, deadline: deadline_tx, spool }
}

impl Writer {
    async fn run(mut self, mut control: mpsc::Receiver<Control>) {
        // Whatever a previous run left in the spool goes first, a segment at a time between the other work.
        self.replaying = self.spool.pending_records() > 0;
        loop {
            let holding = self.holding();
            let busy = self.replaying || (!holding && self.backlogged());
            tokio::select! {
                biased;
                Some(cmd) = control.recv() => match cmd {
                    Control::Flush(done) => {
                        self.write_everything().await;
                        let _ = done.send(());
                    }
                    Control::Shutdown(done) => {
                        self.finish().await;
                        tracing::info!(pending_in_spool = self.spool.pending_records(), "audit writer stopped");
                        let _ = done.send(());
                        // Later shutdown calls find the channel closed and return at once.
                        return;
                    }
                },
                // One batch and one spool segment a turn, so neither starves the other in a flood.
                () = std::future::ready(()), if busy => {
                    if !holding && self.backlogged() {
                        self.step().await;
                    }
                    if self.replaying {
                        self.replaying = self.replay_segment().await;
                        if holding {
                            self.retry_held().await;
                        }
                    }
                }
                // Holding rows the spool has no room for: replay (which frees room) and try again, once per
                // interval.
                () = tokio::time::sleep(self.config.flush_interval), if holding && !busy => {
                    self.replaying = self.replay_segment().await;
                    self.retry_held().await;
                }
                // A full batch waiting or the flush interval over (then everything goes, batch by batch, and
                // the spool is replayed).
                wake = self.queue.ready(), if !busy && !holding => {
                    if wake == Wake::Interval {
                        self.drain_all = true;
                        self.replaying = self.spool.pending_records() > 0;
                    }
                    self.step().await;
                }
            }
            self.gauges();
        }
    }

    fn gauges(&self) {
        metrics::gauge!("audit_spool_pending").set(self.spool.pending_records() as f64);
        metrics::gauge!("audit_spool_bytes").set(self.spool.pending_bytes() as f64);
        metrics::gauge!("audit_queue_bytes").set(self.backlog.bytes() as f64);
    }

    /// Work is waiting that the next step takes: overflow, a full batch, or the rest after an interval.
    fn backlogged(&self) -> bool {
        let room = self.config.batch_size.saturating_sub(self.batch.len()).max(1);
        !self.overflow.is_empty() || self.queue.len() >= room || self.drain_all
    }

    /// One bounded piece of work: a batch of the overflow to the spool, or the queue into the batch (written
    /// when full, or when the interval is over and the queue is empty). Returns how many events it took.
    async fn step(&mut self) -> usize {
        let overflow = take(self.config.batch_size, || self.overflow.try_recv().ok());
        if !overflow.is_empty() {
            let n = overflow.len();
            let rows = self.finishing.rows(overflow, &self.backlog).await;
            self.spool_rows(rows).await;
            return n;
        }
        let room = self.config.batch_size.saturating_sub(self.batch.len()).max(1);
        let items = take(room, || self.queue.try_recv());
        let n = items.len();
        let rows = self.finishing.rows(items, &self.backlog).await;
        self.batch.extend(rows);
        if self.batch.len() >= self.config.batch_size {
            self.flush().await;
        } else if self.drain_all && self.queue.is_empty() {
            self.drain_all = false;
            self.flush().await;
        }
        n
    }

    /// Everything captured so far to the database (or the spool), then a replay attempt. Takes what is
    /// queued when it starts, not what keeps arriving.
    async fn write_everything(&mut self) {
        // The spool first: replay frees room for held rows and keeps the order.
        while self.replay_segment().await {}
        if self.holding() {
            self.retry_held().await;
        }
        let mut left = self.queue.len() + self.overflow.len();
        while left > 0 && !self.holding() {
            let taken = self.step().await;
            if taken == 0 {
                break;
            }
            left = left.saturating_sub(taken);
        }
        self.flush().await;
        self.drain_all = false;
        if self.holding() {
            self.retry_held().await;
        } else {
            while self.replay_segment().await {}
        }
    }

    /// Shutdown: nothing more is admitted; what was is written (the database until the deadline, then the
    /// spool, whatever its bound), then the spool is replayed while time is left.
    async fn finish(&mut self) {
        self.backlog.close();
        self.unbounded = true;
        let held = std::mem::take(&mut self.held);
        self.spool_rows(held).await;
        loop {
            while self.step().await > 0 {}
            // Requests admitted but not finished yet (those still draining) queue their events soon.
            if self.backlog.events() == 0 || self.stopping.passed() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        self.flush().await;
        while !self.stopping.passed() && self.replay_segment().await {}
        self.seal().await;
        if self.backlog.events() > 0 {
            tracing::warn!(
                events = self.backlog.events(),
                "audit writer stopped at the deadline with requests still running: their events cannot be kept"
            );
        }
    }

    /// The batch to the database, or behind the spool.
    async fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(self.config.batch_size));
        self.write_rows(batch).await;
    }

    /// `rows` into the table, a batch at a time; behind the spool when it holds anything (to keep the order),
    /// when the database is down or the shutdown deadline is over, and from the first failed insert on.
    async fn write_rows(&mut self, mut rows: Vec<AuditEvent>) {
        while !rows.is_empty() {
            if self.database_down || self.spool.pending_records() > 0 || self.stopping.passed() || self.holding() {
                self.spool_rows(rows).await;
                return;
            }
            let rest = rows.split_off(rows.len().min(self.config.batch_size.max(1)));
            match self.insert(&rows).await {
                Ok(n) => {
                    self.stats.written.fetch_add(n, Ordering::Relaxed);
                    metrics::counter!("audit_events_written_total").increment(n);
                }
                Err(e) => {
                    self.database_down = true;
                    self.stats.write_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, events = rows.len(), "audit insert failed: spooling to disk");
                    self.spool_rows(rows).await;
                }
            }
            rows = rest;
        }
    }

    /// One `audit_append` of `batch`, within the insert timeout and the shutdown deadline.
    async fn insert(&mut self, batch: &[AuditEvent]) -> anyhow::Result<u64> {
        let stopping = Stopping(self.stopping.0.clone());
        tokio::select! {
            inserted = self.insert_within_timeout(batch) => inserted,
            // The connection goes with the insert's future (the pool is closed right after the writer stops).
            () = stopping.reached() => Err(anyhow::anyhow!("audit insert given up at the shutdown deadline")),
        }
    }

    async fn insert_within_timeout(&mut self, batch: &[AuditEvent]) -> anyhow::Result<u64> {
        let started = Instant::now();
        let columns = Columns::of(batch);
        let params = columns.params();
        let timeout = self.config.insert_timeout;
        let conn = match self.conn.take() {
            Some(c) if !c.is_closed() => c,
            stale => {
                if let Some(c) = stale {
                    c.discard();
                }
                tokio::time::timeout(timeout, self.db.hold())
                    .await
                    .map_err(|_| anyhow::anyhow!("no database connection for the audit writer in time"))?
                    .map_err(|e| anyhow::anyhow!("{e}"))?
            }
        };
        let rows = match tokio::time::timeout(timeout, conn.unscoped(INSERT, &params)).await {
            Ok(Ok(rows)) => {
                // A tiny pool cannot spare a connection: give it back after each batch there.
                if self.db.pool_status().max >= MIN_POOL_TO_HOLD {
                    self.conn = Some(conn);
                }
                rows
            }
            Ok(Err(e)) => {
                conn.discard();
                return Err(match &e.source {
                    Some(cause) => anyhow::anyhow!("{e} ({cause:#})"),
                    None => anyhow::anyhow!("{e}"),
                });
            }
            Err(_) => {
                conn.discard();
                return Err(anyhow::anyhow!("audit insert timed out"));
            }
        };
        let inserted = rows.first().map(|r| r.get::<_, i32>(0)).unwrap_or(0).max(0) as u64;
        metrics::histogram!("audit_write_seconds").record(started.elapsed().as_secs_f64());
        // Duplicates (a replayed batch) are not inserted again; they are not lost either.
        Ok(inserted)
    }
}

/// Up to `n` items from `next`.
fn take<T>(n: usize, mut next: impl FnMut() -> Option<T>) -> Vec<T> {
    let mut items = Vec::with_capacity(n.min(1024));
    while items.len() < n {
        match next() {
            Some(item) => items.push(item),
            None => break,
        }
    }
    items
}
