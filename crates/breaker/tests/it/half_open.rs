//! Open → HalfOpen → Closed / Open: rejection, the reset timeout, the single
//! trial, and trials that fail, time out, are cancelled or panic.

use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};

use breaker::{BreakerConfig, BreakerError, CircuitBreaker, Counts, Outcome, State};
use futures::{FutureExt, poll};
use tokio::sync::oneshot;
use tokio::time::sleep;

use crate::common::*;

/// A breaker of [`config`], tripped and left for the reset timeout: the next call is its trial.
async fn half_open() -> CircuitBreaker {
    let b = breaker(config());
    trip(&b).await;
    advance(secs(10)).await;
    b
}

#[tokio::test(start_paused = true)]
async fn open_rejects_with_the_remaining_reset_time_and_counts_rejects() {
    let b = breaker(config());
    trip(&b).await;
    advance(secs(3)).await;

    let ran = AtomicBool::new(false);
    let result = succeed_noting(&b, &ran).await;
    assert_eq!(result, rejected(secs(7)));
    assert!(result.as_ref().is_err_and(BreakerError::is_open));
    assert!(!ran.load(Ordering::SeqCst), "a rejected future is never polled");

    advance(ms(6_999)).await;
    assert_eq!(succeed(&b).await, rejected(ms(1)));

    let stats = b.stats();
    assert_eq!((stats.totals.fires, stats.totals.rejects), (12, 2));
    assert_eq!(stats.window.rejects, 2);
    assert_eq!(stats.totals.failures, 10, "rejects are not failures");
}

#[tokio::test(start_paused = true)]
async fn turns_half_open_lazily_after_the_reset_timeout() {
    let b = breaker(config());
    trip(&b).await;
    advance(secs(10) - std::time::Duration::from_nanos(1)).await;
    assert_eq!(b.state(), State::Open);
    assert_eq!(b.stats().transitions.half_opened, 0);

    advance(std::time::Duration::from_nanos(1)).await;
    assert_eq!(b.state(), State::HalfOpen, "observed, not timer-driven");
    let stats = b.stats();
    assert_eq!(stats.transitions.half_opened, 1);
    assert_eq!(stats.half_open_in_ms, None);

    // Staying half-open for a long time changes nothing until a call comes.
    advance(secs(3600)).await;
    assert_eq!(b.state(), State::HalfOpen);
    assert_eq!(b.stats().transitions.half_opened, 1);
}

#[tokio::test(start_paused = true)]
async fn half_open_admits_exactly_one_trial() {
    let b = half_open().await;

    let (release, released) = oneshot::channel::<()>();
    let mut trial = pin!(b.call(
        async move {
            released.await.expect("the test releases the trial");
            Ok::<u32, &str>(7)
        },
        Outcome::of,
    ));
    assert!(poll!(&mut trial).is_pending());
    assert_eq!(b.state(), State::HalfOpen);

    // While the trial runs, everyone else is rejected until its 1 s deadline.
    advance(ms(200)).await;
    let ran = AtomicBool::new(false);
    for _ in 0..3 {
        let result = succeed_noting(&b, &ran).await;
        assert_eq!(result, rejected(ms(800)));
    }
    assert!(!ran.load(Ordering::SeqCst));
    assert_eq!(b.stats().totals.rejects, 3);

    release.send(()).expect("the trial is waiting");
    assert_eq!(trial.await, Ok(7));
    assert_eq!(b.state(), State::Closed);
    assert_eq!(succeed(&b).await, Ok(1));
}

#[tokio::test(start_paused = true)]
async fn trial_success_closes_and_clears_the_window() {
    // A reset timeout shorter than the window: the tripping failures would
    // still be in the window by time when the breaker closes.
    let b = breaker(BreakerConfig { reset_timeout: secs(2), volume_threshold: 4, ..config() });
    trip(&b).await;
    advance(secs(2)).await;
    assert_eq!(succeed(&b).await, Ok(1));
    assert_eq!(b.state(), State::Closed);

    let stats = b.stats();
    assert_eq!(stats.window, Counts::default(), "the window starts afresh");
    assert_eq!((stats.totals.failures, stats.totals.successes), (4, 1));
    assert_eq!(stats.transitions.closed, 1);

    // The old failures cannot re-trip the breaker on the first failure after recovery.
    fail_n(&b, 3).await;
    assert_eq!(b.state(), State::Closed);
    fail_n(&b, 1).await;
    assert_eq!(b.state(), State::Open, "a fresh window trips as usual");
}

