//! Closed → Open: volume threshold, strictly-greater threshold, timeouts,
//! ignored errors, the rolling window, and results from an earlier period.

use std::pin::pin;
use std::sync::Arc;

use breaker::{BreakerConfig, BreakerError, Outcome, State};
use futures::future::join_all;
use futures::poll;
use tokio::sync::Semaphore;
use tokio::time::{Instant, sleep};

use crate::common::*;

#[tokio::test(start_paused = true)]
async fn stays_closed_under_the_volume_threshold() {
    let b = breaker(config());
    fail_n(&b, 9).await;
    assert_eq!(b.state(), State::Closed, "9 failures out of 9 are under the volume threshold of 10");
    assert_eq!(b.stats().window.failures, 9);
    assert_eq!(b.stats().error_percentage, 100.0);

    fail_n(&b, 1).await;
    assert_eq!(b.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn trips_only_when_the_failure_rate_is_strictly_greater_than_the_threshold() {
    // 50 % of 10 does not trip...
    let b = breaker(config());
    succeed_n(&b, 5).await;
    fail_n(&b, 5).await;
    assert_eq!(b.stats().error_percentage, 50.0);
    assert_eq!(b.state(), State::Closed);
    // ...one more failure (6 of 11) does.
    fail_n(&b, 1).await;
    assert_eq!(b.state(), State::Open);

    // 6 of 10 trips, on the 10th call exactly.
    let b = breaker(config());
    succeed_n(&b, 4).await;
    fail_n(&b, 5).await;
    assert_eq!(b.state(), State::Closed);
    fail_n(&b, 1).await;
    assert_eq!(b.stats().error_percentage, 60.0);
    assert_eq!(b.state(), State::Open);

    // Successes never trip, whatever came before.
    let b = breaker(config());
    fail_n(&b, 5).await;
    succeed_n(&b, 5).await;
    assert_eq!(b.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn timeouts_are_failures_and_cancel_the_call() {
    let b = breaker(BreakerConfig { timeout: Some(ms(100)), ..config() });
    let drops = DropCounter::default();
    let start = Instant::now();
    for i in 0..10 {
        let token = drops.token();
        let result: Res = b
            .call(
                async move {
                    let _token = token;
                    sleep(secs(60)).await;
                    Ok(1)
                },
                Outcome::of,
            )
            .await;
        assert_eq!(result, Err(BreakerError::Timeout(ms(100))));
        assert_eq!(drops.dropped(), i + 1, "the timed-out future is dropped at once");
        if i < 9 {
            assert_eq!(b.state(), State::Closed);
        }
    }
    assert_eq!(start.elapsed(), ms(1_000), "each call waited exactly its 100 ms");
    assert_eq!(b.state(), State::Open);
    let stats = b.stats();
    assert_eq!((stats.totals.timeouts, stats.totals.failures, stats.totals.successes), (10, 0, 0));
    assert_eq!(stats.window.timeouts, 10);
    assert_eq!(stats.error_percentage, 100.0);
    assert_eq!(stats.latency.samples, 0, "timeouts have no latency");
}

#[tokio::test(start_paused = true)]
async fn a_result_ready_at_the_deadline_wins() {
    let b = breaker(config());
    let result = succeed_after(&b, secs(1)).await;
    assert_eq!(result, Ok(1));
    assert_eq!(b.stats().totals.timeouts, 0);
}

#[tokio::test(start_paused = true)]
async fn ignored_outcomes_never_trip() {
    let b = breaker(config());
    let classify = |r: &Result<u32, u16>| match r {
        Err(status) if *status < 500 => Outcome::Ignored,
        other => Outcome::of(other),
    };
    for _ in 0..50 {
        assert_eq!(b.call(async { Err(404) }, classify).await, Err(BreakerError::Inner(404)));
    }
    assert_eq!(b.state(), State::Closed);
    let stats = b.stats();
    assert_eq!((stats.window.successes, stats.window.failures), (50, 0));
    assert_eq!(stats.error_percentage, 0.0);

    // Real failures still count, against the ignored errors as successes.
    for _ in 0..50 {
        assert_eq!(b.call(async { Err(503) }, classify).await, Err(BreakerError::Inner(503)));
    }
    assert_eq!(b.state(), State::Closed, "50 % of 100");
    assert_eq!(b.call(async { Err(503) }, classify).await, Err(BreakerError::Inner(503)));
    assert_eq!(b.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn the_rolling_window_forgets_old_failures() {
    let b = breaker(config());
    fail_n(&b, 9).await;
    advance(ms(9_999)).await;
    assert_eq!(b.stats().window.failures, 9, "still inside the 10 s window");

    // One bucket later the first bucket (and its 9 failures) is gone.
    advance(ms(1)).await;
    let stats = b.stats();
    assert_eq!((stats.window.failures, stats.window.fires), (0, 0));
    assert_eq!(stats.totals.failures, 9);
    fail_n(&b, 1).await;
    assert_eq!(b.state(), State::Closed, "1 failure in the window, under the volume threshold");

    // Failures spread over buckets add up: 4 at t=13 s, then 6 at t=20 s.
    advance(secs(3)).await;
    fail_n(&b, 4).await;
    advance(secs(7)).await; // the lone failure from 10 s ago has rotated out
    assert_eq!(b.stats().window.failures, 4);
    fail_n(&b, 5).await;
    assert_eq!(b.state(), State::Closed, "9 failures in the window");
    fail_n(&b, 1).await;
    assert_eq!(b.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn calls_admitted_before_a_close_do_not_count_in_the_new_window() {
    let b = breaker(BreakerConfig { timeout: None, volume_threshold: 4, ..config() });
    let gate = Arc::new(Semaphore::new(0));
    let slow: Vec<_> = (0..10)
        .map(|_| {
            let gate = Arc::clone(&gate);
            b.call(
                async move {
                    let _permit = gate.acquire().await.expect("the semaphore is never closed");
                    Err::<u32, _>("late")
                },
                Outcome::of,
            )
        })
        .collect();
    let mut slow = pin!(join_all(slow));
    assert!(poll!(&mut slow).is_pending());
    assert_eq!(b.stats().window.fires, 10, "all ten admitted");

    // A new period starts; the ten old calls then fail.
    b.open();
    b.close();
    gate.add_permits(10);
    for result in slow.await {
        assert_eq!(result, Err(BreakerError::Inner("late")));
    }
    let stats = b.stats();
    assert_eq!(b.state(), State::Closed, "10 stale failures do not trip the new window");
    assert_eq!(stats.window.failures, 0);
    assert_eq!(stats.totals.failures, 10, "but they are in the totals");

    // Calls of the new period do count.
    fail_n(&b, 4).await;
    assert_eq!(b.state(), State::Open);
}
