//! The state machine: Closed → Open → HalfOpen → Closed (or back to Open).
//!
//! Everything here runs under the breaker's one mutex, in short sections that
//! never await, and takes the current time as an argument instead of reading
//! a clock or owning a timer. Why:
//!
//! * **Lazy, clock-driven transitions.** Open → HalfOpen happens when someone
//!   looks (a call, `state()`, `stats()`) and finds the reset timeout has
//!   elapsed, not when a timer fires. opossum's `setTimeout` needs `unref`,
//!   cancellation on shutdown and care not to fire after a manual `close()`;
//!   a deadline compared on access has none of these problems, costs nothing
//!   while idle, and with `tokio::time::pause()` tests see transitions at
//!   exactly the instant they advance to.
//! * **One trial at a time.** HalfOpen records *which* trial is in flight
//!   (an id); every other call is rejected until that trial reports. opossum
//!   lets every call through while half-open, so a recovering service gets
//!   the full load at once.
//! * **Results are matched to the period they belong to.** Each admission
//!   carries the window generation (bumped whenever the window is cleared, i.e.
//!   on closing) and, for a trial, its id. A call admitted before the breaker
//!   last closed reports into the cumulative totals only, so failures from
//!   before the outage cannot trip the fresh window; a trial whose half-open
//!   period was ended by `open()`/`close()` decides nothing.
//! * **Closing clears the window**, so the failures that tripped the breaker
//!   cannot re-trip it on the first failure after recovery (an opossum bug).
//!
//! The abandoned-trial rule lives in [`Machine::complete`] with
//! [`Completion::Abandoned`]; the RAII guard that reports it is in `guard`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::config::BreakerConfig;
use crate::events::{EVENT_CAPACITY, Event};
use crate::stats::{Counts, Stats, Transitions};
use crate::window::Window;

/// The breaker's externally visible state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum State {
    /// Calls run; failures are counted.
    Closed,
    /// Calls are rejected until the reset timeout elapses.
    Open,
    /// One trial call may run; its result closes or re-opens the breaker.
    HalfOpen,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half-open",
        })
    }
}

/// How a completed call counts for the breaker, decided by the caller's
/// classifier (the result itself is always handed back unchanged).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The service did its job.
    Success,
    /// The service failed (5xx, connection refused, …); counts towards tripping.
    Failure,
    /// An error that is the caller's fault (e.g. HTTP 4xx, bad credentials):
    /// the service answered, so it counts as a success for the breaker, but
    /// the error still goes back to the caller and no fallback runs
    /// (opossum's `errorFilter`).
    Ignored,
}

impl Outcome {
    /// The obvious classifier: `Ok` is a success, `Err` a failure. Usable
    /// directly as `breaker.call(fut, Outcome::of)`.
    pub fn of<T, E>(result: &Result<T, E>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        }
    }
}

/// How an admitted call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Completion {
    Done(Outcome),
    Timeout,
    /// The call's future was dropped before it completed. Only reported for
    /// trials (an abandoned ordinary call just never reports).
    Abandoned,
}

/// What [`Machine::admit`] hands to an admitted call, to give back on completion.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket {
    pub(crate) started: Instant,
    generation: u64,
    trial: Option<u64>,
}

impl Ticket {
    pub(crate) fn is_trial(&self) -> bool {
        self.trial.is_some()
    }
}

pub(crate) enum Admission {
    Admitted(Ticket),
    Rejected { retry_after: Duration },
}

#[derive(Debug, Clone, Copy)]
struct Trial {
    id: u64,
    deadline: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Closed,
    Open { until: Instant },
    HalfOpen { trial: Option<Trial> },
}

pub(crate) struct Machine {
    name: Arc<str>,
    reset_timeout: Duration,
    timeout: Option<Duration>,
    error_threshold_percentage: f64,
    volume_threshold: u64,
    phase: Phase,
    window: Window,
    /// Bumped whenever the window is cleared.
    generation: u64,
    next_trial: u64,
    totals: Counts,
    transitions: Transitions,
    events: broadcast::Sender<Event>,
    /// Per-call events are only worth a send once someone has subscribed.
    subscribed: bool,
}

