//! The audit pipeline: every API request becomes exactly one audit row, without slowing the request and
//! without ever losing an event, within bounds on memory and disk.
//!
//! - [`layer`] captures the request (one middleware, ordered in `http::middleware`): route, user and
//!   organization (filled in by the auth layer and the org extractor through an [`AuditNotes`] slot),
//!   status, duration, client ip, user agent, and for write methods the first `AUDIT_MAX_BODY_BYTES` of the
//!   body (let go of when no route matched or nobody was authenticated), as [`layer::RequestFacts`].
//! - [`backlog`] bounds what waits in memory, in bytes and in events: a request takes its share before its
//!   handler runs ([`Auditor::admit`]) or is refused (503 `AUDIT_UNAVAILABLE`), so nothing is served
//!   unaudited and every admitted event has room.
//! - [`Auditor::record_request`] is a non-blocking `try_send` into a bounded queue (a few hundred
//!   nanoseconds); a full queue hands the facts to the (bounded) overflow, on its way to the spool.
//! - [`writer`] makes each request's row (action, sanitized text and body, see [`sanitize`]) on a blocking
//!   thread, hands the anomaly detector its observation, and drains the queue in batches (size or time
//!   triggered; a request with a body at once) into one multi-row `INSERT ... ON CONFLICT (id) DO NOTHING` on
//!   at most one pooled connection at a time (its share of the pool, so request traffic is never starved).
//!   When Postgres fails, the batch goes to the disk [`spool`] (bounded by `AUDIT_SPOOL_MAX_BYTES`: at the
//!   bound the writer holds and takes no more, so admission refuses); the spool is replayed in order when the
//!   database answers again (and at start-up), and a segment is deleted only after its rows are committed.
//!   Event ids make the replay idempotent: a crash between commit and delete doubles nothing. Shutdown writes
//!   the queue to the database until the grace deadline and the rest to the spool before the process exits.
//! - [`security`] turns security-relevant outcomes (forged token, revoked token reuse, cross-tenant attempt,
//!   RLS context failure, anomalies) into audit rows with a severity, `event=security.*` log lines and
//!   counters; [`anomaly`] watches sliding windows per user (Redis, shared by every instance, with an
//!   in-process fallback).
//! - [`partitions`] keeps the months of `audit_log`'s partitions created ahead (every instance, under a
//!   transaction-level advisory lock); [`retention`] drops expired months by class (owner only, the
//!   `audit retention` command).

pub(crate) mod actions;
pub(crate) mod anomaly;
pub(crate) mod backlog;
pub(crate) mod in_tx;
pub(crate) mod layer;
pub(crate) mod partitions;
pub(crate) mod queue;
pub(crate) mod retention;
pub(crate) mod sanitize;
pub(crate) mod seal;
pub(crate) mod security;
pub(crate) mod spool;
pub(crate) mod writer;

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::config::AuditConfig;
use crate::db::Db;
use crate::kv::Kv;
use crate::security::Severity;

/// One audit row (also the spool's record format).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    /// Unique per event: replays are idempotent on it.
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub user_id: Option<Uuid>,
    pub organization_id: Option<Uuid>,
    /// Bounded vocabulary (`knowledge.create`, `security.cross_tenant_attempt`, ...), never raw ids.
    pub action: Cow<'static, str>,
    pub entity_type: Option<Cow<'static, str>>,
    pub entity_id: Option<String>,
    /// Shared (`Arc`) with the request id extension and the anomaly detector's observation: no copy per
    /// request.
    pub request_id: Option<Arc<str>>,
    pub method: Option<Arc<str>>,
    pub path: Option<Arc<str>>,
    pub status: Option<i32>,
    pub duration_ms: Option<i32>,
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    pub severity: Option<Severity>,
    /// Route template, sanitized body, security details.
    pub metadata: serde_json::Value,
}

