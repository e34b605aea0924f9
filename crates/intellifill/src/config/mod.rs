//! Configuration: read from flags or environment (clap `env`), then validated as a whole.
//!
//! Every value is first taken as text so that one bad value does not hide the next: each section (one module
//! each) validates its variables and returns its configuration or every problem it found, and start-up prints
//! the problems of all sections together (which variable, what was expected, what was given). Secrets are
//! held as [`SecretString`](secrecy::SecretString) so they never reach a log line or a `Debug` dump.
//!
//! The configuration types are owned here and depend on no other module of the crate; the modules that use
//! them import them from here.

pub(crate) mod audit;
mod auth;
mod browser;
mod check;
mod database;
mod http;
mod observability;
mod orgs;
mod ratelimit;
mod redis;

#[cfg(test)]
mod docs_tests;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;

use clap::Parser;
use secrecy::ExposeSecret;

pub(crate) use audit::{AnomalyConfig, AuditConfig, PartitionConfig, SealConfig, WriterConfig, parse_signing_key};
pub(crate) use auth::{AuthConfig, JwtKeys, OutageMode, StartupKeyCheck, VerifyMode};
#[cfg(feature = "dev")]
pub(crate) use browser::parse_origin;
pub(crate) use browser::{BrowserConfig, CorsConfig, CorsOrigins};
pub(crate) use check::{ConfigErrors, ConfigProblem};
pub(crate) use database::{DatabaseConfig, RlsFailureMode, StatementMode};
pub(crate) use http::{ConnectionLimits, HttpConfig, TrustedProxies};
pub(crate) use observability::{HealthConfig, MetricsConfig};
pub(crate) use orgs::OrgConfig;
pub(crate) use ratelimit::RateLimitConfig;
pub(crate) use redis::RedisConfig;

use check::{Checker, Section};

