//! The audit step: one event per request, recorded after the response is produced.
//!
//! [`capture`] runs after the request id, the request context, the request metrics and the per-ip limit, and
//! before authentication (see `http::middleware`), so failed authentications are audited too. Excluded paths
//! (`AUDIT_EXCLUDE_PATHS`) are matched on the full path. Inner steps fill in what only they know through the
//! [`AuditSlot`] in the request extensions: the matched route and the entity its path names (the route step,
//! the only place the route is known), the user (authentication), the organization (org extractor), a
//! created entity's id (handlers).
//!
//! Before the rest of the stack runs, the step asks the audit backlog for room for the request's event
//! ([`Auditor::admit`]: its head's share when it arrives, its body's kept bytes once the body is read, so a
//! client trickling a body holds no room for it); without room the request is answered 503
//! `AUDIT_UNAVAILABLE` and no handler sees it (see [`super::backlog`]).
//!
//! On the request path the step only gathers [`RequestFacts`]: small or shared pieces of the request
//! (request id, address, method, the path, query and user agent truncated and copied in one allocation, so
//! the connection's read buffer they point into is not kept while the facts wait, and a copy of the first
//! `AUDIT_MAX_BODY_BYTES` of a write request's body, which wakes the writer at once) and, once the response is
//! there, the notes, status, duration and security outcome. The body of a request that matched no route or
//! whose caller was never authenticated is let go of then (the row keeps its size and content type). A request
//! whose future is dropped before its response (the whole-request timeout above this step, a client gone)
//! still gets its row, marked `abandoned`. The audit writer turns them into the row ([`RequestFacts::into_event`]:
//! action, entity, text truncated and sanitized, body sanitized, metadata) in its batch loop, so no string of
//! the row is built, no body parsed and no task spawned while a client waits (docs/PERFORMANCE.md, "Audit
//! path"). A security outcome's counter and log line come with its row (at most one flush interval later).

pub(crate) mod facts;

use std::time::Instant;

use axum::body::Body;
use axum::extract::Request;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::backlog::{Refusal, Ticket};
use super::{AuditEvent, AuditSlot, Auditor};
use crate::error::{AppError, ErrorCode, ErrorPayload};
use crate::flow::Flow;
use facts::CapturedBody;
pub(crate) use facts::{RequestFacts, Seen};

/// Room reserved in the backlog for what inner steps note (entity ids) beyond the request's own facts.
const NOTES_ROOM: usize = 512;

/// One event for the request `next` (the rest of the stack) answers, admitted before `next` runs: a request
/// whose event the audit pipeline has no room for (its head when it arrives, its body's kept bytes once read)
/// is refused (503 `AUDIT_UNAVAILABLE`) and never reaches a handler.
///
/// Decided synchronously (`crate::flow`): only a write request's body read is a future of its own.
pub(crate) fn capture<'a, F, N>(
    auditor: &'a Auditor,
    seen: Seen<'_>,
    request: Request,
    next: N,
) -> Flow<'a, F, impl FnOnce(Response) -> Response + Send + use<'a, F, N>>
where
    F: Future<Output = Response> + Send + 'a,
    N: FnOnce(Request) -> F + Send + 'a,
{
    let started = Instant::now();
    if auditor.config().is_excluded(request.uri().path()) {
        return Flow::pass(next(request));
    }
    let slot = request.extensions().get::<AuditSlot>().cloned().unwrap_or_default();
    let (parts, body) = request.into_parts();
    let facts = RequestFacts::of(&parts, &seen);
    // The head's share first; the body's once it is read, so a client trickling a body holds no room for it.
    let ticket = match auditor.admit(facts.weight() + NOTES_ROOM) {
        Ok(ticket) => ticket,
        Err(refusal) => return Flow::now(refused(refusal)),
    };
    let mut pending = Pending { auditor, slot, started, facts: Some(facts), cell: None, ticket: Some(ticket) };
    if !seen.is_write {
        return Flow::then(next(Request::from_parts(parts, body)), finish(pending));
    }
    let declared = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    match declared {
        Some(n) if n > seen.max_body_bytes => {
            // The body limit answers 413 when the handler reads it; not buffered here.
            pending.set_body(CapturedBody::unread(parts.headers.get(header::CONTENT_TYPE), n));
            let request = pending.shared_with(Request::from_parts(parts, body));
            Flow::then(next(request), finish(pending))
        }
        _ => Flow::later(with_body(pending, parts, body, seen.max_body_bytes, next)),
    }
}

