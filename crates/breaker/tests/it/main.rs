//! Behaviour of the breaker through its public API. Every async test runs on a
//! paused tokio clock: time only moves when a test advances it (or when the
//! runtime is idle and auto-advances to the next timer), so transitions,
//! timeouts and latencies are exact and nothing really sleeps.

mod common;

mod api;
mod events_stats;
mod fallback;
mod half_open;
mod layer;
mod trip;
