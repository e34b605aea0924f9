//! Broadcast between instances over Redis pub/sub.
//!
//! One subscriber task per channel keeps a dedicated pub/sub connection, reconnecting with back-off. Each
//! (re)connection calls `on_connect` first: messages published while this instance was not listening are
//! lost by pub/sub, so a subscriber that cares (the token cache) drops its in-process copies there and
//! re-reads the shared store.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;

use super::Kv;

/// Whether a subscriber is currently listening.
#[derive(Debug, Default)]
pub struct Subscription {
    listening: AtomicBool,
}

impl Subscription {
    pub fn is_listening(&self) -> bool {
        self.listening.load(Ordering::Relaxed)
    }
}

/// Listen on `channel` for as long as the returned handle lives (the task keeps only a weak reference, so an
/// instance that is shut down stops listening and reconnecting once its connection ends, instead of warning
/// about the shared store going away behind it). Returns `None` without a shared store.
pub fn subscribe<C, M>(kv: &Kv, channel: String, on_connect: C, on_message: M) -> Option<Arc<Subscription>>
where
    C: Fn() + Send + Sync + 'static,
    M: Fn(&str) + Send + Sync + 'static,
{
    let client = kv.client()?.clone();
    let state = Arc::new(Subscription::default());
    let handle = Arc::downgrade(&state);
    tokio::spawn(async move {
        let mut delay = Duration::from_millis(100);
        while handle.strong_count() > 0 {
            match client.get_async_pubsub().await {
                Ok(mut pubsub) => match pubsub.subscribe(&channel).await {
                    Ok(()) => {
                        on_connect();
                        set_listening(&handle, true);
                        delay = Duration::from_millis(100);
                        tracing::info!(channel = %channel, "listening for broadcasts");
                        let mut messages = pubsub.on_message();
                        while let Some(message) = messages.next().await {
                            match message.get_payload::<String>() {
                                Ok(payload) => on_message(&payload),
                                Err(e) => tracing::warn!(error = %e, "unreadable broadcast ignored"),
                            }
                        }
                        if !set_listening(&handle, false) {
                            return;
                        }
                        tracing::warn!(channel = %channel, "broadcast connection lost, reconnecting");
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot subscribe to broadcasts"),
                },
                Err(e) => tracing::debug!(error = %e, "broadcast connection failed"),
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    });
    Some(state)
}

/// Record the listening state on the subscription; `false` when nobody holds it any more.
fn set_listening(handle: &std::sync::Weak<Subscription>, listening: bool) -> bool {
    match handle.upgrade() {
        Some(subscription) => {
            subscription.listening.store(listening, Ordering::Relaxed);
            true
        }
        None => false,
    }
}
