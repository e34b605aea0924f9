//! The background writer: queue -> rows -> batches -> Postgres, or -> disk spool -> replay.
//!
//! A request arrives as [`super::layer::RequestFacts`]; the writer makes its row (see [`Finishing`]) as it
//! takes it from the queue, so everything after that point (batches, spool, replay) deals in rows only.
//!
//! One task owns the whole write path, so ordering is simple: while anything is waiting in the spool, new
//! batches are appended behind it (first in, first out) and the spool is replayed oldest segment first; a
//! segment is deleted only after its rows are committed. The task keeps one pooled connection between batches
//! ([`Db::hold`]): the audit log's whole share of the pool, so under load it never queues behind requests (nor
//! they behind it). Every insert is `audit_append(arrays...)`, an `INSERT ... SELECT FROM unnest(...) ON
//! CONFLICT (id) DO NOTHING`: one round trip per batch, and a batch replayed twice (crash between commit and
//! delete) stores each event once.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::BytesMut;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use super::anomaly::Observation;
use super::queue::Wake;
use super::sanitize::Sanitizer;
use super::spool::Spool;
use super::{AuditEvent, AuditStats, Queued};
use crate::config::WriterConfig;
use crate::db::Db;

/// `audit_append` (SECURITY DEFINER, migration 0002) inserts with `ON CONFLICT (id) DO NOTHING`: under RLS an
/// `ON CONFLICT` insert must also pass SELECT policies, which a context-free writer must not have.
const INSERT: &str = "SELECT audit_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)";

/// Below this pool size the writer does not keep a connection between batches.
const MIN_POOL_TO_HOLD: usize = 4;

enum Control {
    Flush(oneshot::Sender<()>),
    Shutdown(oneshot::Sender<()>),
}

/// Handle on the writer task.
pub struct WriterHandle {
    control: mpsc::Sender<Control>,
    spool: Arc<Spool>,
}

impl WriterHandle {
    pub fn spool_pending(&self) -> u64 {
        self.spool.pending_records()
    }

    /// Write what is queued (to the database if it answers, else to the spool) and try a replay.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.control.send(Control::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Flush and stop. Idempotent.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.control.send(Control::Shutdown(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

struct Writer {
    db: Db,
    spool: Arc<Spool>,
    stats: Arc<AuditStats>,
    config: WriterConfig,
    queue: super::queue::Receiver<Queued>,
    overflow: mpsc::UnboundedReceiver<Queued>,
    batch: Vec<AuditEvent>,
    /// Set when an insert failed; cleared by a successful replay.
    database_down: bool,
    /// The writer's own connection, kept between batches (its share of the pool).
    conn: Option<crate::db::HeldConnection>,
    finishing: Finishing,
}

/// What turns a request's facts into its row, before the row reaches the table or the spool: the sanitizer
/// (free text and bodies captured raw, to stay off the request path) and the anomaly detector's queue (the
/// finished row is what it watches).
pub struct Finishing {
    pub sanitizer: Arc<Sanitizer>,
    pub detector: super::queue::Sender<Observation>,
}

impl Finishing {
    fn row(&self, queued: Queued) -> AuditEvent {
        match queued {
            Queued::Event(event) => event,
            Queued::Request(facts) => {
                let event = facts.into_event(&self.sanitizer);
                // Best effort: anomaly detection may skip events under overload; the audit row may not.
                let _ = self.detector.try_send(Observation::of(&event));
                event
            }
        }
    }
}

pub fn spawn(
    db: Db,
    spool: Arc<Spool>,
    stats: Arc<AuditStats>,
    config: WriterConfig,
    finishing: Finishing,
    queue: super::queue::Receiver<Queued>,
    overflow: mpsc::UnboundedReceiver<Queued>,
) -> WriterHandle {
    let (control_tx, control_rx) = mpsc::channel(8);
    let writer = Writer {
        db,
        spool: spool.clone(),
        stats,
        batch: Vec::with_capacity(config.batch_size),
        config,
        queue,
        overflow,
        database_down: false,
        conn: None,
        finishing,
    };
    tokio::spawn(writer.run(control_rx));
    WriterHandle { control: control_tx, spool }
}

impl Writer {
    async fn run(mut self, mut control: mpsc::Receiver<Control>) {
        // Whatever a previous run left in the spool goes first.
        self.replay().await;
        loop {
            tokio::select! {
                biased;
                Some(cmd) = control.recv() => match cmd {
                    Control::Flush(done) => {
                        self.write_everything().await;
                        let _ = done.send(());
                    }
                    Control::Shutdown(done) => {
                        self.write_everything().await;
                        self.seal().await;
                        tracing::info!(pending_in_spool = self.spool.pending_records(), "audit writer stopped");
                        let _ = done.send(());
                        // Later shutdown calls find the channel closed and return at once.
                        return;
                    }
                },
                // A full batch waiting (written now, the rest waits) or the flush interval over (everything
                // goes). Before the overflow: `drain` takes the overflow too, so neither starves the other.
                wake = self.queue.ready() => {
                    self.drain().await;
                    if wake == Wake::Interval {
                        self.flush().await;
                        if self.spool.pending_records() > 0 {
                            self.replay().await;
                        }
                    }
                }
                Some(queued) = self.overflow.recv() => {
                    let mut events = vec![self.finishing.row(queued)];
                    while let Ok(queued) = self.overflow.try_recv() {
                        events.push(self.finishing.row(queued));
                    }
                    self.spool_events(events).await;
                }
            }
            metrics::gauge!("audit_spool_pending").set(self.spool.pending_records() as f64);
        }
    }

