//! The `Server-Timing` response header (`SERVER_TIMING=true`; off by default): where a routed request's time
//! went, in milliseconds, like PostgREST's.
//!
//! - `auth`: the authentication step (token cache, local JWT check, the auth service when asked);
//! - `pool`: waiting for a pooled database connection;
//! - `db`: the request transaction, from its first statement to `COMMIT` / `ROLLBACK`;
//! - `app`: everything else in the route: the route and rate-limit steps, extractors, the handler's own work,
//!   serialization (`total` minus the three above);
//! - `total`: the route, from its first step to its response.
//!
//! [`crate::http::timed::Timed`] (the first route step) puts a [`Timing`] into the request's extensions when enabled;
//! the authentication step and the request transaction add their parts to it. Off, nothing is allocated and
//! nothing is measured.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::http::HeaderValue;

/// The parts of one request's time (microseconds), shared by the steps that measure them.
#[derive(Debug, Clone, Default)]
pub struct Timing(Arc<Parts>);

#[derive(Debug, Default)]
struct Parts {
    auth_us: AtomicU64,
    pool_us: AtomicU64,
    db_us: AtomicU64,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Timing {
    pub fn auth(&self, d: Duration) {
        self.0.auth_us.fetch_add(micros(d), Ordering::Relaxed);
    }

    pub fn pool(&self, d: Duration) {
        self.0.pool_us.fetch_add(micros(d), Ordering::Relaxed);
    }

    pub fn db(&self, d: Duration) {
        self.0.db_us.fetch_add(micros(d), Ordering::Relaxed);
    }

    /// The header value for a route that took `total`.
    pub fn header(&self, total: Duration) -> HeaderValue {
        let auth = self.0.auth_us.load(Ordering::Relaxed);
        let pool = self.0.pool_us.load(Ordering::Relaxed);
        let db = self.0.db_us.load(Ordering::Relaxed);
        let total = micros(total);
        let app = total.saturating_sub(auth + pool + db);
        let ms = |us: u64| us as f64 / 1000.0;
        let value = format!(
            "auth;dur={:.3}, pool;dur={:.3}, db;dur={:.3}, app;dur={:.3}, total;dur={:.3}",
            ms(auth),
            ms(pool),
            ms(db),
            ms(app),
            ms(total)
        );
        HeaderValue::from_str(&value).expect("digits, letters and punctuation only")
    }
}
