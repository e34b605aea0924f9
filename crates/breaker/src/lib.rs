//! An opossum-style circuit breaker for async calls and tower services.
//!
//! # Why this crate exists
//!
//! The server talks to an auth service (and later others) that can go down or
//! become slow. When it does, we want to stop sending it traffic for a while,
//! answer quickly from a fallback or with a clean "unavailable", and probe it
//! carefully until it is back: the behaviour of Node's
//! [opossum](https://nodeshift.dev/opossum/), which the service we replace
//! relied on. None of the Rust crates we looked at has those semantics
//! together (they differ on at least one of: threshold comparison, minimum
//! volume, time-bucketed window, how many half-open calls get through, how
//! errors are classified), so this crate implements exactly them:
//!
//! * **Strictly-greater threshold.** The breaker trips when the failure rate
//!   (failures + timeouts over the calls let through) in the rolling window
//!   is *strictly greater* than
//!   [`error_threshold_percentage`](BreakerConfig::error_threshold_percentage):
//!   at 50 %, 5 failures out of 10 keep it closed, 6 trip it.
//! * **Volume threshold.** Nothing trips before
//!   [`volume_threshold`](BreakerConfig::volume_threshold) calls are in the
//!   window, so one early failure does not open the breaker.
//! * **Rolling buckets.** Counts live in a ring of time buckets that rotates
//!   lazily from the clock: failures older than the window are forgotten, with
//!   no background task.
//! * **Single guarded half-open trial.** After
//!   [`reset_timeout`](BreakerConfig::reset_timeout) exactly one call is let
//!   through; the others are rejected until it reports. Its success closes
//!   the breaker (and clears the window), its failure or timeout re-opens it
//!   with a fresh timer. The trial is held by an RAII guard, so a trial that is
//!   cancelled (its future dropped) or panics re-opens the breaker instead of
//!   wedging it half-open forever.
//! * **Error classifier.** The caller decides per result whether it is a
//!   [`Success`](Outcome::Success), a [`Failure`](Outcome::Failure) or
//!   [`Ignored`](Outcome::Ignored) (the caller's own fault, like an HTTP 4xx:
//!   it proves the service is up and never trips the breaker).
//! * **Fallback** ([`CircuitBreaker::call_with_fallback`]) for rejected,
//!   timed-out and failed calls, and **events** ([`CircuitBreaker::subscribe`])
//!   plus a serializable [`Stats`] snapshot for health reports.
//!
//! Transitions are driven by `tokio::time::Instant`, read on every access, so
//! with `tokio::time::pause()` tests see them at exactly the instant they
//! advance the clock to. The per-call cost is two short critical sections on
//! an uncontended `parking_lot` mutex and no allocation.
//!
//! # Example
//!
//! ```
//! use breaker::{BreakerConfig, BreakerError, CircuitBreaker, Outcome, State};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let config = BreakerConfig { volume_threshold: 2, ..BreakerConfig::default() };
//! let auth = CircuitBreaker::new("auth", config);
//!
//! // A failing dependency: two failures out of two calls trip the breaker.
//! for _ in 0..2 {
//!     let result = auth.call(async { Err::<u32, &str>("503") }, Outcome::of).await;
//!     assert_eq!(result, Err(BreakerError::Inner("503")));
//! }
//! assert_eq!(auth.state(), State::Open);
//!
//! // Now calls are rejected without running...
//! let result = auth.call(async { Ok::<u32, &str>(1) }, Outcome::of).await;
//! assert!(result.as_ref().is_err_and(BreakerError::is_open));
//!
//! // ...unless a fallback answers for them.
//! let value = auth.call_with_fallback(async { Ok::<u32, &str>(1) }, Outcome::of, |_err| Some(0)).await;
//! assert_eq!(value, Ok(0));
//!
//! // A 4xx-like error is the caller's fault: returned as is, never trips.
//! let teapot = CircuitBreaker::new("teapot", BreakerConfig::default());
//! let classify = |r: &Result<u32, u16>| match r {
//!     Err(status) if *status < 500 => Outcome::Ignored,
//!     other => Outcome::of(other),
//! };
//! for _ in 0..10 {
//!     assert_eq!(teapot.call(async { Err(418) }, classify).await, Err(BreakerError::Inner(418)));
//! }
//! assert_eq!(teapot.state(), State::Closed);
//! # }
//! ```
//!
//! For tower stacks, [`BreakerLayer`] wraps any service the same way.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::broadcast;
use tokio::time::Instant;