impl AuditEvent {
    /// Roughly the heap bytes the event holds (its share of the in-memory backlog): its text and metadata.
    pub(crate) fn weight(&self) -> usize {
        fn json(v: &serde_json::Value) -> usize {
            use serde_json::Value;
            16 + match v {
                Value::String(s) => s.len(),
                Value::Array(items) => items.iter().map(json).sum(),
                Value::Object(map) => map.iter().map(|(k, v)| k.len() + json(v)).sum(),
                _ => 0,
            }
        }
        let text = [self.entity_id.as_deref(), self.user_agent.as_deref(), self.request_id.as_deref()]
            .into_iter()
            .chain([self.method.as_deref(), self.path.as_deref()])
            .flatten()
            .map(str::len)
            .sum::<usize>();
        text + json(&self.metadata)
    }

    pub fn new(action: impl Into<Cow<'static, str>>) -> AuditEvent {
        AuditEvent {
            id: Uuid::now_v7(),
            created_at: Utc::now(),
            user_id: None,
            organization_id: None,
            action: action.into(),
            entity_type: None,
            entity_id: None,
            request_id: None,
            method: None,
            path: None,
            status: None,
            duration_ms: None,
            ip: None,
            user_agent: None,
            severity: None,
            metadata: serde_json::Value::Object(Default::default()),
        }
    }
}

/// The first `max` characters of `s` (a prefix of it, so the caller copies once into whatever it keeps).
pub(crate) fn truncated(s: &str, max: usize) -> &str {
    if s.len() <= max {
        // No more bytes than `max`, so no more characters either.
        return s;
    }
    let end = s.char_indices().nth(max).map_or(s.len(), |(i, _)| i);
    &s[..end]
}

/// What inner layers learn about a request and the audit layer records: set by the auth layer (user), the
/// org extractor (organization), handlers (entity).
#[derive(Debug, Default, Clone)]
pub struct AuditNotes {
    /// The matched route's template and declared action.
    pub route: Option<actions::RouteNote>,
    /// The entity the path names (its most specific id parameter), for the event's `entity_id`.
    pub path_entity_id: Option<PathEntity>,
    pub user_id: Option<Uuid>,
    pub organization_id: Option<Uuid>,
    pub entity_id: Option<String>,
}

/// The entity a request's path names: an id (formatted by the writer, off the request path) or, when it is not
/// one, the text as sent (truncated).
#[derive(Debug, Clone)]
pub enum PathEntity {
    Id(Uuid),
    Raw(Box<str>),
}

impl PathEntity {
    pub(crate) fn into_string(self) -> String {
        match self {
            PathEntity::Id(id) => id.to_string(),
            PathEntity::Raw(raw) => raw.into(),
        }
    }
}

/// The shared slot in the request extensions.
#[derive(Debug, Clone, Default)]
pub(crate) struct AuditSlot(pub Arc<Mutex<AuditNotes>>);

