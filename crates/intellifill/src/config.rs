//! Configuration: read from flags or environment (clap `env`), then validated as a whole.
//!
//! Every value is first taken as text so that one bad value does not hide the next: validation collects one
//! clear error per bad or missing variable (which variable, what was expected, what was given) and start-up
//! prints them all. Secrets are held as [`SecretString`] so they never reach a log line or a `Debug` dump;
//! `.env.example` documents every variable.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use clap::Args;
use secrecy::{ExposeSecret, SecretString};
use url::Url;

/// Raw configuration as given on the command line or in the environment.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// Address the HTTP server listens on.
    #[arg(long, env = "BIND_ADDR")]
    pub bind_addr: Option<String>,
    /// Deployment environment: production | development | test.
    #[arg(long, env = "APP_ENV")]
    pub app_env: Option<String>,
    /// Runtime database URL (the non-owner, NOBYPASSRLS role; may point at PgBouncer).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Maximum connections in the one process-wide pool.
    #[arg(long, env = "DB_POOL_MAX_SIZE")]
    pub db_pool_max_size: Option<String>,
    /// How long a request waits for a pooled connection before it is shed with 503.
    #[arg(long, env = "DB_POOL_WAIT_TIMEOUT_MS")]
    pub db_pool_wait_timeout_ms: Option<String>,
    /// How long opening a new database connection may take.
    #[arg(long, env = "DB_CONNECT_TIMEOUT_MS")]
    pub db_connect_timeout_ms: Option<String>,
    /// Per-transaction statement timeout (set transaction-locally, PgBouncer-safe).
    #[arg(long, env = "DB_STATEMENT_TIMEOUT_MS")]
    pub db_statement_timeout_ms: Option<String>,
    /// What to do when the RLS context cannot be set: fail (always allowed) | continue (development only).
    #[arg(long, env = "RLS_CONTEXT_FAILURE_MODE")]
    pub rls_context_failure_mode: Option<String>,
    /// Supabase project URL (the auth service is at `<url>/auth/v1`).
    #[arg(long, env = "SUPABASE_URL")]
    pub supabase_url: Option<String>,
    /// Supabase anon / publishable key, sent as `apikey` to the auth service.
    #[arg(long, env = "SUPABASE_ANON_KEY", hide_env_values = true)]
    pub supabase_anon_key: Option<String>,
    /// Timeout of one call to the auth service.
    #[arg(long, env = "AUTH_HTTP_TIMEOUT_MS")]
    pub auth_http_timeout_ms: Option<String>,
    /// Create the `users` row on first sight of a verified token instead of answering USER_NOT_PROVISIONED.
    #[arg(long, env = "AUTH_AUTO_PROVISION")]
    pub auth_auto_provision: Option<String>,
    /// Largest accepted request body in bytes.
    #[arg(long, env = "MAX_BODY_BYTES")]
    pub max_body_bytes: Option<String>,
    /// Whole-request timeout.
    #[arg(long, env = "REQUEST_TIMEOUT_MS")]
    pub request_timeout_ms: Option<String>,
    /// How long shutdown waits for in-flight requests before it gives up on them.
    #[arg(long, env = "SHUTDOWN_GRACE_MS")]
    pub shutdown_grace_ms: Option<String>,
}

/// Deployment environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppEnv {
    Production,
    Development,
    Test,
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

/// Validated configuration of one server process.
#[derive(Debug, Clone)]
pub struct Config {
    pub bind_addr: SocketAddr,
    pub app_env: AppEnv,
    pub database: DatabaseConfig,
    pub auth: AuthConfig,
    pub http: HttpConfig,
}

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub url: SecretString,
    pub pool_max_size: usize,
    pub pool_wait_timeout: Duration,
    pub connect_timeout: Duration,
    pub statement_timeout: Duration,
    pub rls_failure_mode: RlsFailureMode,
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub supabase_url: Url,
    pub anon_key: SecretString,
    pub http_timeout: Duration,
    pub auto_provision: bool,
}

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    pub shutdown_grace: Duration,
}

/// One problem with one variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub variable: &'static str,
    pub problem: String,
}