#[tokio::test(start_paused = true)]
async fn trial_failure_reopens_with_a_fresh_reset_timer() {
    let b = half_open().await;
    assert_eq!(fail(&b).await, Err(BreakerError::Inner("boom")));
    assert_eq!(b.state(), State::Open);
    assert_eq!(succeed(&b).await, rejected(secs(10)), "timer restarted at the trial's failure");

    advance(ms(9_999)).await;
    assert_eq!(b.state(), State::Open);
    advance(ms(1)).await;
    assert_eq!(b.state(), State::HalfOpen);
    let stats = b.stats();
    assert_eq!((stats.transitions.opened, stats.transitions.half_opened, stats.transitions.closed), (2, 2, 0));
}

#[tokio::test(start_paused = true)]
async fn trial_timeout_reopens_with_a_fresh_reset_timer() {
    let b = half_open().await;
    let result = succeed_after(&b, secs(60)).await;
    assert_eq!(result, Err(BreakerError::Timeout(secs(1))));
    assert_eq!(b.state(), State::Open);
    assert_eq!(succeed(&b).await, rejected(secs(10)));
    assert_eq!(b.stats().totals.timeouts, 1);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_trial_reopens_and_does_not_wedge() {
    let b = half_open().await;

    // A future that is dropped before it is ever polled was never admitted.
    drop(b.call(async { Ok::<u32, &str>(1) }, Outcome::of));
    assert_eq!(b.state(), State::HalfOpen);

    // The client gives up after 100 ms (an outer timeout drops the call).
    let drops = DropCounter::default();
    let token = drops.token();
    let outer = tokio::time::timeout(
        ms(100),
        b.call(
            async move {
                let _token = token;
                sleep(secs(60)).await;
                Ok::<u32, &str>(1)
            },
            Outcome::of,
        ),
    )
    .await;
    assert!(outer.is_err(), "the outer timeout fired");
    assert_eq!(drops.dropped(), 1);
    assert_eq!(b.state(), State::Open, "an abandoned trial re-opens the breaker");
    assert_eq!(succeed(&b).await, rejected(secs(10)), "with a fresh reset timer");
    let stats = b.stats();
    assert_eq!((stats.totals.failures, stats.totals.timeouts), (10, 0), "abandonment is not a failure");

    // Dropping a trial that is in flight (e.g. a lost `select!` branch) does the same.
    advance(secs(10)).await;
    {
        let mut trial = pin!(b.call(std::future::pending::<Result<u32, &str>>(), Outcome::of));
        assert!(poll!(&mut trial).is_pending());
        assert_eq!(succeed(&b).await, rejected(secs(1)), "the trial holds the slot");
    }
    assert_eq!(b.state(), State::Open);

    // Not wedged: after the next reset timeout a new trial is admitted and closes it.
    advance(secs(10)).await;
    assert_eq!(b.state(), State::HalfOpen);
    assert_eq!(succeed(&b).await, Ok(1));
    assert_eq!(b.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_trial_does_not_wedge() {
    let b = half_open().await;

    // A panic inside the call's future, caught by the caller.
    let explode = true;
    let caught = AssertUnwindSafe(b.call(
        async move {
            assert!(!explode, "trial exploded");
            Ok::<u32, &str>(1)
        },
        Outcome::of,
    ))
    .catch_unwind()
    .await;
    assert!(caught.is_err());
    assert_eq!(b.state(), State::Open);

    // A panic in the classifier of a spawned call, seen as a JoinError.
    advance(secs(10)).await;
    let spawned = b.clone();
    let joined = tokio::spawn(async move {
        spawned
            .call(async { Ok::<u32, &str>(1) }, |_: &Result<u32, &str>| -> Outcome { panic!("classifier exploded") })
            .await
    })
    .await;
    assert!(joined.expect_err("the task panicked").is_panic());
    assert_eq!(b.state(), State::Open);

    advance(secs(10)).await;
    assert_eq!(succeed(&b).await, Ok(1));
    assert_eq!(b.state(), State::Closed);
    assert_eq!(b.stats().transitions.opened, 3);
}

#[tokio::test(start_paused = true)]
async fn a_trial_overtaken_by_a_manual_close_decides_nothing() {
    let b = breaker(BreakerConfig { timeout: None, ..config() });
    trip(&b).await;
    advance(secs(10)).await;
    let (release, released) = oneshot::channel::<()>();
    let mut trial = pin!(b.call(
        async move {
            released.await.expect("the test releases the trial");
            Err::<u32, &str>("late")
        },
        Outcome::of,
    ));
    assert!(poll!(&mut trial).is_pending());
    assert_eq!(succeed(&b).await, rejected(std::time::Duration::ZERO), "no trial deadline: retry soon");

    b.close();
    release.send(()).expect("the trial is waiting");
    assert_eq!(trial.await, Err(BreakerError::Inner("late")));
    assert_eq!(b.state(), State::Closed, "the stale trial's failure does not re-open");
    assert_eq!(b.stats().transitions.opened, 1);
}
