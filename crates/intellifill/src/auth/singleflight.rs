//! One upstream call per key, however many requests want it at once.
//!
//! When a popular token falls out of the cache, every request carrying it misses at the same moment; without
//! coalescing each would call the auth service (a thundering herd that can itself trip the breaker). The
//! first caller spawns the call as a task and every concurrent caller awaits the same shared result. The
//! call is a spawned task, not a future owned by the first caller, so a caller that disconnects does not
//! cancel it for the others (nor abandon a breaker trial).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

type Flight<V> = Shared<BoxFuture<'static, Option<V>>>;

pub(crate) struct SingleFlight<K, V: Clone> {
    inflight: Arc<Mutex<HashMap<K, Flight<V>>>>,
}

impl<K, V> Default for SingleFlight<K, V>
where
    V: Clone,
{
    fn default() -> Self {
        SingleFlight { inflight: Arc::new(Mutex::new(HashMap::new())) }
    }
}

impl<K, V> SingleFlight<K, V>
where
    K: Eq + Hash + Clone + Send + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Run `make()` unless a call for `key` is already in flight; either way return its result.
    /// `None` only if the task panicked.
    pub(crate) async fn run<F>(&self, key: K, make: impl FnOnce() -> F) -> Option<V>
    where
        F: Future<Output = V> + Send + 'static,
    {
        self.flight(key, make).0.await
    }

    /// Start `make()` in the background unless a call for `key` is already in flight; the caller does not
    /// wait for it (background revalidation). Returns whether this call started it.
    pub(crate) fn start<F>(&self, key: K, make: impl FnOnce() -> F) -> bool
    where
        F: Future<Output = V> + Send + 'static,
    {
        self.flight(key, make).1
    }

    /// The flight for `key`, registered (and its task spawned) now if there is none: (flight, new). A new
    /// flight is also awaited by a task of its own, so it leaves the map as soon as it is done even when
    /// every caller went away (else a later caller would be handed its old result).
    fn flight<F>(&self, key: K, make: impl FnOnce() -> F) -> (Flight<V>, bool)
    where
        F: Future<Output = V> + Send + 'static,
    {
        let mut map = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(flight) = map.get(&key) {
            return (flight.clone(), false);
        }
        let task = tokio::spawn(make());
        let map_handle = self.inflight.clone();
        let k = key.clone();
        let flight = async move {
            let result = task.await.ok();
            map_handle.lock().unwrap_or_else(|p| p.into_inner()).remove(&k);
            result
        }
        .boxed()
        .shared();
        map.insert(key, flight.clone());
        tokio::spawn(flight.clone());
        (flight, true)
    }

    /// Calls currently in flight.
    #[cfg(test)]
    fn in_flight(&self) -> usize {
        self.inflight.lock().map(|m| m.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn concurrent_callers_share_one_call() {
        let flights: Arc<SingleFlight<u32, u32>> = Arc::new(SingleFlight::default());
        let calls = Arc::new(AtomicU32::new(0));
        let mut handles = Vec::new();
        for _ in 0..20 {
            let flights = flights.clone();
            let calls = calls.clone();
            handles.push(tokio::spawn(async move {
                flights
                    .run(7, move || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        42
                    })
                    .await
            }));
        }
        for h in handles {
            assert_eq!(h.await.expect("task"), Some(42));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(flights.in_flight(), 0);
        // A later call runs again.
        let again = flights.run(7, || async { 43 }).await;
        assert_eq!(again, Some(43));
    }

    #[tokio::test]
    async fn a_background_start_is_joined_not_repeated() {
        let flights: SingleFlight<u32, u32> = SingleFlight::default();
        let calls = Arc::new(AtomicU32::new(0));
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let counted = calls.clone();
        assert!(flights.start(1, move || async move {
            counted.fetch_add(1, Ordering::SeqCst);
            let _ = released.await;
            5
        }));
        assert_eq!(flights.in_flight(), 1, "registered before start returns");
        assert!(!flights.start(1, || async { 6 }), "already in flight");
        let _ = release.send(());
        assert_eq!(flights.run(1, || async { 7 }).await.map(|v| v == 5 || v == 7), Some(true));
        while flights.in_flight() > 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
