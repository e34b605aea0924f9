//! Running an admitted call: the per-call timeout and the completion guard.
//!
//! Why a guard: in async Rust a caller can stop caring at any `.await` — the
//! HTTP client disconnects, a `select!` picks another branch, a `timeout`
//! further out fires — and the call's future is simply dropped. Code after
//! the inner `.await` then never runs. If the breaker learned about results
//! only there, a dropped half-open trial would hold the single trial slot
//! forever and the breaker would reject every call from then on: wedged.
//! [`Permit`] is therefore an RAII guard: completing consumes it and reports
//! the outcome; dropping it unreported (cancellation, or a panic in the inner
//! future or in the classifier) reports the trial as
//! [`Completion::Abandoned`].
//!
//! Choice: an abandoned trial re-opens the breaker with a fresh reset timer,
//! as a failure would (but it is not counted as a failure, since the service
//! may have been fine). Abandonment usually means the call took longer than
//! the client would wait, which is no evidence of recovery; letting the next
//! caller straight in would make a slow service see back-to-back trials.
//! Ordinary (non-trial) calls hold no slot, so dropping them reports nothing:
//! their fire stays counted, with no outcome.
//!
//! The timeout is implemented here rather than with `tokio::time::timeout`
//! so that the deadline is measured from admission and the timer is only
//! created if the inner future is not immediately ready (the common case for
//! cached answers costs no timer-wheel work).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use crate::Shared;
use crate::error::BreakerError;
use crate::state::{Completion, Outcome, Ticket};

/// The right to run one call, reported exactly once (see the module docs).
pub(crate) struct Permit {
    shared: Arc<Shared>,
    ticket: Ticket,
    reported: bool,
}

impl Permit {
    pub(crate) fn new(shared: Arc<Shared>, ticket: Ticket) -> Self {
        Self { shared, ticket, reported: false }
    }

    fn finish(mut self, completion: Completion) {
        self.reported = true;
        self.shared.complete(self.ticket, completion);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.reported && self.ticket.is_trial() {
            self.shared.complete(self.ticket, Completion::Abandoned);
        }
    }
}

pin_project! {
    /// Drives an admitted (or, with no permit, pass-through) call to its end.
    /// Output: the result, and how it was classified (`Timeout` counts as
    /// `Failure`; `None` for pass-through calls).
    pub(crate) struct Guarded<F, C> {
        #[pin]
        fut: F,
        #[pin]
        sleep: Option<Sleep>,
        deadline: Option<Instant>,
        timeout: Duration,
        permit: Option<Permit>,
        classify: Option<C>,
    }
}

impl<F, C> Guarded<F, C> {
    /// `permit: None` runs `fut` untouched: no timeout, nothing reported.
    pub(crate) fn new(fut: F, classify: C, permit: Option<Permit>, timeout: Option<Duration>) -> Self {
        let deadline = match (&permit, timeout) {
            (Some(p), Some(t)) => p.ticket.started.checked_add(t),
            _ => None,
        };
        Self { fut, sleep: None, deadline, timeout: timeout.unwrap_or_default(), permit, classify: Some(classify) }
    }
}

impl<F, C, T, E> Future for Guarded<F, C>
where
    F: Future<Output = Result<T, E>>,
    C: FnOnce(&Result<T, E>) -> Outcome,
{
    type Output = (Result<T, BreakerError<E>>, Option<Outcome>);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        // The inner future first: a result that is ready wins over a deadline
        // that has passed meanwhile (as with `tokio::time::timeout`).
        if let Poll::Ready(result) = this.fut.poll(cx) {
            let mut outcome = None;
            if let Some(permit) = this.permit.take() {
                #[allow(clippy::expect_used)]
                let classify = this.classify.take().expect("Guarded polled after completion");
                let o = classify(&result);
                permit.finish(Completion::Done(o));
                outcome = Some(o);
            }
            return Poll::Ready((result.map_err(BreakerError::Inner), outcome));
        }
        let Some(deadline) = *this.deadline else {
            return Poll::Pending;
        };
        if this.sleep.is_none() {
            this.sleep.set(Some(tokio::time::sleep_until(deadline)));
        }
        if let Some(sleep) = this.sleep.as_mut().as_pin_mut()
            && sleep.poll(cx).is_ready()
        {
            if let Some(permit) = this.permit.take() {
                permit.finish(Completion::Timeout);
            }
            return Poll::Ready((Err(BreakerError::Timeout(*this.timeout)), Some(Outcome::Failure)));
        }
        Poll::Pending
    }
}