    /// Everything captured so far to the database (or the spool), then a replay attempt.
    async fn write_everything(&mut self) {
        self.drain().await;
        self.flush().await;
        self.replay().await;
    }

    /// Everything waiting in both channels into the batch / spool.
    async fn drain(&mut self) {
        let mut overflow = Vec::new();
        while let Ok(queued) = self.overflow.try_recv() {
            overflow.push(self.finishing.row(queued));
        }
        if !overflow.is_empty() {
            self.spool_events(overflow).await;
        }
        while let Some(queued) = self.queue.try_recv() {
            let event = self.finishing.row(queued);
            self.batch.push(event);
            if self.batch.len() >= self.config.batch_size {
                self.flush().await;
            }
        }
    }

    async fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(self.config.batch_size));
        // Behind anything already spooled, to keep the order.
        if self.database_down || self.spool.pending_records() > 0 {
            self.spool_events(batch).await;
            return;
        }
        match self.insert(&batch).await {
            Ok(n) => {
                self.stats.written.fetch_add(n, Ordering::Relaxed);
                metrics::counter!("audit_events_written_total").increment(n);
            }
            Err(e) => {
                self.database_down = true;
                self.stats.write_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, events = batch.len(), "audit insert failed: spooling to disk");
                self.spool_events(batch).await;
            }
        }
    }

    async fn insert(&mut self, batch: &[AuditEvent]) -> anyhow::Result<u64> {
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

    async fn spool_events(&mut self, events: Vec<AuditEvent>) {
        let n = events.len() as u64;
        let spool = self.spool.clone();
        match tokio::task::spawn_blocking(move || spool.append(&events)).await {
            Ok(Ok(_)) => {
                self.stats.spooled.fetch_add(n, Ordering::Relaxed);
                metrics::counter!("audit_events_spooled_total").increment(n);
            }
            Ok(Err(e)) => self.lost(n, &e.to_string()),
            Err(e) => self.lost(n, &e.to_string()),
        }
    }

    fn lost(&self, n: u64, why: &str) {
        self.stats.dropped.fetch_add(n, Ordering::Relaxed);
        metrics::counter!("audit_events_dropped_total").increment(n);
        tracing::error!(events = n, error = why, "audit events lost: the spool cannot be written");
    }

    async fn seal(&self) {
        let spool = self.spool.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || spool.seal()).await {
            tracing::error!(error = %e, "cannot seal the audit spool segment");
        }
    }

    /// Replay sealed segments, oldest first, until one fails.
    async fn replay(&mut self) {
        self.seal().await;
        let spool = self.spool.clone();
        let segments = match tokio::task::spawn_blocking(move || spool.sealed()).await {
            Ok(Ok(s)) => s,
            _ => return,
        };
        for id in segments {
            let spool = self.spool.clone();
            let events: Vec<AuditEvent> = match tokio::task::spawn_blocking(move || spool.read(id)).await {
                Ok(Ok(events)) => events,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "cannot read an audit spool segment");
                    return;
                }
                Err(_) => return,
            };
            for chunk in events.chunks(self.config.batch_size.max(1)) {
                match self.insert(chunk).await {
                    Ok(_) => {}
                    Err(e) => {
                        self.database_down = true;
                        tracing::debug!(error = %e, "audit replay deferred: the database is still unavailable");
                        return;
                    }
                }
            }
            let spool = self.spool.clone();
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || spool.remove(id)).await {
                tracing::error!(error = %e, "cannot remove a replayed audit spool segment");
                return;
            }
            let n = events.len() as u64;
            self.stats.replayed.fetch_add(n, Ordering::Relaxed);
            metrics::counter!("audit_events_replayed_total").increment(n);
            tracing::info!(events = n, "audit spool segment replayed");
        }
        self.database_down = false;
    }
}

