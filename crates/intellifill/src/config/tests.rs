//! Validation of the whole configuration: defaults, problems reported together, secrets kept out of messages.

use std::time::Duration;

use super::*;

fn minimal() -> ServeArgs {
    ServeArgs {
        database_url: Some("postgres://app:pw@127.0.0.1:5432/db".into()),
        supabase_url: Some("http://127.0.0.1:9999".into()),
        supabase_anon_key: Some("anon".into()),
        metrics_bearer_token: Some("scrape".into()),
        audit_signing_key: Some("BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=".into()),
        ..ServeArgs::default()
    }
}

#[test]
fn production_seals_the_audit_trail_unless_told_otherwise() {
    assert!(Config::from_args(&minimal()).expect("valid").audit.seal.key.is_some());
    let keyless = ServeArgs { audit_signing_key: None, ..minimal() };
    let text = Config::from_args(&keyless).expect_err("no key in production").to_string();
    assert!(text.contains("AUDIT_SIGNING_KEY") && text.contains("AUDIT_SEALING=off"), "{text}");
    let off = ServeArgs { audit_sealing: Some("off".into()), ..keyless.clone() };
    assert!(Config::from_args(&off).expect("unsealed on purpose").audit.seal.key.is_none());
    let dev = ServeArgs { app_env: Some("development".into()), ..keyless.clone() };
    assert!(Config::from_args(&dev).expect("dev runs unsealed").audit.seal.key.is_none());
    let bad = ServeArgs { audit_signing_key: Some("not-a-key-secret".into()), ..minimal() };
    let text = Config::from_args(&bad).expect_err("bad key").to_string();
    assert!(text.contains("AUDIT_SIGNING_KEY") && !text.contains("not-a-key-secret"), "{text}");
    let both = ServeArgs { audit_signing_key_file: Some("/nonexistent".into()), ..minimal() };
    assert!(Config::from_args(&both).expect_err("both").to_string().contains("not both"));
}

