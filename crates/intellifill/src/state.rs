//! The application state shared by every request.
//!
//! One [`App`], built once at start-up by [`crate::startup::Application::build`] and shared behind an `Arc`:
//! the validated configuration, the one database pool, the authenticator, the shared store. Nothing in it is global or
//! mutable from the outside; tests build as many independent apps in one process as they like.

use std::ops::Deref;
use std::sync::Arc;

use crate::audit::Auditor;
use crate::auth::Authenticator;
use crate::config::Config;
use crate::db::Db;
use crate::kv::Kv;
use crate::ratelimit::RateLimits;
use crate::readiness::Readiness;

pub struct App {
    pub config: Config,
    /// The process-wide pool, reachable only through [`Db`]'s transaction API.
    pub db: Db,
    pub auth: Authenticator,
    /// The shared store (Redis), or a disabled handle when none is configured.
    pub kv: Kv,
    /// The audit pipeline.
    pub audit: Auditor,
    /// Every rate-limit policy.
    pub rate_limits: Arc<RateLimits>,
    /// The per-route request counters and durations.
    pub http_metrics: crate::metrics::HttpMetrics,
    /// The recent readiness verdict (`/health/ready`).
    pub readiness: Readiness,
}

/// Cheap-to-clone handle on the [`App`].
#[derive(Clone)]
pub struct AppState(pub Arc<App>);

impl Deref for AppState {
    type Target = App;
    fn deref(&self) -> &App {
        &self.0
    }
}
