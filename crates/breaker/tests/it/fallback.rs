//! `call_with_fallback`: which calls fall back, and what the fallback sees.

use breaker::{BreakerConfig, BreakerError, Outcome, State};

use crate::common::*;

/// A fallback that notes the error it is given in `seen` and offers `value`.
fn noting(seen: &mut Vec<BreakerError<u16>>, value: u32) -> impl FnOnce(&BreakerError<u16>) -> Option<u32> + '_ {
    move |e| {
        seen.push(e.clone());
        Some(value)
    }
}

fn classify(r: &Result<u32, u16>) -> Outcome {
    match r {
        Err(status) if *status < 500 => Outcome::Ignored,
        other => Outcome::of(other),
    }
}

#[tokio::test(start_paused = true)]
async fn fallback_on_failure_timeout_and_reject_but_not_on_success_or_ignored() {
    let b = breaker(BreakerConfig { volume_threshold: 1, ..config() });
    let no_fallback = |e: &BreakerError<u16>| -> Option<u32> { panic!("unexpected fallback for {e:?}") };

    assert_eq!(b.call_with_fallback(async { Ok(1) }, classify, no_fallback).await, Ok(1));
    assert_eq!(b.call_with_fallback(async { Err(404) }, classify, no_fallback).await, Err(BreakerError::Inner(404)));

    // Failure: the fallback sees the inner error.
    let mut seen = Vec::new();
    assert_eq!(b.call_with_fallback(async { Err(503) }, classify, noting(&mut seen, 0)).await, Ok(0));

    // Timeout (1 s).
    assert_eq!(b.call_with_fallback(ok_after(secs(60)), classify, noting(&mut seen, 0)).await, Ok(0));
    assert_eq!(b.state(), State::Closed, "2 failures of 4 calls: 50 %");

    // One more failure trips the breaker; the next call is rejected and falls back.
    assert_eq!(b.call_with_fallback(async { Err(500) }, classify, |_| Some(0)).await, Ok(0));
    assert_eq!(b.state(), State::Open);
    assert_eq!(b.call_with_fallback(async { Ok(1) }, classify, noting(&mut seen, 42)).await, Ok(42));
    assert_eq!(
        seen,
        [BreakerError::Inner(503), BreakerError::Timeout(secs(1)), BreakerError::Open { retry_after: secs(10) }]
    );

    // A fallback that has nothing to offer returns the error.
    assert_eq!(
        b.call_with_fallback(async { Ok(1) }, classify, |_| None).await,
        Err(BreakerError::Open { retry_after: secs(10) })
    );

    let stats = b.stats();
    assert_eq!(stats.totals.fallbacks, 5, "failure, timeout, failure, reject, reject");
    assert_eq!(stats.window.fallbacks, 5);
}

#[tokio::test(start_paused = true)]
async fn an_ok_classified_as_failure_counts_but_is_returned() {
    let b = breaker(BreakerConfig { volume_threshold: 1, ..config() });
    // e.g. a 200 whose body says the upstream is degraded
    let degraded = |r: &Result<u32, u16>| if r == &Ok(0) { Outcome::Failure } else { Outcome::of(r) };
    let no_fallback = |e: &BreakerError<u16>| -> Option<u32> { panic!("unexpected fallback for {e:?}") };
    assert_eq!(b.call_with_fallback(async { Ok(0) }, degraded, no_fallback).await, Ok(0));
    assert_eq!(b.state(), State::Open);
    assert_eq!(b.stats().totals.fallbacks, 0);
}
