//! Manual control, the feature flag, configuration, errors and auto traits.

use std::error::Error as _;
use std::time::Duration;

use breaker::{BreakerConfig, BreakerError, BreakerService, CircuitBreaker, ConfigError, Counts, Outcome, State};
use tokio::time::Instant;
use tower::Service;

use crate::common::*;

#[tokio::test(start_paused = true)]
async fn manual_open_and_close() {
    let b = breaker(config());
    b.open();
    assert_eq!(b.state(), State::Open);
    assert_eq!(succeed(&b).await, rejected(secs(10)));

    // Opening an open breaker keeps its timer.
    advance(secs(4)).await;
    b.open();
    assert_eq!(succeed(&b).await, rejected(secs(6)));
    assert_eq!(b.stats().transitions.opened, 1);

    b.close();
    assert_eq!(b.state(), State::Closed);
    assert_eq!(succeed(&b).await, Ok(1));
    b.close();
    assert_eq!(b.stats().transitions.closed, 1, "closing a closed breaker is a no-op");

    // Opening a half-open breaker restarts the timer.
    b.open();
    advance(secs(10)).await;
    assert_eq!(b.state(), State::HalfOpen);
    b.open();
    assert_eq!(b.state(), State::Open);
    assert_eq!(succeed(&b).await, rejected(secs(10)));
    assert_eq!(b.stats().transitions.opened, 3);
}

#[tokio::test(start_paused = true)]
async fn a_disabled_breaker_passes_everything_through() {
    let b = breaker(BreakerConfig { enabled: false, ..config() });
    assert!(!b.is_enabled());
    let never = |_: &Result<u32, &str>| -> Outcome { unreachable!("a disabled breaker does not classify") };

    // No timeout: a 5 s call against a 1 s timeout completes.
    let start = Instant::now();
    assert_eq!(b.call(ok_after(secs(5)), never).await, Ok(1));
    assert_eq!(start.elapsed(), secs(5));

    // Never opens, counts nothing, and runs no fallback.
    for _ in 0..50 {
        assert_eq!(b.call(async { Err("boom") }, never).await, Err(BreakerError::Inner("boom")));
        let fallback = |_: &BreakerError<&str>| -> Option<u32> { unreachable!("no fallback when disabled") };
        assert_eq!(
            b.call_with_fallback(async { Err("boom") }, never, fallback).await,
            Err(BreakerError::Inner("boom"))
        );
    }
    assert_eq!(b.state(), State::Closed);
    let stats = b.stats();
    assert!(!stats.enabled);
    assert_eq!((stats.totals, stats.window), (Counts::default(), Counts::default()));
}

#[test]
fn config_validation() {
    let ok = BreakerConfig::default();
    assert_eq!(ok.validate(), Ok(()));
    assert_eq!(ok.timeout, Some(secs(5)));
    assert_eq!((ok.reset_timeout, ok.rolling_window, ok.buckets, ok.volume_threshold), (secs(30), secs(10), 10, 5));

    let bad = |config: BreakerConfig| config.validate().expect_err("invalid");
    assert_eq!(bad(BreakerConfig { buckets: 0, ..ok.clone() }), ConfigError::NoBuckets);
    assert_eq!(
        bad(BreakerConfig { rolling_window: Duration::from_nanos(9), ..ok.clone() }),
        ConfigError::WindowTooShort
    );
    assert_eq!(BreakerConfig { rolling_window: Duration::from_nanos(10), ..ok.clone() }.validate(), Ok(()));
    for threshold in [f64::NAN, -0.1, 100.1, f64::INFINITY] {
        assert_eq!(
            bad(BreakerConfig { error_threshold_percentage: threshold, ..ok.clone() }),
            ConfigError::BadThreshold
        );
    }
    for threshold in [0.0, 100.0] {
        assert_eq!(BreakerConfig { error_threshold_percentage: threshold, ..ok.clone() }.validate(), Ok(()));
    }
    assert_eq!(ConfigError::NoBuckets.to_string(), "buckets must be at least 1");

    let err = CircuitBreaker::try_new("bad", BreakerConfig { buckets: 0, ..ok.clone() }).expect_err("invalid");
    assert_eq!(err, ConfigError::NoBuckets);
    let b = CircuitBreaker::try_new(String::from("auth"), ok.clone()).expect("valid");
    assert_eq!(b.name(), "auth");
    assert_eq!(b.config(), &ok);
    assert!(b.is_enabled());
    assert!(format!("{b:?}").contains("\"auth\""));
}

#[test]
#[should_panic(expected = "invalid configuration for circuit breaker `bad`: buckets must be at least 1")]
fn new_panics_on_an_invalid_config() {
    CircuitBreaker::new("bad", BreakerConfig { buckets: 0, ..BreakerConfig::default() });
}

#[derive(Debug, thiserror::Error)]
#[error("upstream said no")]
struct Upstream(#[source] std::io::Error);

#[test]
fn breaker_error_helpers() {
    let open = BreakerError::<Upstream>::Open { retry_after: ms(1_500) };
    assert!(open.is_open() && !open.is_timeout());
    assert_eq!(open.retry_after(), Some(ms(1_500)));
    assert!(open.inner().is_none());
    assert_eq!(open.to_string(), "circuit breaker is open; retry in 1.5s");

    let timeout = BreakerError::<Upstream>::Timeout(secs(5));
    assert!(timeout.is_timeout() && !timeout.is_open());
    assert_eq!(timeout.retry_after(), None);
    assert_eq!(timeout.to_string(), "call timed out after 5s");
    assert!(timeout.source().is_none());

    // `Inner` is transparent: same message, same source chain as the inner error.
    let inner = BreakerError::Inner(Upstream(std::io::Error::other("connection reset")));
    assert!(!inner.is_open() && !inner.is_timeout());
    assert_eq!(inner.to_string(), "upstream said no");
    assert_eq!(inner.source().map(ToString::to_string).as_deref(), Some("connection reset"));
    assert_eq!(inner.inner().map(ToString::to_string).as_deref(), Some("upstream said no"));
    let mapped = inner.map_inner(|e| e.0.kind());
    assert_eq!(mapped, BreakerError::Inner(std::io::ErrorKind::Other));
    assert_eq!(mapped.into_inner(), Some(std::io::ErrorKind::Other));
    assert_eq!(BreakerError::<u8>::Timeout(secs(1)).into_inner(), None);

    // Usable with `?` into boxed errors.
    let boxed: Box<dyn std::error::Error + Send + Sync> = BreakerError::<Upstream>::Timeout(secs(1)).into();
    assert_eq!(boxed.to_string(), "call timed out after 1s");
}

#[test]
fn breakers_and_their_futures_are_send() {
    fn send_sync<T: Send + Sync + 'static>() {}
    fn send<T: Send>(_: &T) {}
    send_sync::<CircuitBreaker>();
    send_sync::<BreakerError<std::io::Error>>();

    let b = breaker(config());
    let call = b.call(async { Ok::<u32, &str>(1) }, Outcome::of);
    send(&call);
    let call = b.call_with_fallback(async { Ok::<u32, &str>(1) }, Outcome::of, |_| None);
    send(&call);

    let mut svc = BreakerService::new(
        tower::service_fn(|n: u32| async move { Ok::<u32, &str>(n) }),
        b.clone(),
        Outcome::of::<u32, &str>,
    );
    let response = svc.call(1);
    send(&response);
}