/// A batch as column arrays for `unnest`, borrowing the events' text (a copy only where a NUL had to go).
struct Columns<'a> {
    id: Vec<uuid::Uuid>,
    created_at: Vec<chrono::DateTime<chrono::Utc>>,
    user_id: Vec<Option<uuid::Uuid>>,
    organization_id: Vec<Option<uuid::Uuid>>,
    action: Vec<Cow<'a, str>>,
    entity_type: Vec<Option<Cow<'a, str>>>,
    entity_id: Vec<Option<Cow<'a, str>>>,
    request_id: Vec<Option<Cow<'a, str>>>,
    method: Vec<Option<Cow<'a, str>>>,
    path: Vec<Option<Cow<'a, str>>>,
    status: Vec<Option<i32>>,
    duration_ms: Vec<Option<i32>>,
    ip: Vec<Option<std::net::IpAddr>>,
    user_agent: Vec<Option<Cow<'a, str>>>,
    severity: Vec<Option<&'static str>>,
    metadata: Vec<Jsonb<'a>>,
}

/// Postgres text and jsonb refuse NUL characters: one such byte must not poison a whole batch.
fn clean(s: &str) -> Cow<'_, str> {
    if s.contains('\0') { Cow::Owned(s.replace('\0', "")) } else { Cow::Borrowed(s) }
}

fn clean_opt<S: std::ops::Deref<Target = str>>(s: &Option<S>) -> Option<Cow<'_, str>> {
    s.as_deref().map(clean)
}

fn has_nul(v: &serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(has_nul),
        Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

fn without_nul(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::String(s) => Value::String(clean(s).into_owned()),
        Value::Array(a) => Value::Array(a.iter().map(without_nul).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (clean(k).into_owned(), without_nul(v))).collect()),
        other => other.clone(),
    }
}

/// A `jsonb` parameter: the event's metadata itself, or a copy without NUL characters.
#[derive(Debug)]
struct Jsonb<'a>(Cow<'a, serde_json::Value>);

impl<'a> Jsonb<'a> {
    fn of(v: &'a serde_json::Value) -> Jsonb<'a> {
        Jsonb(if has_nul(v) { Cow::Owned(without_nul(v)) } else { Cow::Borrowed(v) })
    }
}

impl ToSql for Jsonb<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        self.0.as_ref().to_sql(ty, out)
    }

    fn accepts(ty: &Type) -> bool {
        <serde_json::Value as ToSql>::accepts(ty)
    }

    to_sql_checked!();
}

impl<'a> Columns<'a> {
    fn of(batch: &'a [AuditEvent]) -> Columns<'a> {
        Columns {
            id: batch.iter().map(|e| e.id).collect(),
            created_at: batch.iter().map(|e| e.created_at).collect(),
            user_id: batch.iter().map(|e| e.user_id).collect(),
            organization_id: batch.iter().map(|e| e.organization_id).collect(),
            action: batch.iter().map(|e| clean(&e.action)).collect(),
            entity_type: batch.iter().map(|e| clean_opt(&e.entity_type)).collect(),
            entity_id: batch.iter().map(|e| clean_opt(&e.entity_id)).collect(),
            request_id: batch.iter().map(|e| clean_opt(&e.request_id)).collect(),
            method: batch.iter().map(|e| clean_opt(&e.method)).collect(),
            path: batch.iter().map(|e| clean_opt(&e.path)).collect(),
            status: batch.iter().map(|e| e.status).collect(),
            duration_ms: batch.iter().map(|e| e.duration_ms).collect(),
            ip: batch.iter().map(|e| e.ip).collect(),
            user_agent: batch.iter().map(|e| clean_opt(&e.user_agent)).collect(),
            severity: batch.iter().map(|e| e.severity.map(|s| s.as_str())).collect(),
            metadata: batch.iter().map(|e| Jsonb::of(&e.metadata)).collect(),
        }
    }

    fn params(&self) -> Vec<crate::db::Param<'_>> {
        vec![
            (&self.id, Type::UUID_ARRAY),
            (&self.created_at, Type::TIMESTAMPTZ_ARRAY),
            (&self.user_id, Type::UUID_ARRAY),
            (&self.organization_id, Type::UUID_ARRAY),
            (&self.action, Type::TEXT_ARRAY),
            (&self.entity_type, Type::TEXT_ARRAY),
            (&self.entity_id, Type::TEXT_ARRAY),
            (&self.request_id, Type::TEXT_ARRAY),
            (&self.method, Type::TEXT_ARRAY),
            (&self.path, Type::TEXT_ARRAY),
            (&self.status, Type::INT4_ARRAY),
            (&self.duration_ms, Type::INT4_ARRAY),
            (&self.ip, Type::INET_ARRAY),
            (&self.user_agent, Type::TEXT_ARRAY),
            (&self.severity, Type::TEXT_ARRAY),
            (&self.metadata, Type::JSONB_ARRAY),
        ]
    }
}
