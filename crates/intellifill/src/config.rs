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
    /// PEM file of CA certificates trusted for TLS to Postgres, besides the public roots (hosted Supabase).
    #[arg(long, env = "DATABASE_CA_FILE")]
    pub database_ca_file: Option<String>,
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
    /// remote (local check + token cache + `GET /auth/v1/user`) | local (local check + revocation list only).
    #[arg(long, env = "AUTH_VERIFY_MODE")]
    pub auth_verify_mode: Option<String>,
    /// Legacy HS256 JWT secret. When set, tokens are verified with it (HS256 only) instead of the JWKS.
    #[arg(long, env = "AUTH_JWT_SECRET", hide_env_values = true)]
    pub auth_jwt_secret: Option<String>,
    /// Asymmetric algorithms accepted from the JWKS (comma-separated subset of ES256,RS256).
    #[arg(long, env = "AUTH_JWT_ALGORITHMS")]
    pub auth_jwt_algorithms: Option<String>,
    /// JWKS URL (default `<SUPABASE_URL>/auth/v1/.well-known/jwks.json`).
    #[arg(long, env = "AUTH_JWKS_URL")]
    pub auth_jwks_url: Option<String>,
    /// How long a fetched JWKS is used before it is refetched.
    #[arg(long, env = "AUTH_JWKS_CACHE_SECONDS")]
    pub auth_jwks_cache_seconds: Option<String>,
    /// Minimum interval between two JWKS fetches (unknown `kid`s cannot cause more).
    #[arg(long, env = "AUTH_JWKS_MIN_REFRESH_SECONDS")]
    pub auth_jwks_min_refresh_seconds: Option<String>,
    /// Expected `aud` claim.
    #[arg(long, env = "AUTH_JWT_AUDIENCE")]
    pub auth_jwt_audience: Option<String>,
    /// Expected `iss` claim (default `<SUPABASE_URL>/auth/v1`).
    #[arg(long, env = "AUTH_JWT_ISSUER")]
    pub auth_jwt_issuer: Option<String>,
    /// Clock leeway for `exp`/`nbf`, in seconds.
    #[arg(long, env = "AUTH_JWT_LEEWAY_SECONDS")]
    pub auth_jwt_leeway_seconds: Option<String>,
    /// How long a verified token is trusted without asking the auth service again (never past its `exp`).
    #[arg(long, env = "TOKEN_CACHE_TTL_SECONDS")]
    pub token_cache_ttl_seconds: Option<String>,
    /// How long a rejection (session gone, user gone, banned) is remembered.
    #[arg(long, env = "TOKEN_CACHE_NEGATIVE_TTL_SECONDS")]
    pub token_cache_negative_ttl_seconds: Option<String>,
    /// Maximum entries of the in-process (L1) token cache.
    #[arg(long, env = "TOKEN_CACHE_MAX_ENTRIES")]
    pub token_cache_max_entries: Option<String>,
    /// What an auth-service outage does to uncached tokens: closed (503) | cached (serve stale entries).
    #[arg(long, env = "AUTH_OUTAGE_MODE")]
    pub auth_outage_mode: Option<String>,
    /// In `cached` outage mode, how far past its TTL a cache entry may be served (never past `exp`).
    #[arg(long, env = "AUTH_STALE_MAX_SECONDS")]
    pub auth_stale_max_seconds: Option<String>,
    /// Circuit breaker on the auth service: on | off.
    #[arg(long, env = "AUTH_BREAKER_ENABLED")]
    pub auth_breaker_enabled: Option<String>,
    /// Breaker: trip when the failure percentage in the window is strictly greater than this.
    #[arg(long, env = "AUTH_BREAKER_ERROR_THRESHOLD_PERCENT")]
    pub auth_breaker_error_threshold_percent: Option<String>,
    /// Breaker: minimum calls in the window before it may trip.
    #[arg(long, env = "AUTH_BREAKER_VOLUME_THRESHOLD")]
    pub auth_breaker_volume_threshold: Option<String>,
    /// Breaker: rolling window length.
    #[arg(long, env = "AUTH_BREAKER_WINDOW_MS")]
    pub auth_breaker_window_ms: Option<String>,
    /// Breaker: number of buckets in the rolling window.
    #[arg(long, env = "AUTH_BREAKER_BUCKETS")]
    pub auth_breaker_buckets: Option<String>,
    /// Breaker: how long it stays open before one trial call is let through.
    #[arg(long, env = "AUTH_BREAKER_RESET_TIMEOUT_MS")]
    pub auth_breaker_reset_timeout_ms: Option<String>,
    /// Paths never audited: comma-separated, matched on the full path (equal, or as a prefix followed by `/`).
    #[arg(long, env = "AUDIT_EXCLUDE_PATHS")]
    pub audit_exclude_paths: Option<String>,
    /// In-memory audit queue; when full, events go to the disk spool (never dropped).
    #[arg(long, env = "AUDIT_QUEUE_CAPACITY")]
    pub audit_queue_capacity: Option<String>,
    /// Audit rows per insert.
    #[arg(long, env = "AUDIT_BATCH_SIZE")]
    pub audit_batch_size: Option<String>,
    /// Longest an audit event waits in the queue before its batch is written.
    #[arg(long, env = "AUDIT_FLUSH_INTERVAL_MS")]
    pub audit_flush_interval_ms: Option<String>,
    /// Directory of the audit spool (events kept on disk while the database is unavailable).
    #[arg(long, env = "AUDIT_SPOOL_DIR")]
    pub audit_spool_dir: Option<String>,
    /// Deactivate a user on a critical security event (mass delete, cross-tenant burst).
    #[arg(long, env = "SECURITY_AUTO_LOCK")]
    pub security_auto_lock: Option<String>,
    /// Anomaly: knowledge searches per user per minute before it is reported.
    #[arg(long, env = "ANOMALY_SEARCHES_PER_MINUTE")]
    pub anomaly_searches_per_minute: Option<String>,
    /// Anomaly: successful deletes per user per minute.
    #[arg(long, env = "ANOMALY_DELETES_PER_MINUTE")]
    pub anomaly_deletes_per_minute: Option<String>,
    /// Anomaly: 401/403 answers per user (or ip, before authentication) per minute.
    #[arg(long, env = "ANOMALY_AUTH_FAILURES_PER_MINUTE")]
    pub anomaly_auth_failures_per_minute: Option<String>,
    /// Anomaly: cross-tenant attempts per user per 5 minutes.
    #[arg(long, env = "ANOMALY_CROSS_TENANT_PER_5_MINUTES")]
    pub anomaly_cross_tenant_per_5_minutes: Option<String>,
    /// Anomaly: distinct client ips per user per 5 minutes.
    #[arg(long, env = "ANOMALY_IPS_PER_USER_PER_5_MINUTES")]
    pub anomaly_ips_per_user_per_5_minutes: Option<String>,
    /// Proxies whose X-Forwarded-For is believed (comma-separated ips or CIDRs); empty: none.
    #[arg(long, env = "TRUSTED_PROXIES")]
    pub trusted_proxies: Option<String>,
    /// Rate limits on (true) or off.
    #[arg(long, env = "RATE_LIMIT_ENABLED")]
    pub rate_limit_enabled: Option<String>,
    /// Requests per minute per client ip (every route, before authentication); 0 disables.
    #[arg(long, env = "RATE_LIMIT_IP_PER_MINUTE")]
    pub rate_limit_ip_per_minute: Option<String>,
    /// Requests per minute per user (authenticated API); 0 disables.
    #[arg(long, env = "RATE_LIMIT_USER_PER_MINUTE")]
    pub rate_limit_user_per_minute: Option<String>,
    /// Searches and writes per minute per organization; 0 disables.
    #[arg(long, env = "RATE_LIMIT_ORG_PER_MINUTE")]
    pub rate_limit_org_per_minute: Option<String>,
    /// Requests per minute per user and ip on /api/auth/*; 0 disables.
    #[arg(long, env = "RATE_LIMIT_AUTH_PER_MINUTE")]
    pub rate_limit_auth_per_minute: Option<String>,
    /// Serve /metrics on this separate address (e.g. 127.0.0.1:9090) instead of the API port.
    #[arg(long, env = "METRICS_BIND_ADDR")]
    pub metrics_bind_addr: Option<String>,
    /// Require `Authorization: Bearer <token>` on /metrics.
    #[arg(long, env = "METRICS_BEARER_TOKEN", hide_env_values = true)]
    pub metrics_bearer_token: Option<String>,
    /// Shared store (Redis) URL: L2 token cache, revocations, rate limits. Unset: in-process state only.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Prefix of every Redis key (several deployments can share one Redis).
    #[arg(long, env = "REDIS_KEY_PREFIX")]
    pub redis_key_prefix: Option<String>,
    /// Timeout of one Redis command; slower answers fall back to in-process state.
    #[arg(long, env = "REDIS_OP_TIMEOUT_MS")]
    pub redis_op_timeout_ms: Option<String>,
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
    pub redis: RedisConfig,
    pub http: HttpConfig,
    pub audit: crate::audit::AuditConfig,
    pub rate_limit: crate::ratelimit::RateLimitConfig,
    pub metrics: MetricsConfig,
}

