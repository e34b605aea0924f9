use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use breaker::{BreakerConfig, BreakerError, CircuitBreaker, Outcome, State};

/// What the helpers' calls return.
pub type Res = Result<u32, BreakerError<&'static str>>;

/// Small, round numbers: 1 s call timeout, 10 s reset timeout, trip above 50 %
/// of at least 10 calls in a 10 s window of 10 buckets.
pub fn config() -> BreakerConfig {
    BreakerConfig {
        timeout: Some(Duration::from_secs(1)),
        reset_timeout: Duration::from_secs(10),
        error_threshold_percentage: 50.0,
        volume_threshold: 10,
        rolling_window: Duration::from_secs(10),
        buckets: 10,
        enabled: true,
    }
}

pub fn breaker(config: BreakerConfig) -> CircuitBreaker {
    CircuitBreaker::new("test", config)
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

pub async fn advance(by: Duration) {
    tokio::time::advance(by).await;
}

pub async fn succeed(b: &CircuitBreaker) -> Res {
    b.call(async { Ok(1) }, Outcome::of).await
}

pub async fn fail(b: &CircuitBreaker) -> Res {
    b.call(async { Err("boom") }, Outcome::of).await
}

/// `Ok(1)` after `delay`.
pub async fn ok_after<E>(delay: Duration) -> Result<u32, E> {
    tokio::time::sleep(delay).await;
    Ok(1)
}

/// A call that succeeds after `delay`.
pub async fn succeed_after(b: &CircuitBreaker, delay: Duration) -> Res {
    b.call(ok_after(delay), Outcome::of).await
}

/// A call that fails after `delay`.
pub async fn fail_after(b: &CircuitBreaker, delay: Duration) -> Res {
    b.call(
        async move {
            tokio::time::sleep(delay).await;
            Err("boom")
        },
        Outcome::of,
    )
    .await
}

/// A call that succeeds and sets `ran` when it runs (a rejected call never does).
pub async fn succeed_noting(b: &CircuitBreaker, ran: &AtomicBool) -> Res {
    b.call(
        async {
            ran.store(true, Ordering::SeqCst);
            Ok(1)
        },
        Outcome::of,
    )
    .await
}

pub async fn succeed_n(b: &CircuitBreaker, n: usize) {
    for _ in 0..n {
        assert_eq!(succeed(b).await, Ok(1));
    }
}

pub async fn fail_n(b: &CircuitBreaker, n: usize) {
    for _ in 0..n {
        assert_eq!(fail(b).await, Err(BreakerError::Inner("boom")));
    }
}

/// Fails `volume_threshold` calls in a row, which trips any breaker built from [`config`].
pub async fn trip(b: &CircuitBreaker) {
    assert_eq!(b.state(), State::Closed);
    fail_n(b, b.config().volume_threshold as usize).await;
    assert_eq!(b.state(), State::Open);
}

/// The error of a call rejected with this `retry_after`.
pub fn rejected(retry_after: Duration) -> Res {
    Err(BreakerError::Open { retry_after })
}

/// Counts how many of its clones were dropped: proves a future was cancelled.
#[derive(Clone, Default)]
pub struct DropCounter(Arc<AtomicUsize>);

impl DropCounter {
    pub fn token(&self) -> DropToken {
        DropToken(Arc::clone(&self.0))
    }

    pub fn dropped(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

pub struct DropToken(Arc<AtomicUsize>);

impl Drop for DropToken {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}
