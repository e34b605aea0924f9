//! What a guarded call returns when it did not produce the inner result.
//!
//! The inner error is carried unchanged (`Inner`) rather than converted, so a
//! caller can still match on its own error type (e.g. tell a 401 from a 503)
//! and the breaker never has to know what the errors mean: that is the
//! classifier's job.

use std::time::Duration;

/// Error of a call made through a [`CircuitBreaker`](crate::CircuitBreaker)
/// or a [`BreakerService`](crate::BreakerService).
///
/// `Display` and `Error` are implemented when `E` implements them; `Inner` is
/// transparent (same message, same `source()` as the inner error), so wrapping
/// a call in a breaker does not change how its errors read in logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BreakerError<E> {
    /// The call was not made: the breaker is open, or half-open with its
    /// trial call in flight.
    #[error("circuit breaker is open; retry in {retry_after:?}")]
    Open {
        /// When the breaker is expected to let a (trial) call through again:
        /// the rest of the reset timeout while open, or the rest of the
        /// running trial's timeout while half-open (zero when trials have no
        /// timeout, meaning "unknown, try again soon"). A hint for
        /// `Retry-After` headers, not a promise.
        retry_after: Duration,
    },
    /// The call did not complete within the configured timeout; it was
    /// dropped (cancelled) and counted as a failure. Carries the timeout.
    #[error("call timed out after {0:?}")]
    Timeout(Duration),
    /// The call completed with this error (whatever the classifier made of it).
    #[error(transparent)]
    Inner(E),
}

impl<E> BreakerError<E> {
    /// `true` for [`BreakerError::Open`]: the call was rejected without running.
    pub fn is_open(&self) -> bool {
        matches!(self, Self::Open { .. })
    }

    /// `true` for [`BreakerError::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout(_))
    }

    /// The `retry_after` hint of a rejection, `None` otherwise.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Open { retry_after } => Some(*retry_after),
            _ => None,
        }
    }

    /// The inner error, if the call ran and failed.
    pub fn inner(&self) -> Option<&E> {
        match self {
            Self::Inner(e) => Some(e),
            _ => None,
        }
    }

    /// The inner error, if the call ran and failed.
    pub fn into_inner(self) -> Option<E> {
        match self {
            Self::Inner(e) => Some(e),
            _ => None,
        }
    }

    /// Converts the inner error, keeping `Open` and `Timeout` as they are.
    pub fn map_inner<F, E2>(self, f: F) -> BreakerError<E2>
    where
        F: FnOnce(E) -> E2,
    {
        match self {
            Self::Open { retry_after } => BreakerError::Open { retry_after },
            Self::Timeout(d) => BreakerError::Timeout(d),
            Self::Inner(e) => BreakerError::Inner(f(e)),
        }
    }
}