impl Machine {
    pub(crate) fn new(name: Arc<str>, config: &BreakerConfig, now: Instant) -> Self {
        Self {
            name,
            reset_timeout: config.reset_timeout,
            timeout: config.timeout,
            error_threshold_percentage: config.error_threshold_percentage,
            volume_threshold: u64::from(config.volume_threshold),
            phase: Phase::Closed,
            window: Window::new(config.rolling_window, config.buckets, now),
            generation: 0,
            next_trial: 0,
            totals: Counts::ZERO,
            transitions: Transitions::default(),
            events: broadcast::channel(EVENT_CAPACITY).0,
            subscribed: false,
        }
    }

    pub(crate) fn subscribe(&mut self) -> broadcast::Receiver<Event> {
        self.subscribed = true;
        self.events.subscribe()
    }

    fn emit(&self, event: Event) {
        if self.subscribed {
            // An error only means nobody is listening right now.
            let _ = self.events.send(event);
        }
    }

    /// Applies the reset timeout: Open → HalfOpen once it has elapsed.
    fn refresh(&mut self, now: Instant) {
        if let Phase::Open { until } = self.phase
            && now >= until
        {
            self.phase = Phase::HalfOpen { trial: None };
            self.transitions.half_opened += 1;
            tracing::info!(breaker = %self.name, "circuit breaker half-open: next call is a trial");
            self.emit(Event::HalfOpen);
        }
    }

    pub(crate) fn state(&mut self, now: Instant) -> State {
        self.refresh(now);
        match self.phase {
            Phase::Closed => State::Closed,
            Phase::Open { .. } => State::Open,
            Phase::HalfOpen { .. } => State::HalfOpen,
        }
    }

    /// Decides whether a call may run. Counts the fire, and the reject if not.
    pub(crate) fn admit(&mut self, now: Instant) -> Admission {
        self.refresh(now);
        self.totals.fires += 1;
        self.window.bucket(now).counts.fires += 1;
        self.emit(Event::Fire);
        let mut ticket = Ticket { started: now, generation: self.generation, trial: None };
        let retry_after = match &mut self.phase {
            Phase::Closed => return Admission::Admitted(ticket),
            Phase::HalfOpen { trial: slot @ None } => {
                let id = self.next_trial;
                self.next_trial += 1;
                *slot = Some(Trial { id, deadline: self.timeout.and_then(|t| now.checked_add(t)) });
                ticket.trial = Some(id);
                tracing::debug!(breaker = %self.name, "circuit breaker trial call admitted");
                return Admission::Admitted(ticket);
            }
            Phase::Open { until } => until.saturating_duration_since(now),
            // The trial will have decided by its deadline, if it has one.
            Phase::HalfOpen { trial: Some(trial) } => {
                trial.deadline.map_or(Duration::ZERO, |d| d.saturating_duration_since(now))
            }
        };
        self.totals.rejects += 1;
        self.window.bucket(now).counts.rejects += 1;
        self.emit(Event::Reject);
        Admission::Rejected { retry_after }
    }

    /// Records how an admitted call ended and applies any transition.
    pub(crate) fn complete(&mut self, now: Instant, ticket: Ticket, completion: Completion) {
        self.refresh(now);
        let latency = now.saturating_duration_since(ticket.started);
        let current = ticket.generation == self.generation;
        let failed = match completion {
            Completion::Done(Outcome::Success | Outcome::Ignored) => {
                self.count_ran(now, current, latency, |c| &mut c.successes);
                self.emit(Event::Success { latency });
                false
            }
            Completion::Done(Outcome::Failure) => {
                self.count_ran(now, current, latency, |c| &mut c.failures);
                self.emit(Event::Failure { latency });
                true
            }
            Completion::Timeout => {
                self.totals.timeouts += 1;
                if current {
                    self.window.bucket(now).counts.timeouts += 1;
                }
                self.emit(Event::Timeout);
                true
            }
            Completion::Abandoned => true,
        };

        if let Some(id) = ticket.trial {
            let ours = matches!(self.phase, Phase::HalfOpen { trial: Some(t) } if t.id == id);
            if !ours {
                return;
            }
            if !failed {
                self.enter_closed(now, "trial call succeeded");
            } else if completion == Completion::Abandoned {
                self.enter_open(now, "trial call abandoned before completing");
            } else {
                self.enter_open(now, "trial call failed");
            }
        } else if failed && current && matches!(self.phase, Phase::Closed) && self.should_trip(now) {
            self.enter_open(now, "error threshold exceeded");
        }
    }