/// Raw configuration as given on the command line or in the environment.
///
/// Each argument's `env` and `default_value` are the table of variables and defaults: validation reads its
/// defaults from here (also when `ServeArgs` is built in code), and a unit test checks README.md and
/// `.env.example` against it. Values stay text until [`Config::from_args`] validates them all.
#[derive(Debug, Clone, Default, Parser)]
#[command(name = "serve")]
pub struct ServeArgs {
    /// Address the HTTP server listens on.
    #[arg(long, env = "BIND_ADDR", default_value = "0.0.0.0:8080")]
    pub bind_addr: Option<String>,
    /// Deployment environment: production | development | test.
    #[arg(long, env = "APP_ENV", default_value = "production")]
    pub app_env: Option<String>,
    /// Runtime database URL (the non-owner, NOBYPASSRLS role; may point at PgBouncer).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// PEM file of CA certificates trusted for TLS to Postgres, besides the public roots (hosted Supabase).
    #[arg(long, env = "DATABASE_CA_FILE")]
    pub database_ca_file: Option<String>,
    /// Maximum connections in the one process-wide pool.
    #[arg(long, env = "DB_POOL_MAX_SIZE", default_value = "16")]
    pub db_pool_max_size: Option<String>,
    /// How long a request waits for a pooled connection before it is shed with 503.
    #[arg(long, env = "DB_POOL_WAIT_TIMEOUT_MS", default_value = "2000")]
    pub db_pool_wait_timeout_ms: Option<String>,
    /// How long opening a new database connection may take.
    #[arg(long, env = "DB_CONNECT_TIMEOUT_MS", default_value = "5000")]
    pub db_connect_timeout_ms: Option<String>,
    /// Per-transaction statement timeout (set transaction-locally, PgBouncer-safe).
    #[arg(long, env = "DB_STATEMENT_TIMEOUT_MS", default_value = "10000")]
    pub db_statement_timeout_ms: Option<String>,
    /// How statements are sent: prepared (named, cached per connection) | unnamed (safe behind any transaction
    /// pooler) | auto (unnamed when DATABASE_URL names a pooler port, 6432 or 6543, or a `pooler.` host; else
    /// prepared).
    #[arg(long, env = "DATABASE_STATEMENTS", default_value = "auto")]
    pub database_statements: Option<String>,
    /// What to do when the RLS context cannot be set: fail (always allowed) | continue (development only).
    #[arg(long, env = "RLS_CONTEXT_FAILURE_MODE", default_value = "fail")]
    pub rls_context_failure_mode: Option<String>,
    /// Supabase project URL (the auth service is at `<url>/auth/v1`).
    #[arg(long, env = "SUPABASE_URL")]
    pub supabase_url: Option<String>,
    /// Supabase anon / publishable key, sent as `apikey` to the auth service.
    #[arg(long, env = "SUPABASE_ANON_KEY", hide_env_values = true)]
    pub supabase_anon_key: Option<String>,
    /// Timeout of one call to the auth service.
    #[arg(long, env = "AUTH_HTTP_TIMEOUT_MS", default_value = "5000")]
    pub auth_http_timeout_ms: Option<String>,
    /// At start, check `SUPABASE_ANON_KEY` with `GET /auth/v1/settings`: require (refuse to start when the auth
    /// service refuses it) | warn (log it and serve) | off. Default: require in production, else warn.
    #[arg(long, env = "AUTH_STARTUP_KEY_CHECK")]
    pub auth_startup_key_check: Option<String>,
    /// Create the `users` row of a verified user with a confirmed e-mail on first sight, and keep its e-mail
    /// in step with the auth service; `false`: rows are the operator's (USER_NOT_PROVISIONED without one).
    #[arg(long, env = "AUTH_AUTO_PROVISION", default_value = "true")]
    pub auth_auto_provision: Option<String>,
    /// Let anonymous sign-ins (`is_anonymous` tokens) use the API; refused with ANONYMOUS_NOT_ALLOWED otherwise.
    #[arg(long, env = "AUTH_ALLOW_ANONYMOUS", default_value = "false")]
    pub auth_allow_anonymous: Option<String>,
    /// remote (local check + token cache + `GET /auth/v1/user`) | local (local check + revocation list only).
    #[arg(long, env = "AUTH_VERIFY_MODE", default_value = "remote")]
    pub auth_verify_mode: Option<String>,
    /// Legacy HS256 JWT secret. When set, tokens are verified with it (HS256 only) instead of the JWKS.
    #[arg(long, env = "AUTH_JWT_SECRET", hide_env_values = true)]
    pub auth_jwt_secret: Option<String>,
    /// Asymmetric algorithms accepted from the JWKS (comma-separated subset of ES256,RS256).
    #[arg(long, env = "AUTH_JWT_ALGORITHMS", default_value = "ES256,RS256")]
    pub auth_jwt_algorithms: Option<String>,
    /// JWKS URL (default `<SUPABASE_URL>/auth/v1/.well-known/jwks.json`).
    #[arg(long, env = "AUTH_JWKS_URL")]
    pub auth_jwks_url: Option<String>,
    /// How long a fetched JWKS is used before it is refetched.
    #[arg(long, env = "AUTH_JWKS_CACHE_SECONDS", default_value = "600")]
    pub auth_jwks_cache_seconds: Option<String>,
    /// Minimum interval between two JWKS fetches (unknown `kid`s cannot cause more).
    #[arg(long, env = "AUTH_JWKS_MIN_REFRESH_SECONDS", default_value = "30")]
    pub auth_jwks_min_refresh_seconds: Option<String>,
    /// Expected `aud` claim.
    #[arg(long, env = "AUTH_JWT_AUDIENCE", default_value = "authenticated")]
    pub auth_jwt_audience: Option<String>,
    /// Expected `iss` claim (default `<SUPABASE_URL>/auth/v1`).
    #[arg(long, env = "AUTH_JWT_ISSUER")]
    pub auth_jwt_issuer: Option<String>,
    /// How far the auth service's clock may run ahead of this server's, in seconds: leeway for `nbf` (`exp` is
    /// strict, as the auth service checks it).
    #[arg(long, env = "AUTH_JWT_LEEWAY_SECONDS", default_value = "10")]
    pub auth_jwt_leeway_seconds: Option<String>,
    /// How long a verified token is trusted without asking the auth service again (never past its `exp`).
    #[arg(long, env = "TOKEN_CACHE_TTL_SECONDS", default_value = "300")]
    pub token_cache_ttl_seconds: Option<String>,
    /// How long a rejection (session gone, user gone, banned) is remembered.
    #[arg(long, env = "TOKEN_CACHE_NEGATIVE_TTL_SECONDS", default_value = "30")]
    pub token_cache_negative_ttl_seconds: Option<String>,
    /// Maximum entries of the in-process (L1) token cache.
    #[arg(long, env = "TOKEN_CACHE_MAX_ENTRIES", default_value = "100000")]
    pub token_cache_max_entries: Option<String>,
    /// What an auth-service outage does to uncached tokens: closed (503) | cached (serve stale entries).
    #[arg(long, env = "AUTH_OUTAGE_MODE", default_value = "closed")]
    pub auth_outage_mode: Option<String>,
    /// In `cached` outage mode, how far past its TTL a cache entry may be served (never past `exp`).
    #[arg(long, env = "AUTH_STALE_MAX_SECONDS", default_value = "900")]
    pub auth_stale_max_seconds: Option<String>,
    /// Largest clock difference assumed between the auth service and this server: a global or `others`
    /// logout refuses tokens issued more than this before it locally and asks the auth service about tokens
    /// issued within it.
    #[arg(long, env = "AUTH_CLOCK_SKEW_BOUND_SECONDS", default_value = "30")]
    pub auth_clock_skew_bound_seconds: Option<String>,
    /// A cached verification older than this is served while one background call re-verifies it with the
    /// auth service (both verify modes); 0 turns revalidation off.
    #[arg(long, env = "AUTH_REVALIDATE_SECONDS", default_value = "30")]
    pub auth_revalidate_seconds: Option<String>,
    /// Circuit breaker on the auth service: on | off.
    #[arg(long, env = "AUTH_BREAKER_ENABLED", default_value = "true")]
    pub auth_breaker_enabled: Option<String>,
    /// Breaker: trip when the failure percentage in the window is strictly greater than this.
    #[arg(long, env = "AUTH_BREAKER_ERROR_THRESHOLD_PERCENT", default_value = "50")]
    pub auth_breaker_error_threshold_percent: Option<String>,
    /// Breaker: minimum calls in the window before it may trip.
    #[arg(long, env = "AUTH_BREAKER_VOLUME_THRESHOLD", default_value = "5")]
    pub auth_breaker_volume_threshold: Option<String>,
    /// Breaker: rolling window length.
    #[arg(long, env = "AUTH_BREAKER_WINDOW_MS", default_value = "10000")]
    pub auth_breaker_window_ms: Option<String>,
    /// Breaker: number of buckets in the rolling window.
    #[arg(long, env = "AUTH_BREAKER_BUCKETS", default_value = "10")]
    pub auth_breaker_buckets: Option<String>,
    /// Breaker: how long it stays open before one trial call is let through.
    #[arg(long, env = "AUTH_BREAKER_RESET_TIMEOUT_MS", default_value = "30000")]
    pub auth_breaker_reset_timeout_ms: Option<String>,
    /// Paths never audited: comma-separated, each matched exactly against the full path (no query), or, written
    /// `/prefix/*`, `/prefix` and everything under it.
    #[arg(long, env = "AUDIT_EXCLUDE_PATHS", default_value = "/health,/health/ready,/metrics")]
    pub audit_exclude_paths: Option<String>,
    /// In-memory audit queue; when full, events go to the disk spool (never dropped).
    #[arg(long, env = "AUDIT_QUEUE_CAPACITY", default_value = "10000")]
    pub audit_queue_capacity: Option<String>,
    /// Bytes of a request body kept for its audit row (a longer body: its first bytes, marked truncated with
    /// its size); 0 keeps no body.
    #[arg(long, env = "AUDIT_MAX_BODY_BYTES", default_value = "32768")]
    pub audit_max_body_bytes: Option<String>,
    /// Bytes the audit events waiting in memory (queue and overflow) may take; over it, audited requests are
    /// refused with 503 AUDIT_UNAVAILABLE before their handler runs.
    #[arg(long, env = "AUDIT_QUEUE_MAX_BYTES", default_value = "33554432")]
    pub audit_queue_max_bytes: Option<String>,
    /// Bytes the audit spool may take on disk; at it, the writer holds events in memory (see AUDIT_QUEUE_MAX_BYTES).
    #[arg(long, env = "AUDIT_SPOOL_MAX_BYTES", default_value = "1073741824")]
    pub audit_spool_max_bytes: Option<String>,
    /// Audit rows per insert.
    #[arg(long, env = "AUDIT_BATCH_SIZE", default_value = "200")]
    pub audit_batch_size: Option<String>,
    /// Longest an audit event waits in the queue before its batch is written.
    #[arg(long, env = "AUDIT_FLUSH_INTERVAL_MS", default_value = "500")]
    pub audit_flush_interval_ms: Option<String>,
    /// Directory of the audit spool (events kept on disk while the database is unavailable).
    #[arg(long, env = "AUDIT_SPOOL_DIR", default_value = "audit-spool")]
    pub audit_spool_dir: Option<String>,
    /// Months of audit partitions the server keeps created ahead of the current one (1 to 24).
    #[arg(long, env = "AUDIT_PARTITIONS_AHEAD_MONTHS", default_value = "3")]
    pub audit_partitions_ahead_months: Option<String>,
    /// How often the server runs audit partition maintenance (once at start, then at this interval).
    #[arg(long, env = "AUDIT_PARTITION_CHECK_SECONDS", default_value = "3600")]
    pub audit_partition_check_seconds: Option<String>,
    /// Seal the audit trail in signed digests: on | off. On needs a signing key in production (start is
    /// refused without one); elsewhere no key means no sealing.
    #[arg(long, env = "AUDIT_SEALING", default_value = "on")]
    pub audit_sealing: Option<String>,
    /// Ed25519 key that signs audit digests: PKCS#8 PEM or a base64 32-byte seed (`intellifill audit
    /// generate-key`). The database never sees it.
    #[arg(long, env = "AUDIT_SIGNING_KEY", hide_env_values = true)]
    pub audit_signing_key: Option<String>,
    /// File holding the audit signing key (instead of AUDIT_SIGNING_KEY).
    #[arg(long, env = "AUDIT_SIGNING_KEY_FILE")]
    pub audit_signing_key_file: Option<String>,
    /// How often finished audit rows are sealed into a signed digest, in seconds.
    #[arg(long, env = "AUDIT_SEAL_INTERVAL_SECS", default_value = "60")]
    pub audit_seal_interval_secs: Option<String>,
    /// Deactivate a user on a critical security event (mass delete, cross-tenant burst).
    #[arg(long, env = "SECURITY_AUTO_LOCK", default_value = "false")]
    pub security_auto_lock: Option<String>,
    /// Anomaly: knowledge searches per user per minute before it is reported.
    #[arg(long, env = "ANOMALY_SEARCHES_PER_MINUTE", default_value = "60")]
    pub anomaly_searches_per_minute: Option<String>,
    /// Anomaly: successful deletes per user per minute.
    #[arg(long, env = "ANOMALY_DELETES_PER_MINUTE", default_value = "20")]
    pub anomaly_deletes_per_minute: Option<String>,
    /// Anomaly: 401/403 answers per user (or ip, before authentication) per minute.
    #[arg(long, env = "ANOMALY_AUTH_FAILURES_PER_MINUTE", default_value = "20")]
    pub anomaly_auth_failures_per_minute: Option<String>,
    /// Anomaly: cross-tenant attempts per user per 5 minutes.
    #[arg(long, env = "ANOMALY_CROSS_TENANT_PER_5_MINUTES", default_value = "3")]
    pub anomaly_cross_tenant_per_5_minutes: Option<String>,
    /// Anomaly: distinct client ips per user per 5 minutes.
    #[arg(long, env = "ANOMALY_IPS_PER_USER_PER_5_MINUTES", default_value = "5")]
    pub anomaly_ips_per_user_per_5_minutes: Option<String>,
    /// A refused request to an organization the caller was a member of less than this many seconds ago is
    /// not a cross-tenant attempt (a former member's stale client); 0 counts every one.
    #[arg(long, env = "SECURITY_RECENT_MEMBERSHIP_SECONDS", default_value = "604800")]
    pub security_recent_membership_seconds: Option<String>,
    /// How long an organization invitation can be accepted, in seconds.
    #[arg(long, env = "ORG_INVITATION_TTL_SECONDS", default_value = "604800")]
    pub org_invitation_ttl_seconds: Option<String>,
    /// Organizations one user may hold as an active OWNER.
    #[arg(long, env = "ORG_MAX_PER_USER", default_value = "20")]
    pub org_max_per_user: Option<String>,
    /// Pending invitations one organization may have.
    #[arg(long, env = "ORG_MAX_PENDING_INVITATIONS", default_value = "200")]
    pub org_max_pending_invitations: Option<String>,
    /// Origins allowed to call the API from a browser (CORS): comma-separated exact origins such as
    /// `https://app.example.com` (`scheme://host[:port]`), or `*` for any; empty: CORS off.
    #[arg(long, env = "CORS_ALLOWED_ORIGINS")]
    pub cors_allowed_origins: Option<String>,
    /// Answer CORS requests with `Access-Control-Allow-Credentials: true` (only with explicit origins).
    #[arg(long, env = "CORS_ALLOW_CREDENTIALS", default_value = "false")]
    pub cors_allow_credentials: Option<String>,
    /// How long a browser may reuse a preflight answer (`Access-Control-Max-Age`).
    #[arg(long, env = "CORS_MAX_AGE_SECONDS", default_value = "600")]
    pub cors_max_age_seconds: Option<String>,
    /// `Strict-Transport-Security` max-age on every response; 0: not sent (set it only when clients reach the
    /// API over HTTPS only).
    #[arg(long, env = "HSTS_MAX_AGE_SECONDS", default_value = "0")]
    pub hsts_max_age_seconds: Option<String>,
    /// Proxies whose X-Forwarded-For is believed (comma-separated ips or CIDRs); empty: none.
    #[arg(long, env = "TRUSTED_PROXIES")]
    pub trusted_proxies: Option<String>,
    /// Rate limits on (true) or off.
    #[arg(long, env = "RATE_LIMIT_ENABLED", default_value = "true")]
    pub rate_limit_enabled: Option<String>,
    /// Requests per minute per client ip (every route, before authentication); 0 disables.
    #[arg(long, env = "RATE_LIMIT_IP_PER_MINUTE", default_value = "600")]
    pub rate_limit_ip_per_minute: Option<String>,
    /// Requests per minute per user (authenticated API); 0 disables.
    #[arg(long, env = "RATE_LIMIT_USER_PER_MINUTE", default_value = "300")]
    pub rate_limit_user_per_minute: Option<String>,
    /// Searches and writes per minute per organization; 0 disables.
    #[arg(long, env = "RATE_LIMIT_ORG_PER_MINUTE", default_value = "600")]
    pub rate_limit_org_per_minute: Option<String>,
    /// Requests per minute per user and ip on /api/auth/*; 0 disables.
    #[arg(long, env = "RATE_LIMIT_AUTH_PER_MINUTE", default_value = "30")]
    pub rate_limit_auth_per_minute: Option<String>,
    /// Milliseconds a per-ip refusal (429) waits before it is sent, at most until the address's next allowed
    /// request and half of REQUEST_TIMEOUT_MS; 0 answers at once. A flooding connection then sends one request
    /// per wait, not thousands.
    #[arg(long, env = "RATE_LIMIT_IP_REFUSAL_DELAY_MS", default_value = "1000")]
    pub rate_limit_ip_refusal_delay_ms: Option<String>,
    /// Serve /metrics on this separate address (e.g. 127.0.0.1:9090) instead of the API port.
    #[arg(long, env = "METRICS_BIND_ADDR")]
    pub metrics_bind_addr: Option<String>,
    /// Require `Authorization: Bearer <token>` on /metrics.
    #[arg(long, env = "METRICS_BEARER_TOKEN", hide_env_values = true)]
    pub metrics_bearer_token: Option<String>,
    /// Send a `Server-Timing` header (auth, pool wait, database transaction, the rest, total) on every routed
    /// response: true | false. It tells any client where the server's time went; keep it off in production.
    #[arg(long, env = "SERVER_TIMING", default_value = "false")]
    pub server_timing: Option<String>,
    /// How long a `/health/ready` verdict is reused before the dependencies are probed again (1 to 10000).
    #[arg(long, env = "HEALTH_READY_CACHE_MS", default_value = "2000")]
    pub health_ready_cache_ms: Option<String>,
    /// Shared store (Redis) URL: L2 token cache, revocations, rate limits. Unset: in-process state only.
    /// `rediss://` for TLS (certificate always verified); `redis[s]://user:password@host` for an ACL user.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// PEM file of CA certificates trusted for TLS to Redis (`rediss://`), besides the system roots.
    #[arg(long, env = "REDIS_CA_FILE")]
    pub redis_ca_file: Option<String>,
    /// Prefix of every Redis key (several deployments can share one Redis).
    #[arg(long, env = "REDIS_KEY_PREFIX", default_value = "intellifill:")]
    pub redis_key_prefix: Option<String>,
    /// Timeout of one Redis command; slower answers fall back to in-process state.
    #[arg(long, env = "REDIS_OP_TIMEOUT_MS", default_value = "100")]
    pub redis_op_timeout_ms: Option<String>,
    /// Largest accepted request body in bytes.
    #[arg(long, env = "MAX_BODY_BYTES", default_value = "1048576")]
    pub max_body_bytes: Option<String>,
    /// Whole-request timeout.
    #[arg(long, env = "REQUEST_TIMEOUT_MS", default_value = "30000")]
    pub request_timeout_ms: Option<String>,
    /// How long shutdown waits for in-flight requests before it gives up on them.
    #[arg(long, env = "SHUTDOWN_GRACE_MS", default_value = "25000")]
    pub shutdown_grace_ms: Option<String>,
    /// How long a client may take to send a request head (request line and headers), from the connection's
    /// start or its first byte after an idle keep-alive period; then it gets 408 (or, silent, a close).
    #[arg(long, env = "HTTP_HEADER_READ_TIMEOUT_MS", default_value = "10000")]
    pub http_header_read_timeout_ms: Option<String>,
    /// How long a keep-alive connection may stay idle between requests before it is closed.
    #[arg(long, env = "HTTP_KEEPALIVE_TIMEOUT_MS", default_value = "75000")]
    pub http_keepalive_timeout_ms: Option<String>,
    /// Largest request head (request line and headers) in bytes; larger ones get 431.
    #[arg(long, env = "HTTP_MAX_HEADER_BYTES", default_value = "32768")]
    pub http_max_header_bytes: Option<String>,
    /// Open client connections allowed at once; a connection over it gets 503 and is closed.
    #[arg(long, env = "HTTP_MAX_CONNECTIONS", default_value = "4096")]
    pub http_max_connections: Option<String>,
}