impl AuditSlot {
    pub(crate) fn update(&self, f: impl FnOnce(&mut AuditNotes)) {
        let mut notes = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut notes);
    }

    /// A copy of the notes so far (a write's row made before its commit, [`in_tx`]).
    pub(crate) fn snapshot(&self) -> AuditNotes {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The notes, taken out of the slot (the audit layer, once the response is there).
    pub(crate) fn take(&self) -> AuditNotes {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Handlers take the slot to note what only they know (a created entity's id).
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for AuditSlot {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts.extensions.get::<AuditSlot>().cloned().unwrap_or_default())
    }
}

/// Note something about the current request for its audit row (no-op outside the audit layer).
pub(crate) fn note(extensions: &http::Extensions, f: impl FnOnce(&mut AuditNotes)) {
    if let Some(slot) = extensions.get::<AuditSlot>() {
        slot.update(f);
    }
}

/// Counters for metrics and health.
#[derive(Debug, Default)]
pub struct AuditStats {
    pub captured: AtomicU64,
    pub written: AtomicU64,
    pub spooled: AtomicU64,
    pub replayed: AtomicU64,
    /// Must stay 0: an event that could neither be queued, written nor spooled.
    pub dropped: AtomicU64,
    pub write_failures: AtomicU64,
}

impl AuditStats {
    pub fn get(&self, counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// What the write path takes: a finished event (the anomaly detector's), or a request's facts, which the
/// writer makes the row of (and shows the detector).
#[derive(Debug)]
pub(crate) enum Queued {
    Event(AuditEvent),
    Request(layer::RequestFacts),
}

impl Queued {
    /// Its share of the in-memory backlog, in bytes: the same from when it is queued until the writer has
    /// made its row (nothing changes it in between).
    pub(crate) fn weight(&self) -> usize {
        std::mem::size_of::<Queued>()
            + match self {
                Queued::Event(event) => event.weight(),
                Queued::Request(facts) => facts.weight(),
            }
    }
}

/// Puts events on the write path; never waits. Cloned into the anomaly detector (whose own events must not
/// be fed back to it).
#[derive(Clone)]
pub(crate) struct Recorder {
    queue: queue::Sender<Queued>,
    /// As many events again as the queue, on their way to the spool; the backlog's event budget guarantees
    /// room in one of the two for every event it admitted.
    overflow: mpsc::Sender<Queued>,
    backlog: Arc<backlog::Backlog>,
    stats: Arc<AuditStats>,
    /// `audit_events_captured_total`, registered once.
    captured: metrics::Counter,
}

/// How long the detector waits before it asks the backlog for room again.
const EVENT_RETRY: std::time::Duration = std::time::Duration::from_millis(100);

impl Recorder {
    /// Record an event not tied to a request (the detector's): it waits for room in the backlog (the detector
    /// falls behind, its own input is best effort), and is lost (counted) only once the pipeline has stopped.
    pub(crate) async fn record(&self, event: AuditEvent) {
        let event = Queued::Event(event);
        let weight = event.weight();
        loop {
            if let Some(ticket) = self.backlog.admit_event(weight) {
                return self.push(event, ticket);
            }
            if self.queue.is_closed() {
                return self.lost();
            }
            tokio::time::sleep(EVENT_RETRY).await;
        }
    }

    /// `event`, admitted with `ticket`, into the queue, or the overflow when the queue is full.
    fn push(&self, event: Queued, ticket: backlog::Ticket) {
        self.stats.captured.fetch_add(1, Ordering::Relaxed);
        self.captured.increment(1);
        let weight = event.weight();
        ticket.settle(weight);
        // A request body waits for no batch: the writer sanitizes it and lets go of it at once.
        let urgent = matches!(&event, Queued::Request(facts) if facts.has_body());
        let overflowed = match self.queue.try_send(event) {
            Ok(()) => {
                if urgent {
                    self.queue.wake();
                }
                return;
            }
            Err(queue::TrySendError::Full(event)) => {
                metrics::counter!("audit_queue_full_total").increment(1);
                event
            }
            Err(queue::TrySendError::Closed(event)) => event,
        };
        if self.overflow.try_send(overflowed).is_err() {
            self.backlog.release(weight);
            self.lost();
        }
    }

    fn lost(&self) {
        self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("audit_events_dropped_total").increment(1);
        tracing::error!("audit event lost: the writer has stopped");
    }
}

impl Drop for Auditor {
    fn drop(&mut self) {
        self.maintenance.abort();
    }
}

/// Handle on the pipeline, held in the app state.
pub struct Auditor {
    recorder: Recorder,
    sanitizer: Arc<sanitize::Sanitizer>,
    /// What makes rows (sanitizer, detector queue): the writer's, and a write's own in its transaction.
    finishing: Arc<writer::Finishing>,
    writer: writer::WriterHandle,
    /// The partition maintenance task, stopped with the pipeline.
    maintenance: tokio::task::JoinHandle<()>,
    config: AuditConfig,
    /// `audit_events_written_total` and `audit_events_in_tx_total`, registered once.
    written: metrics::Counter,
    in_tx: metrics::Counter,
}

impl Auditor {
    /// Open the spool (replaying what a previous run left there), start the writer and the detector.
    pub fn start(config: AuditConfig, db: Db, kv: Kv) -> anyhow::Result<Auditor> {
        let spool = spool::Spool::open(&config.spool_dir)
            .map_err(|e| anyhow::anyhow!("AUDIT_SPOOL_DIR {} cannot be used: {e}", config.spool_dir.display()))?;
        let stats = Arc::new(AuditStats::default());
        // The writer wakes for a full batch or when its flush interval elapses, not for each event.
        let (queue, queue_rx) =
            queue::channel(config.queue_capacity, config.writer.batch_size, config.writer.flush_interval);
        let (overflow, overflow_rx) = mpsc::channel(config.queue_capacity);
        let backlog = backlog::Backlog::new(config.queue_max_bytes, 2 * config.queue_capacity);
        let recorder = Recorder {
            queue,
            overflow,
            backlog: backlog.clone(),
            stats: stats.clone(),
            captured: metrics::counter!("audit_events_captured_total"),
        };
        metrics::gauge!("audit_queue_max_bytes").set(config.queue_max_bytes as f64);
        metrics::gauge!("audit_spool_max_bytes").set(config.writer.spool_max_bytes as f64);
        let sanitizer = Arc::new(sanitize::Sanitizer::default());
        let detector = anomaly::Detector::spawn(kv, db.clone(), recorder.clone(), config.anomaly.clone());
        let finishing = Arc::new(writer::Finishing { sanitizer: sanitizer.clone(), detector });
        let maintenance = partitions::spawn(db.clone(), config.partitions.clone());
        let writer = writer::spawn(
            db,
            Arc::new(spool),
            stats,
            config.writer.clone(),
            finishing.clone(),
            writer::Channels { queue: queue_rx, overflow: overflow_rx, backlog },
        );
        let written = metrics::counter!("audit_events_written_total");
        let in_tx = metrics::counter!("audit_events_in_tx_total");
        Ok(Auditor { recorder, sanitizer, finishing, writer, maintenance, config, written, in_tx })
    }

    pub(crate) fn finishing(&self) -> &Arc<writer::Finishing> {
        &self.finishing
    }

    /// A request's row was committed with its write, holding status `committed`; the response said `answered`
    /// (None: the request's future was dropped after the commit). Counted as captured and written.
    pub(crate) fn recorded_in_tx(&self, committed: u16, answered: Option<u16>) {
        let stats = &self.recorder.stats;
        stats.captured.fetch_add(1, Ordering::Relaxed);
        stats.written.fetch_add(1, Ordering::Relaxed);
        self.recorder.captured.increment(1);
        self.written.increment(1);
        self.in_tx.increment(1);
        if answered != Some(committed) {
            // A handler commits as its last fallible step; this says one does not.
            metrics::counter!("audit_in_tx_status_mismatch_total").increment(1);
            tracing::warn!(committed, answered, "a write's audit row holds another status than its response");
        }
    }

    /// Room for the event of a request whose facts (body excluded) hold `bytes`, before its handler runs;
    /// refused while the backlog is full (see [`backlog`]).
    pub fn admit(&self, bytes: usize) -> Result<backlog::Ticket, backlog::Refusal> {
        self.recorder.backlog.admit(bytes + std::mem::size_of::<Queued>())
    }

    /// Record a request's audit row (made by the writer), in the room `ticket` holds; never waits.
    pub fn record_request(&self, facts: layer::RequestFacts, ticket: backlog::Ticket) {
        self.recorder.push(Queued::Request(facts), ticket);
    }

    pub fn config(&self) -> &AuditConfig {
        &self.config
    }

    pub fn stats(&self) -> &AuditStats {
        &self.recorder.stats
    }

    pub fn sanitizer(&self) -> &Arc<sanitize::Sanitizer> {
        &self.sanitizer
    }

    /// Events waiting in the in-memory queue.
    pub fn queue_depth(&self) -> usize {
        self.recorder.queue.len()
    }

    /// Bytes held in memory for the writer (queue, overflow, and requests admitted but not finished).
    pub fn queue_bytes(&self) -> usize {
        self.recorder.backlog.bytes()
    }

    /// Bytes of the disk spool.
    pub fn spool_bytes(&self) -> u64 {
        self.writer.spool_bytes()
    }

    /// Records waiting in the disk spool.
    pub fn spool_pending(&self) -> u64 {
        self.writer.spool_pending()
    }

    /// Write everything captured so far (to the database, or to the spool) and try a replay.
    pub async fn flush(&self) {
        self.writer.flush().await;
    }

    /// Stop: admit nothing more, write what is queued to the database until `deadline` and the rest to the
    /// spool, and wait for the writer to finish.
    pub async fn shutdown(&self, deadline: tokio::time::Instant) {
        self.recorder.backlog.close();
        self.maintenance.abort();
        self.writer.shutdown(deadline).await;
    }
}