#[test]
fn production_refuses_an_open_metrics_endpoint() {
    let open = ServeArgs { metrics_bearer_token: None, ..minimal() };
    let errs = Config::from_args(&open).expect_err("open /metrics in production");
    let text = errs.to_string();
    assert!(text.contains("METRICS_BEARER_TOKEN") && text.contains("METRICS_BIND_ADDR"), "{text}");
    let separate = ServeArgs { metrics_bind_addr: Some("127.0.0.1:9464".into()), ..open.clone() };
    assert!(Config::from_args(&separate).is_ok());
    for env in ["development", "test"] {
        let dev = ServeArgs { app_env: Some(env.into()), ..open.clone() };
        assert!(Config::from_args(&dev).is_ok(), "{env} keeps an open /metrics");
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
    let connections = cfg.http.connections;
    assert_eq!(connections.header_read_timeout, Duration::from_secs(10));
    assert_eq!(connections.keepalive_timeout, Duration::from_secs(75));
    assert_eq!(connections.max_header_bytes, 32_768);
    assert_eq!(connections.max_connections, 4_096);
    assert_eq!(cfg.health.ready_cache, Duration::from_secs(2));
}

#[test]
fn the_readiness_cache_stays_within_a_few_seconds() {
    for bad in ["0", "10001", "2s"] {
        let args = ServeArgs { health_ready_cache_ms: Some(bad.into()), ..minimal() };
        let errs = Config::from_args(&args).expect_err(bad);
        assert_eq!(errs.0.iter().map(|p| p.variable).collect::<Vec<_>>(), ["HEALTH_READY_CACHE_MS"], "{bad}");
    }
    let args = ServeArgs { health_ready_cache_ms: Some("10000".into()), ..minimal() };
    assert_eq!(Config::from_args(&args).expect("valid").health.ready_cache, Duration::from_secs(10));
}

#[test]
fn revocation_timing_defaults_and_limits() {
    let cfg = Config::from_args(&minimal()).expect("valid");
    assert_eq!(cfg.auth.clock_skew_bound, Duration::from_secs(30));
    assert_eq!(cfg.auth.revalidate_after, Duration::from_secs(30));
    let off = ServeArgs { auth_revalidate_seconds: Some("0".into()), ..minimal() };
    assert_eq!(Config::from_args(&off).expect("valid").auth.revalidate_after, Duration::ZERO);
    let mut args = minimal();
    args.auth_revalidate_seconds = Some("-1".into());
    args.auth_clock_skew_bound_seconds = Some("7200".into());
    let errs = Config::from_args(&args).expect_err("invalid");
    let vars: Vec<&str> = errs.0.iter().map(|p| p.variable).collect();
    assert_eq!(vars, ["AUTH_REVALIDATE_SECONDS", "AUTH_CLOCK_SKEW_BOUND_SECONDS"]);
}

#[test]
fn a_per_ip_refusal_is_held_a_second_by_default_and_at_most_half_the_request_timeout() {
    let held = |delay: Option<&str>, timeout: Option<&str>| {
        let mut args = minimal();
        if let Some(d) = delay {
            args.rate_limit_ip_refusal_delay_ms = Some(d.into());
        }
        if let Some(t) = timeout {
            args.request_timeout_ms = Some(t.into());
        }
        Config::from_args(&args).map(|c| c.rate_limit.ip_refusal_delay)
    };
    assert_eq!(held(None, None), Ok(Duration::from_secs(1)));
    assert_eq!(held(Some("0"), None), Ok(Duration::ZERO));
    assert_eq!(held(Some("10000"), None), Ok(Duration::from_secs(10)));
    assert_eq!(held(None, Some("300")), Ok(Duration::from_millis(150)), "half of a short request timeout");
    for bad in ["10001", "-1", "1s"] {
        let errs = held(Some(bad), None).expect_err(bad);
        assert_eq!(errs.0.iter().map(|p| p.variable).collect::<Vec<_>>(), ["RATE_LIMIT_IP_REFUSAL_DELAY_MS"], "{bad}");
    }
}

#[test]
fn connection_limits_are_range_checked() {
    let mut args = minimal();
    args.http_max_header_bytes = Some("1024".into());
    args.http_max_connections = Some("0".into());
    args.http_header_read_timeout_ms = Some("0".into());
    let errs = Config::from_args(&args).expect_err("invalid");
    let vars: Vec<&str> = errs.0.iter().map(|p| p.variable).collect();
    assert_eq!(vars, ["HTTP_HEADER_READ_TIMEOUT_MS", "HTTP_MAX_HEADER_BYTES", "HTTP_MAX_CONNECTIONS"]);
}

#[test]
fn every_problem_is_reported_once_with_its_variable() {
    let args = ServeArgs {
        db_pool_max_size: Some("zero".into()),
        auth_auto_provision: Some("maybe".into()),
        bind_addr: Some("localhost".into()),
        metrics_bearer_token: Some("scrape".into()),
        audit_signing_key: minimal().audit_signing_key,
        ..ServeArgs::default()
    };
    let errs = Config::from_args(&args).expect_err("invalid");
    let vars: Vec<&str> = errs.0.iter().map(|p| p.variable).collect();
    assert_eq!(
        vars,
        ["BIND_ADDR", "DATABASE_URL", "DB_POOL_MAX_SIZE", "SUPABASE_URL", "SUPABASE_ANON_KEY", "AUTH_AUTO_PROVISION"]
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

#[test]
fn audit_exclusions_match_exactly_unless_a_subtree_is_asked_for() {
    let cfg = Config::from_args(&minimal()).expect("valid");
    for path in ["/health", "/health/ready", "/metrics"] {
        assert!(cfg.audit.is_excluded(path), "{path} is excluded by default");
    }
    for path in ["/health/detailed", "/health/", "/healthz", "/metrics/x", "/api/docs/openapi.json"] {
        assert!(!cfg.audit.is_excluded(path), "{path} is audited by default");
    }

    let args = ServeArgs { audit_exclude_paths: Some(" /api/docs/* , /status ".into()), ..minimal() };
    let cfg = Config::from_args(&args).expect("valid");
    for path in ["/api/docs", "/api/docs/openapi.json", "/api/docs/a/b", "/status"] {
        assert!(cfg.audit.is_excluded(path), "{path} is excluded");
    }
    for path in ["/api/docsx", "/api/doc", "/status/x", "/health"] {
        assert!(!cfg.audit.is_excluded(path), "{path} is audited");
    }
}

#[test]
fn audit_exclusions_refuse_patterns_they_cannot_mean() {
    for bad in ["health", "/*", "/api/*/docs", "/api*", "/health?x=1"] {
        let args = ServeArgs { audit_exclude_paths: Some(format!("/metrics,{bad}")), ..minimal() };
        let errs = Config::from_args(&args).expect_err(bad);
        assert_eq!(errs.0.len(), 1, "{bad}: {errs}");
        assert_eq!(errs.0[0].variable, "AUDIT_EXCLUDE_PATHS");
        assert!(errs.0[0].problem.contains(bad), "the problem names the entry: {}", errs.0[0].problem);
    }
}

#[test]
fn the_startup_key_check_is_required_in_production_by_default() {
    assert_eq!(Config::from_args(&minimal()).expect("valid").auth.startup_key_check, StartupKeyCheck::Require);
    for env in ["development", "test"] {
        let args = ServeArgs { app_env: Some(env.into()), ..minimal() };
        assert_eq!(Config::from_args(&args).expect("valid").auth.startup_key_check, StartupKeyCheck::Warn, "{env}");
    }
    for (given, expected) in
        [("warn", StartupKeyCheck::Warn), ("OFF", StartupKeyCheck::Off), ("require", StartupKeyCheck::Require)]
    {
        let args = ServeArgs { auth_startup_key_check: Some(given.into()), ..minimal() };
        assert_eq!(Config::from_args(&args).expect("valid").auth.startup_key_check, expected, "{given}");
    }
    let args = ServeArgs { auth_startup_key_check: Some("strict".into()), ..minimal() };
    let text = Config::from_args(&args).expect_err("invalid").to_string();
    assert!(text.contains("AUTH_STARTUP_KEY_CHECK") && text.contains("require | warn | off"), "{text}");
}

#[test]
fn audit_bounds_have_production_defaults_and_the_queue_must_hold_a_few_bodies() {
    let cfg = Config::from_args(&minimal()).expect("valid");
    assert_eq!(cfg.audit.max_body_bytes, 32 * 1024);
    assert_eq!(cfg.audit.queue_max_bytes, 32 * 1024 * 1024);
    assert_eq!(cfg.audit.writer.spool_max_bytes, 1 << 30);
    let args = ServeArgs {
        audit_max_body_bytes: Some("65536".into()),
        audit_queue_max_bytes: Some("131072".into()),
        audit_spool_max_bytes: Some("1000".into()),
        ..minimal()
    };
    let errs = Config::from_args(&args).expect_err("too small");
    let text = errs.to_string();
    assert!(text.contains("AUDIT_QUEUE_MAX_BYTES: must be at least 4 x AUDIT_MAX_BODY_BYTES + 65536"), "{text}");
    assert!(text.contains("AUDIT_SPOOL_MAX_BYTES: expected a whole number from 65536"), "{text}");
    let none =
        ServeArgs { audit_max_body_bytes: Some("0".into()), audit_queue_max_bytes: Some("65536".into()), ..minimal() };
    assert_eq!(Config::from_args(&none).expect("no bodies kept").audit.max_body_bytes, 0);
}

#[test]
fn statements_are_prepared_unless_the_url_names_a_pooler_or_the_operator_says_so() {
    use crate::config::StatementMode::{Prepared, Unnamed};
    let mode = |url: &str, choice: Option<&str>| {
        let mut args = minimal();
        args.database_url = Some(url.into());
        args.database_statements = choice.map(Into::into);
        Config::from_args(&args).expect("valid").database.statements
    };
    assert_eq!(mode("postgres://app:pw@127.0.0.1:5432/db", None), Prepared);
    assert_eq!(mode("postgres://app:pw@db.example.internal/db", Some("auto")), Prepared);
    assert_eq!(mode("postgres://app:pw@127.0.0.1:6432/db", None), Unnamed);
    assert_eq!(mode("postgres://app:pw@aws-0-eu-west-1.pooler.supabase.com:6543/postgres", None), Unnamed);
    assert_eq!(mode("postgres://app:pw@aws-0-eu-west-1.pooler.supabase.com:5432/postgres", None), Unnamed);
    assert_eq!(mode("host=/run/pgbouncer port=6432 user=app dbname=db", None), Unnamed);
    // The operator's word wins either way.
    assert_eq!(mode("postgres://app:pw@127.0.0.1:6432/db", Some("prepared")), Prepared);
    assert_eq!(mode("postgres://app:pw@127.0.0.1:5432/db", Some("UNNAMED")), Unnamed);

    let mut args = minimal();
    args.database_statements = Some("named".into());
    let err = Config::from_args(&args).expect_err("refused").to_string();
    assert!(err.contains("DATABASE_STATEMENTS: expected one of auto | prepared | unnamed, got \"named\""), "{err}");
}
