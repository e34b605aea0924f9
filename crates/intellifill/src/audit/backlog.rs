//! The bound on what waits in memory for the audit writer, and the admission control that keeps it.
//!
//! Every event in the queue or the overflow holds a share of two budgets: events (`AUDIT_QUEUE_CAPACITY` in the
//! queue, as many again in the overflow) and bytes (`AUDIT_QUEUE_MAX_BYTES`, both together). A request takes
//! its share **before its handler runs** ([`Backlog::admit`]: a [`Ticket`] for its head, grown by the kept
//! bytes of its body once read, [`Ticket::grow`]), so a request whose event could not be kept is refused (503
//! `AUDIT_UNAVAILABLE`) before it can have any effect, and an event that was admitted always finds room: nothing is served unaudited, nothing admitted
//! is dropped. When its event is queued the ticket is settled to the event's real size ([`Ticket::settle`]);
//! the writer gives the share back once it has made the event's row ([`Backlog::release`]).
//!
//! Requests may use fifteen sixteenths of each budget; the rest is kept for the anomaly
//! detector's events, which are not tied to a request that could be refused (it waits for room instead,
//! [`Backlog::admit_event`]). Refusals are counted in `audit_requests_refused_total{reason}`: `queue_full`
//! (the writer does not keep up, or the database is slow), `spool_full` (the writer holds events because the
//! disk spool is at `AUDIT_SPOOL_MAX_BYTES`), `stopping` (the pipeline is shutting down).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// What requests leave of each budget for the detector: one sixteenth (rounded down, so a tiny budget is
/// all the requests').
fn request_share(max: usize) -> usize {
    max - max / 16
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    QueueFull,
    SpoolFull,
    Stopping,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::QueueFull => "queue_full",
            Refusal::SpoolFull => "spool_full",
            Refusal::Stopping => "stopping",
        }
    }
}

/// The two budgets and what is currently held of them.
#[derive(Debug)]
pub(crate) struct Backlog {
    bytes: AtomicUsize,
    events: AtomicUsize,
    max_bytes: usize,
    max_events: usize,
    /// Set by the writer while the spool is at its bound and it holds rows (the refusal reason).
    spool_full: AtomicBool,
    /// Set at shutdown: nothing more is admitted.
    closed: AtomicBool,
    /// Whether the last request was refused (for one log line per episode, not per request).
    refusing: AtomicBool,
}

/// A share of the budgets held for one event: a request's head when it is admitted, its body's prefix
/// once read ([`Ticket::grow`]). Dropped without [`Ticket::settle`] (a request refused or cancelled before
/// its event was queued), it gives the share back.
#[derive(Debug)]
#[must_use]
pub struct Ticket {
    backlog: Arc<Backlog>,
    bytes: usize,
    /// Still holding its event slot.
    held: bool,
}

impl Backlog {
    pub(crate) fn new(max_bytes: usize, max_events: usize) -> Arc<Backlog> {
        Arc::new(Backlog {
            bytes: AtomicUsize::new(0),
            events: AtomicUsize::new(0),
            max_bytes,
            max_events,
            spool_full: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            refusing: AtomicBool::new(false),
        })
    }

    /// A request's share of `bytes`, or why not.
    pub(crate) fn admit(self: &Arc<Self>, bytes: usize) -> Result<Ticket, Refusal> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(self.refused(Refusal::Stopping));
        }
        if !self.take(bytes, request_share(self.max_bytes), request_share(self.max_events)) {
            return Err(self.refused(self.refusal()));
        }
        if self.refusing.swap(false, Ordering::Relaxed) {
            tracing::info!("audit pipeline has room again: requests are admitted");
        }
        Ok(Ticket { backlog: self.clone(), bytes, held: true })
    }

    /// A share for an event not tied to a request (the detector's), from the whole budgets: `None` while
    /// they are spent (the caller waits). Admitted while stopping too: the writer's last flush takes it.
    pub(crate) fn admit_event(self: &Arc<Self>, bytes: usize) -> Option<Ticket> {
        if !self.take(bytes, self.max_bytes, self.max_events) {
            return None;
        }
        Some(Ticket { backlog: self.clone(), bytes, held: true })
    }

    /// Take `bytes` and one event if both stay within the limits.
    fn take(&self, bytes: usize, max_bytes: usize, max_events: usize) -> bool {
        if !self.take_bytes(bytes, max_bytes) {
            return false;
        }
        if self.events.fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| fits(held, 1, max_events)).is_err() {
            self.bytes.fetch_sub(bytes, Ordering::AcqRel);
            return false;
        }
        true
    }

    fn take_bytes(&self, bytes: usize, max_bytes: usize) -> bool {
        self.bytes.fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| fits(held, bytes, max_bytes)).is_ok()
    }

    /// Why a request is refused when the budgets are spent.
    fn refusal(&self) -> Refusal {
        if self.spool_full.load(Ordering::Relaxed) { Refusal::SpoolFull } else { Refusal::QueueFull }
    }

    fn refused(&self, reason: Refusal) -> Refusal {
        metrics::counter!("audit_requests_refused_total", "reason" => reason.as_str()).increment(1);
        if !self.refusing.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                reason = reason.as_str(),
                held_bytes = self.bytes(),
                held_events = self.events(),
                "audit pipeline full: audited requests are refused (503 AUDIT_UNAVAILABLE) until it has room"
            );
        }
        reason
    }

    /// The writer has made the row of an event of `bytes`: its share is free again.
    pub(crate) fn release(&self, bytes: usize) {
        let _ = self.bytes.fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| Some(held.saturating_sub(bytes)));
        let _ = self.events.fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| Some(held.saturating_sub(1)));
    }

    /// The writer holds rows because the spool is at its bound (or no longer).
    pub(crate) fn set_spool_full(&self, full: bool) {
        self.spool_full.store(full, Ordering::Relaxed);
    }

    /// Admit nothing more (shutdown).
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }

    /// Bytes held (queued events and admitted requests whose events are not queued yet).
    pub(crate) fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Events held, likewise.
    pub(crate) fn events(&self) -> usize {
        self.events.load(Ordering::Relaxed)
    }
}

