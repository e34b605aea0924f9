//! A bounded queue whose consumer is woken by time or by volume, never by each item.
//!
//! Why: a consumer that `recv().await`s on its channel is woken by every request, and through it very often a
//! parked runtime worker thread: a futex wake and two context switches per request, which on a small VM cost
//! more than the rest of the audit stage together (docs/PERFORMANCE.md, "Audit path"). Here the consumer only
//! takes items with `try_recv` when its interval elapses or when the queue holds `wake_at` items, so a send is
//! an atomic push and, below that volume, wakes nobody. The channel itself is tokio's bounded mpsc: a full
//! queue or a stopped consumer is reported to the sender, so the callers' no-loss handling (overflow to the
//! spool, counting what could not be kept) applies.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc};

pub(crate) use tokio::sync::mpsc::error::TrySendError;

/// The producing side; cheap to clone.
#[derive(Debug)]
pub(crate) struct Sender<T> {
    tx: mpsc::Sender<T>,
    ready: Arc<Notify>,
    wake_at: usize,
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        Sender { tx: self.tx.clone(), ready: self.ready.clone(), wake_at: self.wake_at }
    }
}

/// Why [`Receiver::ready`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wake {
    /// The interval elapsed: take everything, however little.
    Interval,
    /// The volume mark was reached: enough waits for a full batch.
    Volume,
}

/// The consuming side: wait with [`Receiver::ready`], then take everything with [`Receiver::try_recv`].
#[derive(Debug)]
pub(crate) struct Receiver<T> {
    rx: mpsc::Receiver<T>,
    ready: Arc<Notify>,
    tick: tokio::time::Interval,
}

/// A queue of `capacity` items whose consumer wakes every `interval`, or as soon as `wake_at` items wait.
pub(crate) fn channel<T>(capacity: usize, wake_at: usize, interval: Duration) -> (Sender<T>, Receiver<T>) {
    let (tx, rx) = mpsc::channel(capacity);
    let ready = Arc::new(Notify::new());
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let wake_at = wake_at.clamp(1, capacity);
    (Sender { tx, ready: ready.clone(), wake_at }, Receiver { rx, ready, tick })
}

impl<T> Sender<T> {
    /// Queue `item` without waiting; wakes the consumer only when the queue reaches its volume mark.
    pub(crate) fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        self.tx.try_send(item)?;
        if self.len() >= self.wake_at {
            // Stores a permit when the consumer is busy, so the wake is never lost; repeated calls are free.
            self.ready.notify_one();
        }
        Ok(())
    }

    /// Wake the consumer now, whatever the volume (for an item that should not wait for the interval).
    pub(crate) fn wake(&self) {
        self.ready.notify_one();
    }

    /// Items waiting.
    pub(crate) fn len(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// The consumer is gone.
    pub(crate) fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T> Receiver<T> {
    /// Until the interval elapses or the volume mark is reached (cancel-safe: usable in `select!`).
    pub(crate) async fn ready(&mut self) -> Wake {
        tokio::select! {
            _ = self.tick.tick() => Wake::Interval,
            _ = self.ready.notified() => Wake::Volume,
        }
    }

    /// Every sender is gone (items may still wait: take them first).
    pub(crate) fn is_closed(&self) -> bool {
        self.rx.is_closed()
    }

    /// Items waiting.
    pub(crate) fn len(&self) -> usize {
        self.rx.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    /// The next waiting item, if any.
    pub(crate) fn try_recv(&mut self) -> Option<T> {
        self.rx.try_recv().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn below_the_mark_waits_for_the_interval() {
        let (tx, mut rx) = channel::<u32>(10, 4, Duration::from_secs(1));
        rx.ready().await; // an interval's first tick completes at once
        tx.try_send(1).expect("room in the queue");
        tx.try_send(2).expect("room in the queue");
        let started = tokio::time::Instant::now();
        assert_eq!(rx.ready().await, Wake::Interval);
        assert_eq!(started.elapsed(), Duration::from_secs(1), "woken by the interval, not by the items");
        assert_eq!((rx.try_recv(), rx.try_recv(), rx.try_recv()), (Some(1), Some(2), None));
    }

    #[tokio::test(start_paused = true)]
    async fn the_volume_mark_wakes_at_once() {
        let (tx, mut rx) = channel::<u32>(10, 3, Duration::from_secs(60));
        rx.ready().await;
        for i in 0..3 {
            tx.try_send(i).expect("room in the queue");
        }
        let started = tokio::time::Instant::now();
        assert_eq!(rx.ready().await, Wake::Volume);
        assert_eq!(started.elapsed(), Duration::ZERO, "woken by the third item");
        assert_eq!(tx.len(), 3);
        let drained: Vec<u32> = std::iter::from_fn(|| rx.try_recv()).collect();
        assert_eq!(drained, vec![0, 1, 2]);
        assert!(tx.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_wake_does_not_wait_for_volume_or_interval() {
        let (tx, mut rx) = channel::<u32>(10, 5, Duration::from_secs(60));
        rx.ready().await;
        tx.try_send(1).expect("room in the queue");
        tx.wake();
        let started = tokio::time::Instant::now();
        assert_eq!(rx.ready().await, Wake::Volume);
        assert_eq!(started.elapsed(), Duration::ZERO, "woken at once, one item below the mark");
        assert_eq!(rx.try_recv(), Some(1));
    }

    #[tokio::test]
    async fn full_and_closed_are_reported_to_the_sender() {
        let (tx, rx) = channel::<u32>(2, 2, Duration::from_secs(60));
        tx.try_send(1).expect("room in the queue");
        tx.try_send(2).expect("room in the queue");
        assert!(matches!(tx.try_send(3), Err(TrySendError::Full(3))));
        drop(rx);
        assert!(matches!(tx.try_send(4), Err(TrySendError::Closed(4))));
        let (tx, mut rx) = channel::<u32>(2, 2, Duration::from_secs(60));
        tx.try_send(5).expect("room in the queue");
        drop(tx);
        assert!(rx.is_closed());
        assert_eq!(rx.try_recv(), Some(5), "what was sent before the senders left is still there");
    }
}
