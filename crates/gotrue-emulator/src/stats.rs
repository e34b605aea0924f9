//! Per-endpoint request counters.
//!
//! Tests of the product use these to prove a negative: that a cached or
//! locally verified path made *no* call to Supabase Auth. Every request that
//! reaches `/auth/v1/*` is counted on arrival, before faults or the apikey
//! check, so a request answered with an injected 503 still counts as an
//! upstream call. Refused connections never arrive and are not counted.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// A snapshot of the request counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// `/auth/v1/user`
    pub user: u64,
    /// `/auth/v1/token`
    pub token: u64,
    /// `/auth/v1/logout`
    pub logout: u64,
    /// `/auth/v1/.well-known/jwks.json`
    pub jwks: u64,
    /// `/auth/v1/health`
    pub health: u64,
    /// `/auth/v1/admin/*`
    pub admin: u64,
    /// `/auth/v1/signup`
    pub signup: u64,
    /// `/auth/v1/settings`
    pub settings: u64,
    /// Any other path under `/auth/v1`.
    pub other: u64,
}

impl Stats {
    /// All counted requests.
    pub fn total(&self) -> u64 {
        self.user
            + self.token
            + self.logout
            + self.jwks
            + self.health
            + self.admin
            + self.signup
            + self.settings
            + self.other
    }
}

/// The live counters of one instance.
#[derive(Default)]
pub(crate) struct Counters {
    user: AtomicU64,
    token: AtomicU64,
    logout: AtomicU64,
    jwks: AtomicU64,
    health: AtomicU64,
    admin: AtomicU64,
    signup: AtomicU64,
    settings: AtomicU64,
    other: AtomicU64,
}

impl Counters {
    /// Counts a request to `path` (the full path, starting `/auth/v1`).
    pub(crate) fn record(&self, path: &str) {
        let Some(rest) = path.strip_prefix("/auth/v1") else {
            return;
        };
        let rest = rest.trim_end_matches('/');
        let counter = match rest {
            "/user" => &self.user,
            "/token" => &self.token,
            "/logout" => &self.logout,
            "/.well-known/jwks.json" => &self.jwks,
            "/health" => &self.health,
            "/signup" => &self.signup,
            "/settings" => &self.settings,
            r if r == "/admin" || r.starts_with("/admin/") => &self.admin,
            _ => &self.other,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Stats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            user: get(&self.user),
            token: get(&self.token),
            logout: get(&self.logout),
            jwks: get(&self.jwks),
            health: get(&self.health),
            admin: get(&self.admin),
            signup: get(&self.signup),
            settings: get(&self.settings),
            other: get(&self.other),
        }
    }

    pub(crate) fn reset(&self) {
        for c in [
            &self.user,
            &self.token,
            &self.logout,
            &self.jwks,
            &self.health,
            &self.admin,
            &self.signup,
            &self.settings,
            &self.other,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }
}