/// Deployment environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppEnv {
    Production,
    Development,
    Test,
}

/// `APP_ENV`.
fn app_env(args: &ServeArgs) -> Section<AppEnv> {
    let mut c = Checker::default();
    let env = c.choice(
        "APP_ENV",
        &args.app_env,
        &[("production", AppEnv::Production), ("development", AppEnv::Development), ("test", AppEnv::Test)],
    );
    c.finish(env)
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
    pub browser: BrowserConfig,
    pub audit: AuditConfig,
    pub rate_limit: RateLimitConfig,
    pub metrics: MetricsConfig,
    pub health: HealthConfig,
    pub orgs: OrgConfig,
}

impl Config {
    /// Validate raw arguments into a configuration, reporting the problems of every section at once.
    pub fn from_args(args: &ServeArgs) -> Result<Config, ConfigErrors> {
        let mut problems = Vec::new();
        let bind_addr = keep(&mut problems, http::bind_addr(args));
        let app_env = keep(&mut problems, app_env(args));
        let database = keep(&mut problems, database::from_args(args, app_env));
        let auth = keep(&mut problems, auth::from_args(args, app_env));
        let redis = keep(&mut problems, redis::from_args(args));
        let http = keep(&mut problems, http::from_args(args));
        let browser = keep(&mut problems, browser::from_args(args));
        let audit = keep(&mut problems, audit::from_args(args, app_env));
        let rate_limit = keep(&mut problems, ratelimit::from_args(args));
        let metrics = keep(&mut problems, observability::from_args(args, app_env));
        let health = keep(&mut problems, observability::health(args));
        let orgs = keep(&mut problems, orgs::from_args(args));
        // A refusal held past the request's own deadline would end as 408: the hold is at most half of it.
        let rate_limit = rate_limit.map(|mut r| {
            if let Some(http) = &http {
                r.ip_refusal_delay = r.ip_refusal_delay.min(http.request_timeout / 2);
            }
            r
        });
        match (bind_addr, app_env, database, auth, redis, http, browser, audit, rate_limit, metrics, health, orgs) {
            (
                Some(bind_addr),
                Some(app_env),
                Some(database),
                Some(auth),
                Some(redis),
                Some(http),
                Some(browser),
                Some(audit),
                Some(rate_limit),
                Some(metrics),
                Some(health),
                Some(orgs),
            ) => Ok(Config {
                bind_addr,
                app_env,
                database,
                auth,
                redis,
                http,
                browser,
                audit,
                rate_limit,
                metrics,
                health,
                orgs,
            }),
            _ => Err(ConfigErrors(problems)),
        }
    }

    /// The auth service base URL (`<SUPABASE_URL>/auth/v1`).
    pub fn auth_base_url(&self) -> String {
        auth::base_url(&self.auth.supabase_url)
    }

    /// The database URL; exposing it is explicit so that it never leaks by accident.
    pub fn database_url(&self) -> &str {
        self.database.url.expose_secret()
    }
}

/// A section's configuration, its problems moved to `problems`.
fn keep<T>(problems: &mut Vec<ConfigProblem>, section: Section<T>) -> Option<T> {
    section.map_err(|found| problems.extend(found)).ok()
}
