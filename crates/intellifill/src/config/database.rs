//! The database section: `DATABASE_URL`, `DATABASE_CA_FILE`, `DATABASE_STATEMENTS`, `DB_POOL_*`, `DB_*_TIMEOUT_MS`,
//! `RLS_CONTEXT_FAILURE_MODE`.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use secrecy::SecretString;

use super::check::{Checker, Section};
use super::{AppEnv, ServeArgs};

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub url: SecretString,
    /// Extra CA certificates for TLS (`DATABASE_CA_FILE`).
    pub ca_file: Option<PathBuf>,
    pub pool_max_size: usize,
    pub pool_wait_timeout: Duration,
    pub connect_timeout: Duration,
    pub statement_timeout: Duration,
    /// `DATABASE_STATEMENTS`, with `auto` resolved from the URL.
    pub statements: StatementMode,
    pub rls_failure_mode: RlsFailureMode,
}

/// How request statements are sent (`DATABASE_STATEMENTS`, resolved): see `db::statements`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatementMode {
    /// Named, prepared once per connection and cached.
    Prepared,
    /// The unnamed statement every time: safe behind any transaction pooler.
    Unnamed,
}

impl StatementMode {
    pub fn as_str(self) -> &'static str {
        match self {
            StatementMode::Prepared => "prepared",
            StatementMode::Unnamed => "unnamed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StatementsChoice {
    Auto,
    Fixed(StatementMode),
}

/// `auto`: a URL that names a transaction pooler gets unnamed statements. PgBouncer's default port is 6432,
/// Supabase's transaction pooler (Supavisor) listens on 6543 at a `*.pooler.supabase.com` host; neither keeps
/// named statements across transactions in the versions a deployment most likely runs (PgBouncer < 1.21,
/// Supavisor). Anything else is taken to be Postgres itself. A pooler elsewhere must be named with
/// `DATABASE_STATEMENTS=unnamed` (docs/DEPLOY.md says how to tell).
pub(crate) fn statements_for_url(url: &tokio_postgres::Config) -> StatementMode {
    let pooler_port = url.get_ports().iter().any(|p| *p == 6432 || *p == 6543);
    let pooler_host = url.get_hosts().iter().any(|h| match h {
        tokio_postgres::config::Host::Tcp(name) => name.to_ascii_lowercase().contains("pooler."),
        #[cfg(unix)]
        tokio_postgres::config::Host::Unix(path) => path.to_string_lossy().contains("pgbouncer"),
    });
    if pooler_port || pooler_host { StatementMode::Unnamed } else { StatementMode::Prepared }
}

/// What happens when `set_user_context`/`set_org_context` fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RlsFailureMode {
    /// Log at ERROR, count, answer 500 `RLS_CONTEXT_FAILED`.
    Fail,
    /// Log at ERROR, count, and go on in a transaction without tenant context (which sees no rows and
    /// cannot write). Allowed in development only.
    Continue,
}

/// The database section; `app_env` is `None` when `APP_ENV` itself is invalid (then `continue` is refused).
pub(super) fn from_args(args: &ServeArgs, app_env: Option<AppEnv>) -> Section<DatabaseConfig> {
    let mut c = Checker::default();
    let url = c.required("DATABASE_URL", &args.database_url, "postgres://user:password@host:port/db");
    if let Some(url) = &url
        && tokio_postgres::Config::from_str(url).is_err()
    {
        // The value may hold a password: never echo it.
        c.problem("DATABASE_URL", "is not a valid postgres:// connection string (value not shown)");
    }
    let statements = c.choice(
        "DATABASE_STATEMENTS",
        &args.database_statements,
        &[
            ("auto", StatementsChoice::Auto),
            ("prepared", StatementsChoice::Fixed(StatementMode::Prepared)),
            ("unnamed", StatementsChoice::Fixed(StatementMode::Unnamed)),
        ],
    );
    let statements = match statements {
        StatementsChoice::Fixed(mode) => mode,
        StatementsChoice::Auto => url
            .as_deref()
            .and_then(|u| tokio_postgres::Config::from_str(u).ok())
            .map_or(StatementMode::Unnamed, |u| statements_for_url(&u)),
    };
    let rls_failure_mode = c.choice(
        "RLS_CONTEXT_FAILURE_MODE",
        &args.rls_context_failure_mode,
        &[("fail", RlsFailureMode::Fail), ("continue", RlsFailureMode::Continue)],
    );
    if rls_failure_mode == RlsFailureMode::Continue && app_env != Some(AppEnv::Development) {
        c.problem("RLS_CONTEXT_FAILURE_MODE", "`continue` is allowed only with APP_ENV=development");
    }
    let ca_file = c.optional("DATABASE_CA_FILE", &args.database_ca_file).map(PathBuf::from);
    if let Some(path) = &ca_file
        && !path.is_file()
    {
        c.problem("DATABASE_CA_FILE", format!("no such file: {}", path.display()));
    }
    let database = DatabaseConfig {
        ca_file,
        url: SecretString::from(url.unwrap_or_default()),
        pool_max_size: c.number("DB_POOL_MAX_SIZE", &args.db_pool_max_size, (1, 1000)),
        pool_wait_timeout: c.millis("DB_POOL_WAIT_TIMEOUT_MS", &args.db_pool_wait_timeout_ms, 120_000),
        connect_timeout: c.millis("DB_CONNECT_TIMEOUT_MS", &args.db_connect_timeout_ms, 120_000),
        statement_timeout: c.millis("DB_STATEMENT_TIMEOUT_MS", &args.db_statement_timeout_ms, 3_600_000),
        statements,
        rls_failure_mode,
    };
    c.finish(database)
}
