//! Tuning knobs, with opossum's defaults.
//!
//! The configuration is fixed for the life of a breaker: every decision the
//! state machine takes reads it without locking, and a breaker whose
//! thresholds change under it would make its own statistics meaningless.
//! Build a new breaker to change it.

use std::time::Duration;

/// How a [`CircuitBreaker`](crate::CircuitBreaker) decides to trip and recover.
///
/// The defaults are opossum's: 5 s call timeout, 30 s reset timeout, trip when
/// more than 50 % of at least 5 calls in the last 10 s (10 buckets of 1 s) failed.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    /// Per-call time limit, trials included. A call still pending when it
    /// expires is dropped (cancelled), answered with
    /// [`BreakerError::Timeout`](crate::BreakerError::Timeout) and counted as
    /// a failure. `None` lets calls run as long as they like.
    pub timeout: Option<Duration>,
    /// How long the breaker stays open before it lets a trial call through.
    pub reset_timeout: Duration,
    /// The breaker trips when the window's failure rate is *strictly greater*
    /// than this (0–100): with 50, a 50 % failure rate keeps it closed.
    pub error_threshold_percentage: f64,
    /// Minimum number of calls in the window before the breaker may trip, so
    /// that one early failure out of one call does not open it.
    pub volume_threshold: u32,
    /// Length of the rolling statistics window.
    pub rolling_window: Duration,
    /// Number of time buckets the window is split into; the window slides by
    /// one bucket (`rolling_window / buckets`) at a time.
    pub buckets: u32,
    /// Feature flag. When `false` calls go straight to the inner future: no
    /// timeout, no counting, no events, and the state stays closed.
    pub enabled: bool,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            timeout: Some(Duration::from_secs(5)),
            reset_timeout: Duration::from_secs(30),
            error_threshold_percentage: 50.0,
            volume_threshold: 5,
            rolling_window: Duration::from_secs(10),
            buckets: 10,
            enabled: true,
        }
    }
}

/// Why a [`BreakerConfig`] cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `buckets` is zero.
    #[error("buckets must be at least 1")]
    NoBuckets,
    /// `rolling_window` is shorter than one nanosecond per bucket.
    #[error("rolling_window must be at least `buckets` nanoseconds long")]
    WindowTooShort,
    /// `error_threshold_percentage` is NaN or outside 0–100.
    #[error("error_threshold_percentage must be a number between 0 and 100")]
    BadThreshold,
}

impl BreakerConfig {
    /// Checks the configuration; [`CircuitBreaker::new`](crate::CircuitBreaker::new)
    /// panics on the same conditions, so call this first when the values come
    /// from outside the program (environment, files).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.buckets == 0 {
            return Err(ConfigError::NoBuckets);
        }
        if self.rolling_window.as_nanos() < u128::from(self.buckets) {
            return Err(ConfigError::WindowTooShort);
        }
        if !(0.0..=100.0).contains(&self.error_threshold_percentage) {
            return Err(ConfigError::BadThreshold);
        }
        Ok(())
    }
}