/// Every problem found, reported together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigProblem>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration ({} problem(s)):", self.0.len())?;
        for p in &self.0 {
            writeln!(f, "  - {}: {}", p.variable, p.problem)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Collects problems while values are parsed.
struct Checker(Vec<ConfigProblem>);

impl Checker {
    fn problem(&mut self, variable: &'static str, problem: impl Into<String>) {
        self.0.push(ConfigProblem { variable, problem: problem.into() });
    }

    fn required(&mut self, variable: &'static str, value: &Option<String>, expected: &str) -> Option<String> {
        match value.as_deref().map(str::trim) {
            Some(v) if !v.is_empty() => Some(v.to_owned()),
            _ => {
                self.problem(variable, format!("is required ({expected})"));
                None
            }
        }
    }

    /// Parse `value` (or take `default`), checking `range`. Secrets are never echoed in messages.
    fn number<T>(&mut self, variable: &'static str, value: &Option<String>, default: T, range: (T, T)) -> T
    where
        T: FromStr + PartialOrd + Copy + fmt::Display,
    {
        let Some(raw) = value.as_deref().map(str::trim).filter(|v| !v.is_empty()) else {
            return default;
        };
        match raw.parse::<T>() {
            Ok(v) if v >= range.0 && v <= range.1 => v,
            Ok(_) | Err(_) => {
                self.problem(variable, format!("expected a whole number from {} to {}, got {raw:?}", range.0, range.1));
                default
            }
        }
    }

    fn millis(&mut self, variable: &'static str, value: &Option<String>, default_ms: u64, max_ms: u64) -> Duration {
        Duration::from_millis(self.number(variable, value, default_ms, (1, max_ms)))
    }

    fn boolean(&mut self, variable: &'static str, value: &Option<String>, default: bool) -> bool {
        match value.as_deref().map(|v| v.trim().to_ascii_lowercase()) {
            None => default,
            Some(v) if v.is_empty() => default,
            Some(v) if matches!(v.as_str(), "1" | "true" | "yes" | "on") => true,
            Some(v) if matches!(v.as_str(), "0" | "false" | "no" | "off") => false,
            Some(v) => {
                self.problem(variable, format!("expected true or false, got {v:?}"));
                default
            }
        }
    }

    fn choice<T: Copy>(
        &mut self,
        variable: &'static str,
        value: &Option<String>,
        default: T,
        options: &[(&str, T)],
    ) -> T {
        let Some(raw) = value.as_deref().map(|v| v.trim().to_ascii_lowercase()).filter(|v| !v.is_empty()) else {
            return default;
        };
        if let Some((_, v)) = options.iter().find(|(name, _)| *name == raw) {
            return *v;
        }
        let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
        self.problem(variable, format!("expected one of {}, got {raw:?}", names.join(" | ")));
        default
    }
}

impl Config {
    /// Validate raw arguments into a configuration, reporting every problem at once.
    pub fn from_args(args: &ServeArgs) -> Result<Config, ConfigErrors> {
        let mut c = Checker(Vec::new());

        let bind_addr = match args.bind_addr.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
            None => SocketAddr::from(([0, 0, 0, 0], 8080)),
            Some(raw) => raw.parse().unwrap_or_else(|_| {
                c.problem("BIND_ADDR", format!("expected ip:port such as 0.0.0.0:8080, got {raw:?}"));
                SocketAddr::from(([0, 0, 0, 0], 8080))
            }),
        };
        let app_env = c.choice(
            "APP_ENV",
            &args.app_env,
            AppEnv::Production,
            &[("production", AppEnv::Production), ("development", AppEnv::Development), ("test", AppEnv::Test)],
        );

        let database_url = c.required("DATABASE_URL", &args.database_url, "postgres://user:password@host:port/db");
        if let Some(url) = &database_url
            && tokio_postgres::Config::from_str(url).is_err()
        {
            // The value may hold a password: never echo it.
            c.problem("DATABASE_URL", "is not a valid postgres:// connection string (value not shown)");
        }
        let rls_failure_mode = c.choice(
            "RLS_CONTEXT_FAILURE_MODE",
            &args.rls_context_failure_mode,
            RlsFailureMode::Fail,
            &[("fail", RlsFailureMode::Fail), ("continue", RlsFailureMode::Continue)],
        );
        if rls_failure_mode == RlsFailureMode::Continue && app_env != AppEnv::Development {
            c.problem("RLS_CONTEXT_FAILURE_MODE", "`continue` is allowed only with APP_ENV=development");
        }
        let database = DatabaseConfig {
            url: SecretString::from(database_url.unwrap_or_default()),
            pool_max_size: c.number("DB_POOL_MAX_SIZE", &args.db_pool_max_size, 16usize, (1, 1000)),
            pool_wait_timeout: c.millis("DB_POOL_WAIT_TIMEOUT_MS", &args.db_pool_wait_timeout_ms, 2_000, 120_000),
            connect_timeout: c.millis("DB_CONNECT_TIMEOUT_MS", &args.db_connect_timeout_ms, 5_000, 120_000),
            statement_timeout: c.millis("DB_STATEMENT_TIMEOUT_MS", &args.db_statement_timeout_ms, 10_000, 3_600_000),
            rls_failure_mode,
        };

        let supabase_url =
            c.required("SUPABASE_URL", &args.supabase_url, "https://<project>.supabase.co").and_then(|raw| {
                match Url::parse(&raw) {
                    Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
                    _ => {
                        c.problem(
                            "SUPABASE_URL",
                            format!("expected an http(s) URL such as https://<project>.supabase.co, got {raw:?}"),
                        );
                        None
                    }
                }
            });
        let anon_key =
            c.required("SUPABASE_ANON_KEY", &args.supabase_anon_key, "the project's anon or publishable key");
        let auth = AuthConfig {
            supabase_url: supabase_url.unwrap_or_else(|| Url::parse("http://invalid.localhost").expect("static url")),
            anon_key: SecretString::from(anon_key.unwrap_or_default()),
            http_timeout: c.millis("AUTH_HTTP_TIMEOUT_MS", &args.auth_http_timeout_ms, 5_000, 120_000),
            auto_provision: c.boolean("AUTH_AUTO_PROVISION", &args.auth_auto_provision, false),
        };

        let http = HttpConfig {
            max_body_bytes: c.number("MAX_BODY_BYTES", &args.max_body_bytes, 1_048_576usize, (1_024, 64 * 1_048_576)),
            request_timeout: c.millis("REQUEST_TIMEOUT_MS", &args.request_timeout_ms, 30_000, 600_000),
            shutdown_grace: c.millis("SHUTDOWN_GRACE_MS", &args.shutdown_grace_ms, 25_000, 600_000),
        };

        if c.0.is_empty() { Ok(Config { bind_addr, app_env, database, auth, http }) } else { Err(ConfigErrors(c.0)) }
    }

    /// The auth service base URL (`<SUPABASE_URL>/auth/v1`).
    pub fn auth_base_url(&self) -> String {
        format!("{}/auth/v1", self.auth.supabase_url.as_str().trim_end_matches('/'))
    }

    /// The database URL; exposing it is explicit so that it never leaks by accident.
    pub fn database_url(&self) -> &str {
        self.database.url.expose_secret()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> ServeArgs {
        ServeArgs {
            database_url: Some("postgres://app:pw@127.0.0.1:5432/db".into()),
            supabase_url: Some("http://127.0.0.1:9999".into()),
            supabase_anon_key: Some("anon".into()),
            ..ServeArgs::default()
        }
    }

    #[test]
    fn minimal_configuration_gets_documented_defaults() {
        let cfg = Config::from_args(&minimal()).expect("valid");
        assert_eq!(cfg.database.pool_max_size, 16);
        assert_eq!(cfg.database.pool_wait_timeout, Duration::from_secs(2));
        assert_eq!(cfg.http.max_body_bytes, 1_048_576);
        assert_eq!(cfg.auth_base_url(), "http://127.0.0.1:9999/auth/v1");
        assert_eq!(cfg.database.rls_failure_mode, RlsFailureMode::Fail);
    }

    #[test]
    fn every_problem_is_reported_once_with_its_variable() {
        let args = ServeArgs {
            db_pool_max_size: Some("zero".into()),
            auth_auto_provision: Some("maybe".into()),
            bind_addr: Some("localhost".into()),
            ..ServeArgs::default()
        };
        let errs = Config::from_args(&args).expect_err("invalid");
        let vars: Vec<&str> = errs.0.iter().map(|p| p.variable).collect();
        assert_eq!(
            vars,
            [
                "BIND_ADDR",
                "DATABASE_URL",
                "DB_POOL_MAX_SIZE",
                "SUPABASE_URL",
                "SUPABASE_ANON_KEY",
                "AUTH_AUTO_PROVISION"
            ]
        );
        assert!(errs.to_string().contains("DB_POOL_MAX_SIZE: expected a whole number from 1 to 1000, got \"zero\""));
    }

    #[test]
    fn secrets_never_appear_in_errors_or_debug() {
        let mut args = minimal();
        args.database_url = Some("not a url with hunter2".into());
        let errs = Config::from_args(&args).expect_err("invalid");
        assert!(!errs.to_string().contains("hunter2"));
        let cfg = Config::from_args(&minimal()).expect("valid");
        let dump = format!("{cfg:?}");
        assert!(!dump.contains("pw@"), "{dump}");
        assert!(!dump.contains("\"anon\""), "{dump}");
    }

    #[test]
    fn continue_on_rls_failure_is_development_only() {
        let mut args = minimal();
        args.rls_context_failure_mode = Some("continue".into());
        assert!(Config::from_args(&args).is_err());
        args.app_env = Some("development".into());
        assert_eq!(Config::from_args(&args).expect("valid").database.rls_failure_mode, RlsFailureMode::Continue);
    }
}
