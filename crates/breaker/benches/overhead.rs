//! Per-call overhead of the breaker: `breaker.call(ready_future, Outcome::of)`
//! against the bare future, and the same through the tower layer, on a
//! current-thread runtime. Target: under 2 µs per call.
//!
//! `cargo bench -p breaker --bench overhead -- --warm-up-time 1 --measurement-time 3`
//!
//! Each measurement runs its loop inside one `block_on`, so the runtime's own
//! entry cost is not attributed to the calls.

use std::future::ready;
use std::hint::black_box;
use std::time::{Duration, Instant};

use breaker::{BreakerConfig, BreakerLayer, CircuitBreaker, Outcome};
use criterion::{Criterion, criterion_group, criterion_main};
use tokio::runtime::Runtime;
use tower::{Layer, Service, ServiceExt, service_fn};

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread().enable_time().build().expect("a current-thread runtime")
}

/// A breaker that never trips while benchmarked (successes only) and keeps
/// the default 5 s timeout, so the timer path is armed but never needed.
fn closed() -> CircuitBreaker {
    CircuitBreaker::new("bench", BreakerConfig::default())
}

fn call(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("call");

    group.bench_function("bare ready future", |b| {
        b.to_async(&rt).iter_custom(|iters| async move {
            let start = Instant::now();
            for i in 0..iters {
                black_box(ready(Ok::<u64, ()>(black_box(i))).await).ok();
            }
            start.elapsed()
        });
    });

    let open = closed();
    open.open();
    let disabled = CircuitBreaker::new("bench", BreakerConfig { enabled: false, ..BreakerConfig::default() });
    // With a subscriber, every call also sends two events.
    let observed = closed();
    let _events = observed.subscribe();
    for (name, breaker) in [
        ("breaker.call (closed)", closed()),
        ("breaker.call (open: rejected)", open),
        ("breaker.call (disabled)", disabled),
        ("breaker.call (closed, subscribed)", observed),
    ] {
        group.bench_function(name, |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let breaker = breaker.clone();
                async move {
                    let start = Instant::now();
                    for i in 0..iters {
                        black_box(breaker.call(ready(Ok::<u64, ()>(black_box(i))), Outcome::of).await).ok();
                    }
                    start.elapsed()
                }
            });
        });
    }
    group.finish();
}

fn tower(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("tower");
    let inner = service_fn(|n: u64| ready(Ok::<u64, ()>(n)));

    group.bench_function("bare service_fn", |b| {
        b.to_async(&rt).iter_custom(|iters| async move {
            let mut svc = inner;
            let start = Instant::now();
            for i in 0..iters {
                let ready_svc = svc.ready().await.expect("always ready");
                black_box(ready_svc.call(black_box(i)).await).ok();
            }
            start.elapsed()
        });
    });

    let layer = BreakerLayer::new(closed(), Outcome::of);
    group.bench_function("BreakerService (closed)", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let mut svc = layer.layer(inner);
            async move {
                let start = Instant::now();
                for i in 0..iters {
                    let ready_svc = svc.ready().await.expect("always ready");
                    black_box(ready_svc.call(black_box(i)).await).ok();
                }
                start.elapsed()
            }
        });
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = call, tower
}
criterion_main!(benches);
