//! IntelliFill API core: a Supabase-authenticated, multi-tenant HTTP API over Postgres with enforced
//! row-level security.
//!
//! Every request flows through one pipeline, ordered in `http::middleware`:
//! `request id -> (rate limit) -> (audit) -> auth -> organization context -> handler -> Postgres (RLS)`.
//! See `docs/ARCHITECTURE.md` for the map of modules and failure modes.
//!
//! The library's surface is the re-exports below, [`testing`] (what the integration tests and the load harness
//! drive) and `bench` (criterion benches, behind the `bench` feature); everything else is `pub(crate)`.

#![warn(unreachable_pub)]
// The developer documentation is built with `--document-private-items` (scripts/test), where links from
// `pub` items to `pub(crate)` ones resolve.
#![allow(rustdoc::private_intra_doc_links)]

pub(crate) mod api;
pub(crate) mod audit;
pub(crate) mod auth;
pub(crate) mod cli;
pub(crate) mod config;
pub(crate) mod db;
#[cfg(feature = "dev")]
pub(crate) mod dev;
pub(crate) mod error;
pub(crate) mod flow;
pub(crate) mod health;
pub(crate) mod http;
pub(crate) mod kv;
pub(crate) mod metrics;
pub(crate) mod org;
pub(crate) mod principal;
pub(crate) mod ratelimit;
pub(crate) mod readiness;
pub(crate) mod router;
pub(crate) mod security;
pub(crate) mod startup;
pub(crate) mod state;
pub(crate) mod telemetry;
pub(crate) mod timing;

#[cfg(feature = "bench")]
pub mod bench;
pub mod testing;

pub use cli::main as run;
pub use config::{Config, ServeArgs};
pub use error::{AppError, ErrorCode};
pub use startup::Application;
pub use state::AppState;