/// `held + n` when it stays within `max`.
fn fits(held: usize, n: usize, max: usize) -> Option<usize> {
    held.checked_add(n).filter(|total| *total <= max)
}

impl Ticket {
    /// `bytes` more for the same event (a request's body, once it is read: a client sending its body slowly
    /// holds no room for it meanwhile), or why not; the ticket keeps what it had either way.
    pub fn grow(&mut self, bytes: usize) -> Result<(), Refusal> {
        if !self.backlog.take_bytes(bytes, request_share(self.backlog.max_bytes)) {
            return Err(self.backlog.refused(self.backlog.refusal()));
        }
        self.bytes += bytes;
        Ok(())
    }

    /// The event is queued and holds `bytes` (its real size, which replaces the estimate it was admitted with);
    /// the writer releases it.
    pub fn settle(mut self, bytes: usize) {
        if bytes >= self.bytes {
            self.backlog.bytes.fetch_add(bytes - self.bytes, Ordering::AcqRel);
        } else {
            self.backlog.bytes.fetch_sub(self.bytes - bytes, Ordering::AcqRel);
        }
        self.held = false;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.held {
            self.backlog.release(self.bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_admitted_within_their_share_and_refused_past_it() {
        let backlog = Backlog::new(16_000, 1_600);
        // Requests may hold 15_000 bytes.
        let a = backlog.admit(10_000).expect("room");
        assert_eq!(backlog.admit(6_000).map(drop), Err(Refusal::QueueFull), "over the requests' share");
        let b = backlog.admit(5_000).expect("exactly the share");
        assert_eq!((backlog.bytes(), backlog.events()), (15_000, 2));
        // The detector still has the rest.
        let c = backlog.admit_event(1_000).expect("the detector's room");
        assert!(backlog.admit_event(1).is_none(), "the whole budget is spent");
        a.settle(4_000);
        assert_eq!(backlog.bytes(), 10_000, "settled to the event's real size");
        backlog.release(4_000);
        drop(b);
        assert_eq!((backlog.bytes(), backlog.events()), (1_000, 1), "a ticket dropped unsettled gives its share back");
        c.settle(1_000);
        backlog.release(1_000);
        assert_eq!((backlog.bytes(), backlog.events()), (0, 0));
    }

    #[test]
    fn a_ticket_grows_by_its_body_within_the_requests_share() {
        let backlog = Backlog::new(16_000, 100);
        let mut a = backlog.admit(1_000).expect("room");
        let b = backlog.admit(1_000).expect("room");
        a.grow(12_000).expect("room for the body");
        assert_eq!(backlog.bytes(), 14_000);
        let mut b = b;
        assert_eq!(b.grow(2_000), Err(Refusal::QueueFull), "15_000 is the requests' share");
        assert_eq!((backlog.bytes(), backlog.events()), (14_000, 2), "a refused growth takes nothing");
        drop(a);
        drop(b);
        assert_eq!((backlog.bytes(), backlog.events()), (0, 0), "the grown share is given back whole");
    }

    #[test]
    fn the_event_budget_bounds_too_and_refusals_say_why() {
        let backlog = Backlog::new(1 << 30, 32);
        let tickets: Vec<Ticket> = (0..30).map(|_| backlog.admit(1).expect("room")).collect();
        assert_eq!(backlog.admit(1).map(drop), Err(Refusal::QueueFull), "30 of 32 events is the requests' share");
        backlog.set_spool_full(true);
        assert_eq!(backlog.admit(1).map(drop), Err(Refusal::SpoolFull));
        drop(tickets);
        assert!(backlog.admit(1).is_ok(), "room again");
        backlog.close();
        assert_eq!(backlog.admit(1).map(drop), Err(Refusal::Stopping));
        assert!(backlog.admit_event(1).is_some(), "the detector's events still go to the last flush");
    }
}
