//! Throwaway PostgreSQL clusters, PgBouncers and redis-server instances on loopback.
//!
//! Used by the product's integration tests *and* by its `dev` mode, so this is an ordinary
//! library: every failure is returned as an [`anyhow::Error`] whose message says what went wrong
//! and what to do about it (which package to install, the server's log tail, ...); nothing panics.
//!
//! * [`PgCluster`] — a private `initdb` cluster served by `postgres` on 127.0.0.1 (run as the
//!   `postgres` system user when this process is root, since PostgreSQL refuses to run as root).
//! * [`RedisServer`] — a `redis-server` without persistence on 127.0.0.1 (optionally TLS-only and/or
//!   with ACL users).
//! * [`PgBouncer`] — a `pgbouncer` in transaction pooling mode (SCRAM-SHA-256, given users and
//!   passwords) on 127.0.0.1 in front of a cluster, to test code against what production may run
//!   behind: no session state across transactions, no named prepared statements.
//! * [`Shared`] — one cluster and one redis-server shared by all tests of a test run, also across
//!   the processes of a `cargo nextest` run, cleaned up automatically when the run ends.
//! * [`free_port`] — a currently free TCP port on 127.0.0.1.
//!
//! Binaries are found via `PG_BIN_DIR` / `/usr/lib/postgresql/*/bin` / `pg_config --bindir` and
//! `REDIS_SERVER_BIN` / `PATH`, and `PGBOUNCER_BIN` / `PATH` / `/usr/sbin`.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let pg = testkit::PgCluster::start(None).await?;
//! let url = pg.superuser_url("postgres"); // postgres://postgres@127.0.0.1:<port>/postgres
//! pg.stop().await?;     // simulate an outage
//! pg.restart().await?;  // same port, same data
//! // In front of it (the role `app` must exist there): transaction pooling, 2 server connections.
//! let bouncer = testkit::PgBouncer::start(pg.port(), &[("app", "secret")], 2).await?;
//! let pooled = bouncer.url("app", "secret", "appdb"); // postgres://app:secret@127.0.0.1:<port>/appdb
//! # let _ = (url, pooled); Ok(()) }
//! ```

mod bins;
#[macro_use]
mod managed;
mod pgbouncer;
mod ports;
mod postgres;
mod process;
mod redis;
mod shared;
mod user;

pub use bins::{PG_BIN_DIR_ENV, PGBOUNCER_BIN_ENV, REDIS_SERVER_BIN_ENV};
pub use pgbouncer::PgBouncer;
pub use ports::free_port;
pub use postgres::PgCluster;
pub use redis::{RedisOptions, RedisServer, RedisTls};
pub use shared::{SHARED_BASE_DIR_NAME, Shared};
