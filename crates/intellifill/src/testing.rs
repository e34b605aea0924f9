//! What the integration tests (`tests/it`) and the load harness (`crates/loadtest`) drive besides the HTTP API:
//! the schema and its roles, the route table, the token cache and revocations, the Redis bus, the metrics text
//! and a few handlers and layers to mount on routers of their own. Tests and the harness name nothing else of the
//! library; this is no stable API (the server is the `intellifill` binary).

pub use crate::api::session::session as session_handler;
pub use crate::audit::AuditEvent;
pub use crate::audit::seal::digest::public_key_pem;
pub use crate::audit::spool::Spool;
pub use crate::auth::AuthUser;
pub use crate::auth::cache::TokenHash;
pub use crate::auth::cache::{CachedUser, Entry};
pub use crate::auth::cutoff::Cutoff;
pub use crate::auth::revocation::Revocation;
pub use crate::config::audit::parse_signing_key;
pub use crate::db::Db;
pub use crate::db::tx::RlsContext;
#[cfg(feature = "dev")]
pub use crate::dev::demo::{DemoConfig, routes as demo_routes};
pub use crate::health::render as render_metrics;
pub use crate::http::middleware::{Served, stack};
pub use crate::http::route::MinRole;
pub use crate::kv::bus::{Subscription, subscribe};
pub use crate::kv::{Key, Kv};
pub use crate::org::OrgTx;
pub use crate::router::{app, table};
pub use crate::startup::shutdown_signal;
pub use crate::telemetry::{LogFormat, init as init_tracing};

/// The schema and the database roles: migrations and the provisioning the server's `migrate` command runs.
pub mod schema {
    pub use crate::db::migrate::{MIGRATIONS, connect, fingerprint, latest_version, run};
    pub use crate::db::provision::{OWNER_ROLE, RUNTIME_ROLE, ensure_database, ensure_roles};
}