#[derive(Debug, Clone)]
pub struct MetricsConfig {
    /// A listener of its own for /metrics; `None`: served on the API port.
    pub bind_addr: Option<SocketAddr>,
    pub bearer_token: Option<SecretString>,
}

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub url: SecretString,
    /// Extra CA certificates for TLS (`DATABASE_CA_FILE`).
    pub ca_file: Option<std::path::PathBuf>,
    pub pool_max_size: usize,
    pub pool_wait_timeout: Duration,
    pub connect_timeout: Duration,
    pub statement_timeout: Duration,
    pub rls_failure_mode: RlsFailureMode,
}

/// How bearer tokens are verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyMode {
    /// Local check, then the token cache, then `GET /auth/v1/user` on a miss: revocations at the auth
    /// service are seen within `TOKEN_CACHE_TTL_SECONDS`.
    Remote,
    /// Local check and this service's revocation list only: no call per token, but a session ended
    /// elsewhere than through this service stays usable until the token's `exp`.
    Local,
}

/// What an outage of the auth service does to tokens that need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutageMode {
    /// 503 `AUTH_SERVICE_UNAVAILABLE` for anything not fresh in the cache.
    Closed,
    /// Serve cache entries up to `AUTH_STALE_MAX_SECONDS` past their TTL (never past `exp`, never revoked).
    Cached,
}