/// The function that records `pending`'s event with the response.
fn finish(pending: Pending<'_>) -> impl FnOnce(Response) -> Response + Send + use<'_> {
    move |response| {
        pending.finish(&response);
        response
    }
}

/// A write request whose body is read first, its first `AUDIT_MAX_BODY_BYTES` kept in the event.
async fn with_body<'a, F, N>(
    mut pending: Pending<'a>,
    parts: axum::http::request::Parts,
    body: Body,
    limit: usize,
    next: N,
) -> Response
where
    F: Future<Output = Response>,
    N: FnOnce(Request) -> F,
{
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => bytes,
        Err(_) => {
            let response = AppError::new(ErrorCode::PayloadTooLarge, "the request body is too large or unreadable")
                .into_response();
            pending.finish(&response);
            return response;
        }
    };
    let kept = pending.auditor.config().max_body_bytes;
    let captured = CapturedBody::of(parts.headers.get(header::CONTENT_TYPE), &bytes, kept);
    if let Err(refusal) = pending.grow(captured.weight()) {
        pending.refuse();
        return refused(refusal);
    }
    pending.set_body(captured);
    let request = pending.shared_with(Request::from_parts(parts, Body::from(bytes)));
    let response = next(request).await;
    pending.finish(&response);
    response
}

/// The answer to a request the audit pipeline cannot take.
fn refused(refusal: Refusal) -> Response {
    let message = match refusal {
        Refusal::Stopping => "the server is stopping; retry on another instance",
        Refusal::QueueFull | Refusal::SpoolFull => {
            "the audit trail cannot record more requests right now; retry shortly"
        }
    };
    AppError::new(ErrorCode::AuditUnavailable, message).with_retry_after(1).into_response()
}

/// An admitted request's facts and its room in the backlog, until its event is queued: by [`Pending::finish`]
/// with the response, or, when the request's future is dropped first (a timeout above this step, a client
/// gone), on drop, marked abandoned. Either way the request has its row.
struct Pending<'a> {
    auditor: &'a Auditor,
    slot: AuditSlot,
    started: Instant,
    facts: Option<RequestFacts>,
    /// A write request's facts while its handler runs (shared with the handler's commit).
    cell: Option<WriteCell>,
    ticket: Option<Ticket>,
}

