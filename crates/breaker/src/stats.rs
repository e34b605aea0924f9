//! Snapshot of a breaker for health reports and metrics.
//!
//! A [`Stats`] is a plain value, copied out under the state lock, so it can be
//! serialized (camelCase JSON, the shape the server's health report uses) or
//! compared without holding anything. Durations are in milliseconds because
//! that is what a human reading a health report wants.

use serde::Serialize;

use crate::state::State;

/// Call counters, over the rolling window or since the breaker was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    /// Calls made, including rejected ones.
    pub fires: u64,
    /// Calls classified [`Outcome::Success`](crate::Outcome::Success) or
    /// [`Outcome::Ignored`](crate::Outcome::Ignored).
    pub successes: u64,
    /// Calls classified [`Outcome::Failure`](crate::Outcome::Failure).
    pub failures: u64,
    /// Calls that ran out of time.
    pub timeouts: u64,
    /// Calls rejected without running.
    pub rejects: u64,
    /// Fallbacks invoked.
    pub fallbacks: u64,
}

impl Counts {
    pub(crate) const ZERO: Self = Self { fires: 0, successes: 0, failures: 0, timeouts: 0, rejects: 0, fallbacks: 0 };

    pub(crate) fn add(self, o: &Self) -> Self {
        Self {
            fires: self.fires + o.fires,
            successes: self.successes + o.successes,
            failures: self.failures + o.failures,
            timeouts: self.timeouts + o.timeouts,
            rejects: self.rejects + o.rejects,
            fallbacks: self.fallbacks + o.fallbacks,
        }
    }

    /// Calls that were let through (fired and not rejected).
    pub fn executed(&self) -> u64 {
        self.fires.saturating_sub(self.rejects)
    }

    /// Failures and timeouts as a percentage of the calls let through
    /// (0 when none were). While the breaker is closed nothing is rejected,
    /// so this is opossum's `(failures + timeouts) / fires * 100`; counting
    /// only executed calls keeps the figure meaningful while it is open.
    pub fn error_percentage(&self) -> f64 {
        match self.executed() {
            0 => 0.0,
            n => (self.failures + self.timeouts) as f64 * 100.0 / n as f64,
        }
    }
}

/// Latency of the calls completed (successes, failures and ignored errors;
/// not timeouts) within the rolling window. All zero when there were none.
/// Percentiles come from a histogram and are within about 3 %; `max_ms` and
/// `mean_ms` are exact (to the microsecond).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LatencyStats {
    /// Number of latencies summarized.
    pub samples: u64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
    /// Arithmetic mean.
    pub mean_ms: f64,
}

/// How many times the breaker entered each state since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Transitions {
    /// Entries into [`State::Open`].
    pub opened: u64,
    /// Entries into [`State::HalfOpen`].
    pub half_opened: u64,
    /// Entries into [`State::Closed`] (not counting the initial state).
    pub closed: u64,
}

/// A snapshot of a breaker, from [`CircuitBreaker::stats`](crate::CircuitBreaker::stats).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// The breaker's name.
    pub name: String,
    /// Current state (the reset timeout is applied first, so an open breaker
    /// whose timeout elapsed reports `halfOpen`).
    pub state: State,
    /// The feature flag from the configuration.
    pub enabled: bool,
    /// Counters over the rolling window.
    pub window: Counts,
    /// Counters since the breaker was created.
    pub totals: Counts,
    /// [`Counts::error_percentage`] of the window.
    pub error_percentage: f64,
    /// Latency of the calls completed within the window.
    pub latency: LatencyStats,
    /// State entries since creation.
    pub transitions: Transitions,
    /// While open: milliseconds until the breaker turns half-open (rounded up).
    pub half_open_in_ms: Option<u64>,
}
