//! The tower layer: same breaker semantics around any `Service`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use breaker::{BreakerConfig, BreakerError, BreakerLayer, Outcome, State};
use tokio::time::sleep;
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};

use crate::common::*;

#[tokio::test(start_paused = true)]
async fn the_layer_trips_and_rejects_without_calling_the_service() {
    let b = breaker(BreakerConfig { volume_threshold: 3, ..config() });
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&hits);
    let mut svc =
        ServiceBuilder::new().layer(BreakerLayer::new(b.clone(), Outcome::of)).service(service_fn(move |n: u32| {
            counted.fetch_add(1, Ordering::SeqCst);
            async move {
                match n {
                    0 => Err("upstream down"),
                    60.. => {
                        sleep(secs(n.into())).await;
                        Ok(n)
                    }
                    n => Ok(n * 2),
                }
            }
        }));

    assert_eq!(svc.ready().await.expect("always ready").call(21).await, Ok(42));
    assert_eq!(svc.ready().await.expect("always ready").call(0).await, Err(BreakerError::Inner("upstream down")));
    assert_eq!(b.state(), State::Closed);
    // A timed-out request is a failure too: 2 of 3 trips it.
    assert_eq!(svc.ready().await.expect("always ready").call(60).await, Err(BreakerError::Timeout(secs(1))));
    assert_eq!(b.state(), State::Open);
    assert_eq!(hits.load(Ordering::SeqCst), 3);

    let rejected = svc.ready().await.expect("always ready").call(5).await;
    assert_eq!(rejected, Err(BreakerError::Open { retry_after: secs(10) }));
    assert_eq!(hits.load(Ordering::SeqCst), 3, "a rejected request never reaches the service");
    assert_eq!(b.stats().totals.rejects, 1);

    // Recovery through the same stack, via a cloned service sharing the breaker.
    advance(secs(10)).await;
    assert_eq!(svc.clone().oneshot(5).await, Ok(10));
    assert_eq!(b.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn the_layer_uses_the_classifier() {
    let b = breaker(BreakerConfig { volume_threshold: 1, ..config() });
    let layer = BreakerLayer::new(b.clone(), |r: &Result<u32, u16>| match r {
        Err(status) if *status < 500 => Outcome::Ignored,
        other => Outcome::of(other),
    });
    let svc = layer.layer(service_fn(|status: u16| async move { Err::<u32, u16>(status) }));
    for _ in 0..10 {
        assert_eq!(svc.clone().oneshot(401).await, Err(BreakerError::Inner(401)));
    }
    assert_eq!(b.state(), State::Closed);
    assert_eq!(svc.clone().oneshot(502).await, Err(BreakerError::Inner(502)));
    assert_eq!(b.state(), State::Closed, "1 failure of 11");
    assert_eq!(layer.breaker().stats().totals.failures, 1);
}

/// A service that is never ready.
struct Broken;

impl Service<u32> for Broken {
    type Response = u32;
    type Error = &'static str;
    type Future = std::future::Ready<Result<u32, &'static str>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Err("not ready"))
    }

    fn call(&mut self, _: u32) -> Self::Future {
        std::future::ready(Err("called while not ready"))
    }
}

#[tokio::test(start_paused = true)]
async fn poll_ready_delegates_and_is_not_counted() {
    let b = breaker(config());
    let result = BreakerLayer::new(b.clone(), Outcome::of).layer(Broken).oneshot(1).await;
    assert_eq!(result, Err(BreakerError::Inner("not ready")));
    assert_eq!(b.stats().totals.fires, 0, "no call was made");
}
