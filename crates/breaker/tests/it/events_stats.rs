//! What a breaker tells its observers: events and stats.

use breaker::{BreakerConfig, Counts, Event, Outcome, State};
use tokio::sync::broadcast::error::TryRecvError;

use crate::common::*;

fn drain(rx: &mut tokio::sync::broadcast::Receiver<Event>) -> Vec<Event> {
    let mut events = Vec::new();
    loop {
        match rx.try_recv() {
            Ok(event) => events.push(event),
            Err(TryRecvError::Empty) => return events,
            Err(e) => panic!("subscriber broken: {e}"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn events_are_emitted_in_order() {
    use Event::*;
    let b = breaker(BreakerConfig { volume_threshold: 1, ..config() });
    let mut rx = b.subscribe();

    assert!(fail_after(&b, ms(5)).await.is_err());
    assert_eq!(drain(&mut rx), [Fire, Failure { latency: ms(5) }, Open]);

    assert!(succeed(&b).await.is_err());
    advance(secs(10)).await;
    assert_eq!(b.state(), State::HalfOpen);
    assert_eq!(succeed_after(&b, ms(20)).await, Ok(1));
    assert_eq!(drain(&mut rx), [Fire, Reject, HalfOpen, Fire, Success { latency: ms(20) }, Close]);

    assert_eq!(b.call_with_fallback(async { Err("boom") }, Outcome::of, |_| Some(0)).await, Ok(0));
    advance(secs(10)).await;
    assert!(succeed_after(&b, secs(60)).await.is_err());
    b.close();
    b.open();
    assert_eq!(
        drain(&mut rx),
        [Fire, Failure { latency: ms(0) }, Open, Fallback, HalfOpen, Fire, Timeout, Open, Close, Open]
    );
}

#[tokio::test(start_paused = true)]
async fn no_subscriber_no_problem_and_late_subscribers_see_what_follows() {
    let b = breaker(BreakerConfig { volume_threshold: 1, ..config() });
    fail_n(&b, 1).await;
    let mut rx = b.subscribe();
    assert_eq!(drain(&mut rx), []);
    b.close();
    assert_eq!(drain(&mut rx), [Event::Close]);
}

#[tokio::test(start_paused = true)]
async fn stats_report_counts_latency_and_transitions() {
    let b = breaker(BreakerConfig { volume_threshold: 4, ..config() });
    for latency in [10, 20, 30, 40] {
        assert_eq!(succeed_after(&b, ms(latency)).await, Ok(1));
    }
    for i in 0..5 {
        assert_eq!(b.state(), State::Closed, "{i} failures of {}", 4 + i);
        assert!(fail_after(&b, ms(100)).await.is_err());
    }

    let stats = b.stats();
    assert_eq!(stats.name, "test");
    assert_eq!(stats.state, State::Open);
    assert!(stats.enabled);
    let expected = Counts { fires: 9, successes: 4, failures: 5, ..Counts::default() };
    assert_eq!((stats.totals, stats.window), (expected, expected));
    assert!((stats.error_percentage - 500.0 / 9.0).abs() < 1e-9);
    assert_eq!(stats.transitions.opened, 1);
    assert_eq!(stats.half_open_in_ms, Some(10_000));

    // Latencies: 10, 20, 30, 40, then five at 100 ms.
    let l = stats.latency;
    assert_eq!(l.samples, 9);
    assert!(l.p50_ms > 0.0 && (l.p50_ms - 100.0).abs() <= 3.0, "{l:?}");
    assert!((l.p90_ms - 100.0).abs() <= 3.0 && (l.p99_ms - 100.0).abs() <= 3.0, "{l:?}");
    assert_eq!(l.max_ms, 100.0);
    assert!((l.mean_ms - 600.0 / 9.0).abs() < 0.001, "{l:?}");

    advance(ms(2_500)).await;
    assert!(succeed(&b).await.is_err());
    let stats = b.stats();
    assert_eq!(stats.half_open_in_ms, Some(7_500));
    assert_eq!(stats.totals.rejects, 1);

    // The JSON shape used by health reports.
    let json = serde_json::to_value(&stats).expect("stats serialize");
    assert_eq!(json["state"], "open");
    assert_eq!(json["halfOpenInMs"], 7_500);
    assert_eq!(json["totals"]["fires"], 10);
    assert_eq!(json["window"]["rejects"], 1);
    assert_eq!(json["latency"]["maxMs"], 100.0);
    assert_eq!(json["transitions"]["halfOpened"], 0);

    advance(ms(7_500)).await;
    let stats = b.stats();
    assert_eq!((stats.state, stats.half_open_in_ms, stats.transitions.half_opened), (State::HalfOpen, None, 1));
    assert_eq!(serde_json::to_value(&stats).expect("stats serialize")["state"], "halfOpen");

    assert_eq!(succeed(&b).await, Ok(1));
    let stats = b.stats();
    assert_eq!(stats.transitions.closed, 1);
    assert_eq!(stats.window, Counts::default());
    assert_eq!(stats.latency.samples, 0);
    assert_eq!(stats.totals.successes, 5);
}