impl Pending<'_> {
    /// Room for the body's kept bytes, once read.
    fn grow(&mut self, bytes: usize) -> Result<(), Refusal> {
        self.ticket.as_mut().map_or(Ok(()), |ticket| ticket.grow(bytes))
    }

    /// The request is refused: no event, its room given back.
    fn refuse(mut self) {
        self.facts = None;
        self.ticket = None;
    }

    fn set_body(&mut self, body: CapturedBody) {
        if let Some(facts) = &mut self.facts {
            facts.body = Some(body);
        }
    }

    /// A write request with the cell its handler's commit can make the row from ([`super::in_tx`]).
    fn shared_with(&mut self, mut request: Request) -> Request {
        if let Some(cell) = self.share() {
            request.extensions_mut().insert(cell);
        }
        request
    }

    /// The facts into a cell the handler's commit can make the row from.
    fn share(&mut self) -> Option<WriteCell> {
        let auditor = self.auditor;
        let facts = self.facts.take()?;
        let shared = WriteShared {
            state: std::sync::Mutex::new(CellState::Open(facts)),
            started: self.started,
            slot: self.slot.clone(),
            finishing: auditor.finishing().clone(),
        };
        let cell = WriteCell(std::sync::Arc::new(shared));
        self.cell = Some(cell.clone());
        Some(cell)
    }

    /// The facts back from the cell; or, when the handler committed the row with its write, the status that
    /// row holds (nothing is queued then: the event is in the table).
    fn reclaim(&mut self) -> Option<u16> {
        let cell = self.cell.take()?;
        match std::mem::replace(&mut *cell.state(), CellState::Empty) {
            CellState::Open(facts) => {
                self.facts = Some(facts);
                None
            }
            CellState::Committed(status) => {
                // Its room in the backlog goes back: the row needs none.
                self.ticket = None;
                Some(status)
            }
            CellState::Empty => None,
        }
    }

    /// The outcome into the facts, and the facts to the audit queue.
    fn finish(mut self, response: &Response) {
        if let Some(committed) = self.reclaim() {
            return self.auditor.recorded_in_tx(committed, Some(response.status().as_u16()));
        }
        let (Some(mut facts), Some(ticket)) = (self.facts.take(), self.ticket.take()) else { return };
        let security = response.extensions().get::<ErrorPayload>().and_then(|p| p.security);
        facts.finished(self.slot.take(), response.status().as_u16(), self.started.elapsed(), security);
        self.auditor.record_request(facts, ticket);
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if let Some(committed) = self.reclaim() {
            return self.auditor.recorded_in_tx(committed, None);
        }
        let (Some(mut facts), Some(ticket)) = (self.facts.take(), self.ticket.take()) else { return };
        facts.finished(self.slot.take(), 0, self.started.elapsed(), None);
        facts.abandoned = true;
        self.auditor.record_request(facts, ticket);
    }
}

/// A write request's facts while its handler runs, in the request extensions: a handler that commits its
/// change with the request's row ([`super::in_tx::AuditedWrite`]) makes the row from a copy of them
/// ([`WriteCell::provisional`]) and, once committed, marks the cell ([`WriteCell::committed`]); the audit step
/// then queues nothing. Otherwise (no such commit, or it failed) the step takes the facts back and queues them
/// as for any request, under the same event id.
#[derive(Clone)]
pub(crate) struct WriteCell(std::sync::Arc<WriteShared>);

struct WriteShared {
    state: std::sync::Mutex<CellState>,
    started: Instant,
    slot: AuditSlot,
    finishing: std::sync::Arc<super::writer::Finishing>,
}

// Held once per write request, inside the cell's `Arc`: boxing the facts would cost an allocation for nothing.
#[allow(clippy::large_enum_variant)]
enum CellState {
    Open(RequestFacts),
    /// The row is committed, holding this status.
    Committed(u16),
    Empty,
}

impl WriteCell {
    fn state(&self) -> std::sync::MutexGuard<'_, CellState> {
        self.0.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The facts as they would be if the handler answered `status` now: the notes so far (user, organization,
    /// entity: a handler notes a created entity's id before it commits), the duration until now. None once
    /// committed.
    pub(crate) fn provisional(&self, status: u16) -> Option<RequestFacts> {
        let mut facts = match &*self.state() {
            CellState::Open(facts) => facts.clone(),
            CellState::Committed(_) | CellState::Empty => return None,
        };
        facts.finished(self.0.slot.snapshot(), status, self.0.started.elapsed(), None);
        Some(facts)
    }

    /// What makes the row: the sanitizer, and the anomaly detector's queue.
    pub(crate) fn finishing(&self) -> &super::writer::Finishing {
        &self.0.finishing
    }

    /// `event`, holding `status`, is committed with the request's write: the facts are let go of, and the
    /// anomaly detector sees the row.
    pub(crate) fn committed(&self, status: u16, event: &AuditEvent) {
        let mut state = self.state();
        if matches!(*state, CellState::Open(_)) {
            *state = CellState::Committed(status);
            drop(state);
            self.0.finishing.observe(event);
        }
    }
}