/// Where token signatures are checked against.
#[derive(Debug, Clone)]
pub enum JwtKeys {
    /// The auth service's JWKS (ES256 / RS256 by `kid`).
    Jwks { url: String, algorithms: Vec<jsonwebtoken::Algorithm>, max_age: Duration, min_refresh: Duration },
    /// The legacy shared HS256 secret.
    Secret(SecretString),
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub supabase_url: Url,
    pub anon_key: SecretString,
    pub http_timeout: Duration,
    pub auto_provision: bool,
    pub verify_mode: VerifyMode,
    pub keys: JwtKeys,
    pub audience: String,
    pub issuer: String,
    pub leeway_seconds: u64,
    pub cache_ttl: Duration,
    pub negative_ttl: Duration,
    pub cache_max_entries: u64,
    pub outage_mode: OutageMode,
    pub stale_max: Duration,
    pub breaker: breaker::BreakerConfig,
}

#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub url: Option<SecretString>,
    pub key_prefix: String,
    pub op_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub max_body_bytes: usize,
    pub trusted_proxies: crate::http::client_ip::TrustedProxies,
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

    /// A free-text value, or its default.
    fn text(&mut self, value: &Option<String>, default: &str) -> String {
        value.as_deref().map(str::trim).filter(|v| !v.is_empty()).unwrap_or(default).to_owned()
    }

    /// An http(s) URL, or its default.
    fn url(&mut self, variable: &'static str, value: &Option<String>, default: String) -> String {
        let Some(raw) = value.as_deref().map(str::trim).filter(|v| !v.is_empty()) else {
            return default;
        };
        match Url::parse(raw) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => raw.to_owned(),
            _ => {
                self.problem(variable, format!("expected an http(s) URL, got {raw:?}"));
                default
            }
        }
    }

    /// A comma-separated subset of the asymmetric algorithms Supabase signs with.
    fn algorithms(&mut self, variable: &'static str, value: &Option<String>) -> Vec<jsonwebtoken::Algorithm> {
        use jsonwebtoken::Algorithm;
        let Some(raw) = value.as_deref().map(str::trim).filter(|v| !v.is_empty()) else {
            return vec![Algorithm::ES256, Algorithm::RS256];
        };
        let mut out = Vec::new();
        for name in raw.split(',').map(|n| n.trim().to_ascii_uppercase()) {
            match name.as_str() {
                "ES256" => out.push(Algorithm::ES256),
                "RS256" => out.push(Algorithm::RS256),
                _ => {
                    self.problem(
                        variable,
                        format!("expected a comma-separated list of ES256, RS256 (HS256 only via AUTH_JWT_SECRET), got {name:?}"),
                    );
                }
            }
        }
        out
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
        let ca_file =
            args.database_ca_file.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(std::path::PathBuf::from);
        if let Some(path) = &ca_file
            && !path.is_file()
        {
            c.problem("DATABASE_CA_FILE", format!("no such file: {}", path.display()));
        }
        let database = DatabaseConfig {
            ca_file,
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
        let supabase_url = supabase_url.unwrap_or_else(|| Url::parse("http://invalid.localhost").expect("static url"));
        let auth_base = format!("{}/auth/v1", supabase_url.as_str().trim_end_matches('/'));
        let http_timeout = c.millis("AUTH_HTTP_TIMEOUT_MS", &args.auth_http_timeout_ms, 5_000, 120_000);
        let keys = match args.auth_jwt_secret.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
            Some(secret) => {
                if secret.len() < 32 {
                    c.problem("AUTH_JWT_SECRET", "must be at least 32 characters (value not shown)");
                }
                JwtKeys::Secret(SecretString::from(secret.to_owned()))
            }
            None => JwtKeys::Jwks {
                url: c.url("AUTH_JWKS_URL", &args.auth_jwks_url, format!("{auth_base}/.well-known/jwks.json")),
                algorithms: c.algorithms("AUTH_JWT_ALGORITHMS", &args.auth_jwt_algorithms),
                max_age: Duration::from_secs(c.number(
                    "AUTH_JWKS_CACHE_SECONDS",
                    &args.auth_jwks_cache_seconds,
                    600,
                    (1, 86_400),
                )),
                min_refresh: Duration::from_secs(c.number(
                    "AUTH_JWKS_MIN_REFRESH_SECONDS",
                    &args.auth_jwks_min_refresh_seconds,
                    30,
                    (0, 3_600),
                )),
            },
        };
        let breaker = breaker::BreakerConfig {
            timeout: Some(http_timeout),
            reset_timeout: c.millis(
                "AUTH_BREAKER_RESET_TIMEOUT_MS",
                &args.auth_breaker_reset_timeout_ms,
                30_000,
                3_600_000,
            ),
            error_threshold_percentage: c.number(
                "AUTH_BREAKER_ERROR_THRESHOLD_PERCENT",
                &args.auth_breaker_error_threshold_percent,
                50u32,
                (0, 100),
            ) as f64,
            volume_threshold: c.number(
                "AUTH_BREAKER_VOLUME_THRESHOLD",
                &args.auth_breaker_volume_threshold,
                5u32,
                (1, 1_000_000),
            ),
            rolling_window: c.millis("AUTH_BREAKER_WINDOW_MS", &args.auth_breaker_window_ms, 10_000, 3_600_000),
            buckets: c.number("AUTH_BREAKER_BUCKETS", &args.auth_breaker_buckets, 10u32, (1, 1_000)),
            enabled: c.boolean("AUTH_BREAKER_ENABLED", &args.auth_breaker_enabled, true),
        };
        if let Err(e) = breaker.validate() {
            c.problem("AUTH_BREAKER_WINDOW_MS", format!("the breaker window does not fit its buckets: {e}"));
        }
        let cache_ttl =
            Duration::from_secs(c.number("TOKEN_CACHE_TTL_SECONDS", &args.token_cache_ttl_seconds, 300, (0, 86_400)));
        let auth = AuthConfig {
            anon_key: SecretString::from(anon_key.unwrap_or_default()),
            http_timeout,
            auto_provision: c.boolean("AUTH_AUTO_PROVISION", &args.auth_auto_provision, false),
            verify_mode: c.choice(
                "AUTH_VERIFY_MODE",
                &args.auth_verify_mode,
                VerifyMode::Remote,
                &[("remote", VerifyMode::Remote), ("local", VerifyMode::Local)],
            ),
            keys,
            audience: c.text(&args.auth_jwt_audience, "authenticated"),
            issuer: c.text(&args.auth_jwt_issuer, &auth_base),
            leeway_seconds: c.number("AUTH_JWT_LEEWAY_SECONDS", &args.auth_jwt_leeway_seconds, 10, (0, 300)),
            cache_ttl,
            negative_ttl: Duration::from_secs(c.number(
                "TOKEN_CACHE_NEGATIVE_TTL_SECONDS",
                &args.token_cache_negative_ttl_seconds,
                30,
                (0, 3_600),
            )),
            cache_max_entries: c.number(
                "TOKEN_CACHE_MAX_ENTRIES",
                &args.token_cache_max_entries,
                100_000,
                (1, 100_000_000),
            ),
            outage_mode: c.choice(
                "AUTH_OUTAGE_MODE",
                &args.auth_outage_mode,
                OutageMode::Closed,
                &[("closed", OutageMode::Closed), ("cached", OutageMode::Cached)],
            ),
            stale_max: Duration::from_secs(c.number(
                "AUTH_STALE_MAX_SECONDS",
                &args.auth_stale_max_seconds,
                900,
                (0, 86_400),
            )),
            breaker,
            supabase_url,
        };

        let redis_url = args.redis_url.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
        if let Some(url) = &redis_url
            && ::redis::Client::open(url.as_str()).is_err()
        {
            c.problem("REDIS_URL", "is not a valid redis:// URL (value not shown)");
        }
        let redis = RedisConfig {
            url: redis_url.map(SecretString::from),
            key_prefix: c.text(&args.redis_key_prefix, "intellifill:"),
            op_timeout: c.millis("REDIS_OP_TIMEOUT_MS", &args.redis_op_timeout_ms, 100, 10_000),
        };

        let trusted_proxies =
            crate::http::client_ip::TrustedProxies::parse(args.trusted_proxies.as_deref().unwrap_or(""))
                .unwrap_or_else(|e| {
                    c.problem("TRUSTED_PROXIES", format!("expected comma-separated ips or CIDRs: {e}"));
                    Default::default()
                });
        let audit = crate::audit::AuditConfig {
            exclude_paths: c
                .text(&args.audit_exclude_paths, "/health,/metrics,/api/docs")
                .split(',')
                .map(|p| p.trim().trim_end_matches('/').to_owned())
                .filter(|p| !p.is_empty())
                .collect(),
            queue_capacity: c.number("AUDIT_QUEUE_CAPACITY", &args.audit_queue_capacity, 10_000usize, (1, 10_000_000)),
            writer: crate::audit::writer::WriterConfig {
                batch_size: c.number("AUDIT_BATCH_SIZE", &args.audit_batch_size, 200usize, (1, 10_000)),
                flush_interval: c.millis("AUDIT_FLUSH_INTERVAL_MS", &args.audit_flush_interval_ms, 500, 600_000),
                insert_timeout: Duration::from_secs(10),
            },
            spool_dir: c.text(&args.audit_spool_dir, "audit-spool").into(),
            anomaly: crate::audit::anomaly::AnomalyConfig {
                search_per_minute: c.number(
                    "ANOMALY_SEARCHES_PER_MINUTE",
                    &args.anomaly_searches_per_minute,
                    60,
                    (1, 1_000_000),
                ),
                deletes_per_minute: c.number(
                    "ANOMALY_DELETES_PER_MINUTE",
                    &args.anomaly_deletes_per_minute,
                    20,
                    (1, 1_000_000),
                ),
                auth_failures_per_minute: c.number(
                    "ANOMALY_AUTH_FAILURES_PER_MINUTE",
                    &args.anomaly_auth_failures_per_minute,
                    20,
                    (1, 1_000_000),
                ),
                cross_tenant_per_5_minutes: c.number(
                    "ANOMALY_CROSS_TENANT_PER_5_MINUTES",
                    &args.anomaly_cross_tenant_per_5_minutes,
                    3,
                    (1, 1_000_000),
                ),
                ips_per_user_per_5_minutes: c.number(
                    "ANOMALY_IPS_PER_USER_PER_5_MINUTES",
                    &args.anomaly_ips_per_user_per_5_minutes,
                    5,
                    (1, 1_000_000),
                ),
                auto_lock: c.boolean("SECURITY_AUTO_LOCK", &args.security_auto_lock, false),
            },
        };
        let per_minute = |c: &mut Checker, var: &'static str, v: &Option<String>, default: u32| {
            c.number(var, v, default, (0, 1_000_000))
        };
        let rate_limit = crate::ratelimit::RateLimitConfig {
            enabled: c.boolean("RATE_LIMIT_ENABLED", &args.rate_limit_enabled, true),
            ip_per_minute: per_minute(&mut c, "RATE_LIMIT_IP_PER_MINUTE", &args.rate_limit_ip_per_minute, 600),
            user_per_minute: per_minute(&mut c, "RATE_LIMIT_USER_PER_MINUTE", &args.rate_limit_user_per_minute, 300),
            org_per_minute: per_minute(&mut c, "RATE_LIMIT_ORG_PER_MINUTE", &args.rate_limit_org_per_minute, 600),
            auth_per_minute: per_minute(&mut c, "RATE_LIMIT_AUTH_PER_MINUTE", &args.rate_limit_auth_per_minute, 30),
        };
        let metrics = MetricsConfig {
            bind_addr: match args.metrics_bind_addr.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
                None => None,
                Some(raw) => raw.parse().map(Some).unwrap_or_else(|_| {
                    c.problem("METRICS_BIND_ADDR", format!("expected ip:port such as 127.0.0.1:9090, got {raw:?}"));
                    None
                }),
            },
            bearer_token: args
                .metrics_bearer_token
                .as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(|v| SecretString::from(v.to_owned())),
        };
        let http = HttpConfig {
            trusted_proxies,
            max_body_bytes: c.number("MAX_BODY_BYTES", &args.max_body_bytes, 1_048_576usize, (1_024, 64 * 1_048_576)),
            request_timeout: c.millis("REQUEST_TIMEOUT_MS", &args.request_timeout_ms, 30_000, 600_000),
            shutdown_grace: c.millis("SHUTDOWN_GRACE_MS", &args.shutdown_grace_ms, 25_000, 600_000),
        };

        if c.0.is_empty() {
            Ok(Config { bind_addr, app_env, database, auth, redis, http, audit, rate_limit, metrics })
        } else {
            Err(ConfigErrors(c.0))
        }
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
