//! What a breaker reports to its subscribers.
//!
//! Events go through a [`tokio::sync::broadcast`] channel, the closest thing
//! to opossum's `EventEmitter` that never slows down the calls it observes: a
//! send never waits, and a subscriber that falls more than
//! [`EVENT_CAPACITY`] events behind loses the oldest ones
//! (`RecvError::Lagged`) instead of holding the breaker back. Transition
//! events are sent while the state lock is held, so every subscriber sees
//! `Open`, `HalfOpen` and `Close` in the order they happened. For an
//! exact count of transitions use [`Stats::transitions`](crate::Stats::transitions),
//! which cannot lag.

use std::time::Duration;

/// How many events a subscriber may fall behind before it loses the oldest.
pub const EVENT_CAPACITY: usize = 256;

/// One thing that happened to a breaker (opossum's event names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A call was made, whether it then ran or was rejected.
    Fire,
    /// A call completed and was classified a success, or ignored (the
    /// caller's fault, which tells that the service is up).
    Success {
        /// Time from admission to completion.
        latency: Duration,
    },
    /// A call completed and was classified a failure.
    Failure {
        /// Time from admission to completion.
        latency: Duration,
    },
    /// A call did not complete within the configured timeout.
    Timeout,
    /// A call was rejected without running: the breaker was open, or
    /// half-open with its trial call already in flight.
    Reject,
    /// A fallback was invoked for a rejected, timed-out or failed call.
    Fallback,
    /// The breaker opened (tripped, trial failed or abandoned, or manual `open()`).
    Open,
    /// The reset timeout elapsed; the next call will be a trial.
    HalfOpen,
    /// The breaker closed (trial succeeded, or manual `close()`).
    Close,
}