    /// Counts a call that ran to an outcome in `counter` of the totals and, when it was admitted in the
    /// current window generation, of the window's bucket, with its latency.
    fn count_ran(&mut self, now: Instant, current: bool, latency: Duration, counter: fn(&mut Counts) -> &mut u64) {
        *counter(&mut self.totals) += 1;
        if current {
            let bucket = self.window.bucket(now);
            *counter(&mut bucket.counts) += 1;
            bucket.record_latency(latency);
        }
    }

    fn should_trip(&mut self, now: Instant) -> bool {
        let counts = self.window.counts(now);
        let executed = counts.executed();
        // Exact for integral thresholds: no `3/5*100 = 60.000000000000007 > 60`.
        executed > 0
            && executed >= self.volume_threshold
            && (counts.failures + counts.timeouts) as f64 * 100.0 > self.error_threshold_percentage * executed as f64
    }

    fn enter_open(&mut self, now: Instant, why: &str) {
        // An `Instant` overflow means a reset timeout of centuries: stay open "forever".
        let until = now.checked_add(self.reset_timeout).unwrap_or(now + Duration::from_secs(100 * 365 * 86_400));
        self.phase = Phase::Open { until };
        self.transitions.opened += 1;
        let counts = self.window.counts(now);
        tracing::warn!(
            breaker = %self.name,
            reason = why,
            error_percentage = counts.error_percentage(),
            executed = counts.executed(),
            reset_timeout_ms = self.reset_timeout.as_millis() as u64,
            "circuit breaker opened",
        );
        self.emit(Event::Open);
    }

    fn enter_closed(&mut self, now: Instant, why: &str) {
        self.phase = Phase::Closed;
        self.window.clear(now);
        self.generation += 1;
        self.transitions.closed += 1;
        tracing::info!(breaker = %self.name, reason = why, "circuit breaker closed");
        self.emit(Event::Close);
    }

    /// Manual `open()`: opens with a fresh reset timer unless already open.
    pub(crate) fn force_open(&mut self, now: Instant) {
        self.refresh(now);
        if !matches!(self.phase, Phase::Open { .. }) {
            self.enter_open(now, "opened manually");
        }
    }

    /// Manual `close()`: closes and clears the window unless already closed.
    pub(crate) fn force_close(&mut self, now: Instant) {
        if !matches!(self.phase, Phase::Closed) {
            self.enter_closed(now, "closed manually");
        }
    }

    pub(crate) fn record_fallback(&mut self, now: Instant) {
        self.totals.fallbacks += 1;
        self.window.bucket(now).counts.fallbacks += 1;
        self.emit(Event::Fallback);
    }

    pub(crate) fn stats(&mut self, now: Instant, enabled: bool) -> Stats {
        let state = self.state(now);
        let window = self.window.counts(now);
        let half_open_in_ms = match self.phase {
            Phase::Open { until } => {
                let left = until.saturating_duration_since(now);
                Some(u64::try_from(left.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX))
            }
            _ => None,
        };
        Stats {
            name: self.name.to_string(),
            state,
            enabled,
            window,
            totals: self.totals,
            error_percentage: window.error_percentage(),
            latency: self.window.latency(now),
            transitions: self.transitions,
            half_open_in_ms,
        }
    }
}