mod config;
mod error;
mod events;
mod guard;
pub mod layer;
mod state;
mod stats;
mod window;

pub use config::{BreakerConfig, ConfigError};
pub use error::BreakerError;
pub use events::{EVENT_CAPACITY, Event};
pub use layer::{BreakerLayer, BreakerService};
pub use state::{Outcome, State};
pub use stats::{Counts, LatencyStats, Stats, Transitions};

use guard::{Guarded, Permit};
use state::{Admission, Completion, Machine, Ticket};

/// What every clone of a [`CircuitBreaker`] (and every in-flight [`Permit`]) shares.
pub(crate) struct Shared {
    name: Arc<str>,
    config: BreakerConfig,
    enabled: bool,
    machine: Mutex<Machine>,
}

impl Shared {
    /// Reports how an admitted call ended (called by [`Permit`]).
    pub(crate) fn complete(&self, ticket: Ticket, completion: Completion) {
        self.machine.lock().complete(Instant::now(), ticket, completion);
    }
}

/// A named circuit breaker. Cheap to clone: clones share the same state.
///
/// See the [crate docs](crate) for the semantics. All methods take the
/// current time from `tokio::time::Instant::now()`, so a paused tokio clock
/// drives the breaker deterministically.
#[derive(Clone)]
pub struct CircuitBreaker {
    shared: Arc<Shared>,
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No lock here: formatting must never block or deadlock.
        f.debug_struct("CircuitBreaker")
            .field("name", &self.shared.name)
            .field("enabled", &self.shared.enabled)
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl CircuitBreaker {
    /// Creates a closed breaker.
    ///
    /// # Panics
    ///
    /// If the configuration is invalid (see [`BreakerConfig::validate`]).
    /// Configurations built in code are checked by the tests that use them;
    /// for values read from outside, validate first or use [`Self::try_new`].
    pub fn new(name: impl Into<Arc<str>>, config: BreakerConfig) -> Self {
        let name = name.into();
        match Self::try_new(Arc::clone(&name), config) {
            Ok(breaker) => breaker,
            Err(e) => panic!("invalid configuration for circuit breaker `{name}`: {e}"),
        }
    }

    /// Creates a closed breaker, or says why the configuration is invalid.
    pub fn try_new(name: impl Into<Arc<str>>, config: BreakerConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let name = name.into();
        let machine = Machine::new(Arc::clone(&name), &config, Instant::now());
        let enabled = config.enabled;
        Ok(Self { shared: Arc::new(Shared { name, config, enabled, machine: Mutex::new(machine) }) })
    }

    /// The name given at creation (used in logs and [`Stats`]).
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The configuration given at creation.
    pub fn config(&self) -> &BreakerConfig {
        &self.shared.config
    }

    /// The feature flag ([`BreakerConfig::enabled`]): when `false`, calls pass
    /// straight through.
    pub fn is_enabled(&self) -> bool {
        self.shared.enabled
    }

    /// Decides whether a call may run now: `Ok(None)` when disabled (run it
    /// unguarded), `Ok(Some(permit))` when admitted, `Err(retry_after)` when
    /// rejected.
    #[inline]
    pub(crate) fn admit(&self) -> Result<Option<Permit>, Duration> {
        if !self.shared.enabled {
            return Ok(None);
        }
        let admission = self.shared.machine.lock().admit(Instant::now());
        match admission {
            Admission::Admitted(ticket) => Ok(Some(Permit::new(Arc::clone(&self.shared), ticket))),
            Admission::Rejected { retry_after } => Err(retry_after),
        }
    }

    /// Wraps `fut` for an admission decided by [`Self::admit`].
    #[inline]
    pub(crate) fn guard<F, C>(&self, fut: F, classify: C, permit: Option<Permit>) -> Guarded<F, C> {
        Guarded::new(fut, classify, permit, self.shared.config.timeout)
    }

    /// Runs `fut` through the breaker.
    ///
    /// If the breaker rejects the call, `fut` is dropped without being polled
    /// and [`BreakerError::Open`] is returned. Otherwise `fut` runs under the
    /// configured [`timeout`](BreakerConfig::timeout) (past it, `fut` is
    /// dropped and [`BreakerError::Timeout`] returned), and `classify` decides
    /// how its result counts; the result itself is returned unchanged, errors
    /// wrapped in [`BreakerError::Inner`]. `Outcome::of` is the usual
    /// classifier.
    ///
    /// Admission happens when the returned future is first polled. The future
    /// is cancellation safe: dropping it mid-call (or a panic in `fut` or
    /// `classify`) never leaves the breaker stuck; a dropped half-open trial
    /// re-opens it.
    ///
    /// With the breaker [disabled](Self::is_enabled), `fut` runs untouched:
    /// no timeout, nothing counted, `classify` not called.
    pub async fn call<F, T, E, C>(&self, fut: F, classify: C) -> Result<T, BreakerError<E>>
    where
        F: Future<Output = Result<T, E>>,
        C: FnOnce(&Result<T, E>) -> Outcome,
    {
        match self.admit() {
            Ok(permit) => self.guard(fut, classify, permit).await.0,
            Err(retry_after) => Err(BreakerError::Open { retry_after }),
        }
    }

    /// Like [`call`](Self::call), with a fallback for the calls that did not
    /// do their job: when the call is rejected, times out, or returns an error
    /// classified [`Outcome::Failure`], `fallback` is invoked with the error
    /// (and counted in [`Counts::fallbacks`], with an [`Event::Fallback`]).
    /// `Some(value)` from it becomes `Ok(value)`; `None` returns the error.
    ///
    /// Not invoked for successes, for errors classified
    /// [`Outcome::Ignored`] (the caller's own fault: returned as is), for an
    /// `Ok` classified `Failure` (counted as a failure, but there is no error
    /// to replace), nor when the breaker is disabled (pure pass-through).
    pub async fn call_with_fallback<F, T, E, C, FB>(
        &self,
        fut: F,
        classify: C,
        fallback: FB,
    ) -> Result<T, BreakerError<E>>
    where
        F: Future<Output = Result<T, E>>,
        C: FnOnce(&Result<T, E>) -> Outcome,
        FB: FnOnce(&BreakerError<E>) -> Option<T>,
    {
        let (result, outcome) = match self.admit() {
            Ok(permit) => self.guard(fut, classify, permit).await,
            Err(retry_after) => (Err(BreakerError::Open { retry_after }), Some(Outcome::Failure)),
        };
        match result {
            Err(err) if outcome == Some(Outcome::Failure) => {
                self.shared.machine.lock().record_fallback(Instant::now());
                fallback(&err).ok_or(err)
            }
            other => other,
        }
    }

    /// The current state. An open breaker whose reset timeout has elapsed
    /// turns half-open here (transitions are applied when observed).
    pub fn state(&self) -> State {
        self.shared.machine.lock().state(Instant::now())
    }

    /// A snapshot of the counters, latencies and transitions.
    pub fn stats(&self) -> Stats {
        self.shared.machine.lock().stats(Instant::now(), self.shared.enabled)
    }

    /// Subscribes to the breaker's [`Event`]s from now on. Per-call events
    /// (`Fire`, `Success`, …) are only produced once someone has subscribed.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.shared.machine.lock().subscribe()
    }

    /// Opens the breaker by hand, with a fresh reset timeout (no-op if it is
    /// already open: the running timer is kept). Works on a disabled breaker
    /// too, but calls there pass through regardless of the state.
    pub fn open(&self) {
        self.shared.machine.lock().force_open(Instant::now());
    }

    /// Closes the breaker by hand and clears its window (no-op if closed).
    /// Results of calls admitted before are kept out of the new window, and a
    /// half-open trial in flight no longer decides anything.
    pub fn close(&self) {
        self.shared.machine.lock().force_close(Instant::now());
    }
}
