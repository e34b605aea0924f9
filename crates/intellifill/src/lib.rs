//! IntelliFill API core: a Supabase-authenticated, multi-tenant HTTP API over Postgres with enforced
//! row-level security.
//!
//! Every request flows through one pipeline, ordered in [`http::middleware`]:
//! `request id -> (rate limit) -> (audit) -> auth -> organization context -> handler -> Postgres (RLS)`.
//! See `docs/ARCHITECTURE.md` for the map of modules and failure modes.

pub mod api;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod config;
pub mod db;
#[cfg(feature = "dev")]
pub mod dev;
pub mod error;
pub mod health;
pub mod http;
pub mod kv;
pub mod metrics;
pub mod org;
pub mod principal;
pub mod ratelimit;
pub mod readiness;
pub mod router;
pub mod security;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod timing;

#[cfg(feature = "bench")]
pub mod bench;
pub mod testing;

pub use cli::main as run;
pub use config::{Config, ServeArgs};
pub use error::{AppError, ErrorCode};
pub use startup::Application;
pub use state::AppState;
