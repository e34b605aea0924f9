//! The browser section: what browsers are allowed and told. `CORS_ALLOWED_ORIGINS`, `CORS_ALLOW_CREDENTIALS`,
//! `CORS_MAX_AGE_SECONDS` (cross-origin calls from a web frontend) and `HSTS_MAX_AGE_SECONDS` (the one security
//! header that depends on the deployment; the others are fixed, see `crate::http::browser`).

use std::time::Duration;

use super::ServeArgs;
use super::check::{Checker, Section};

/// What browsers are allowed (CORS) and told (the configurable security header).
#[derive(Debug, Clone, Default)]
pub struct BrowserConfig {
    /// `None`: CORS is off (no CORS headers, an `OPTIONS` request is an ordinary request).
    pub cors: Option<CorsConfig>,
    /// `Strict-Transport-Security: max-age=...` on every response; `None`: the header is not sent.
    pub hsts_max_age: Option<Duration>,
}

/// Which origins may call the API from a browser.
#[derive(Debug, Clone)]
pub struct CorsConfig {
    pub origins: CorsOrigins,
    /// `Access-Control-Allow-Credentials: true` (cookies, client certificates); only with explicit origins.
    pub allow_credentials: bool,
    /// How long a browser may reuse a preflight's answer.
    pub max_age: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigins {
    /// `*`: any origin (public data only, never with credentials).
    Any,
    /// Exact origins (`scheme://host[:port]`, as a browser sends them in `Origin`).
    List(Vec<String>),
}

/// One origin as a browser writes it in `Origin`: `http(s)://host[:port]`, lowercase host, no default port, no
/// path, query, fragment or user info. Anything else could never match, so it is refused with the form to use.
pub(crate) fn parse_origin(raw: &str) -> Result<String, String> {
    let url =
        url::Url::parse(raw).map_err(|e| format!("{raw:?} is not an origin ({e}); expected scheme://host[:port]"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{raw:?}: only http and https origins exist for a browser"));
    }
    let origin = url.origin().ascii_serialization();
    if raw != origin {
        return Err(format!(
            "{raw:?} is not an origin as browsers send it (scheme://host[:port], no path, no trailing slash, \
             lowercase, no default port): write {origin:?}"
        ));
    }
    Ok(origin)
}

/// Parses `CORS_ALLOWED_ORIGINS`: a comma list of exact origins, or `*` alone; empty: `None`.
pub(crate) fn parse_origins(raw: &str) -> Result<Option<CorsOrigins>, String> {
    let items: Vec<&str> = raw.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    if items.is_empty() {
        return Ok(None);
    }
    if items.contains(&"*") {
        return if items.len() == 1 {
            Ok(Some(CorsOrigins::Any))
        } else {
            Err("`*` allows every origin: give it alone or list exact origins".to_owned())
        };
    }
    let mut origins = Vec::with_capacity(items.len());
    for item in items {
        let origin = parse_origin(item)?;
        if !origins.contains(&origin) {
            origins.push(origin);
        }
    }
    Ok(Some(CorsOrigins::List(origins)))
}

pub(super) fn from_args(args: &ServeArgs) -> Section<BrowserConfig> {
    let mut c = Checker::default();
    let origins = parse_origins(&c.text("CORS_ALLOWED_ORIGINS", &args.cors_allowed_origins)).unwrap_or_else(|e| {
        c.problem("CORS_ALLOWED_ORIGINS", e);
        None
    });
    let allow_credentials = c.boolean("CORS_ALLOW_CREDENTIALS", &args.cors_allow_credentials);
    let max_age = c.seconds("CORS_MAX_AGE_SECONDS", &args.cors_max_age_seconds, (0, 86_400));
    match (&origins, allow_credentials) {
        (None, true) => c.problem(
            "CORS_ALLOW_CREDENTIALS",
            "is true but CORS_ALLOWED_ORIGINS is empty: credentials need explicit origins",
        ),
        (Some(CorsOrigins::Any), true) => c.problem(
            "CORS_ALLOW_CREDENTIALS",
            "is true with CORS_ALLOWED_ORIGINS=*: browsers refuse credentials for any origin; list the origins",
        ),
        _ => {}
    }
    let cors = origins.map(|origins| CorsConfig { origins, allow_credentials, max_age });
    let hsts = c.number("HSTS_MAX_AGE_SECONDS", &args.hsts_max_age_seconds, (0_u64, 63_072_000));
    c.finish(BrowserConfig { cors, hsts_max_age: (hsts > 0).then(|| Duration::from_secs(hsts)) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_exact_and_validated() {
        assert_eq!(
            parse_origins("http://localhost:3000, https://app.example.com").expect("ok"),
            Some(CorsOrigins::List(vec!["http://localhost:3000".into(), "https://app.example.com".into()]))
        );
        assert_eq!(parse_origins(" ").expect("ok"), None);
        assert_eq!(parse_origins("*").expect("ok"), Some(CorsOrigins::Any));
        for bad in [
            "https://app.example.com/",
            "https://app.example.com/path",
            "https://App.example.com",
            "https://app.example.com:443",
            "app.example.com",
            "ftp://app.example.com",
            "https://user@app.example.com",
            "https://app.example.com?x=1",
            "*,https://app.example.com",
        ] {
            assert!(parse_origins(bad).is_err(), "{bad:?} accepted");
        }
        let e = parse_origins("https://app.example.com/").expect_err("refused");
        assert!(e.contains("\"https://app.example.com\""), "{e}");
    }

    fn args(origins: &str, credentials: &str) -> ServeArgs {
        ServeArgs {
            cors_allowed_origins: Some(origins.into()),
            cors_allow_credentials: Some(credentials.into()),
            ..ServeArgs::default()
        }
    }

    #[test]
    fn credentials_need_explicit_origins() {
        let problems = from_args(&args("*", "true")).expect_err("refused");
        assert!(problems.iter().any(|p| p.variable == "CORS_ALLOW_CREDENTIALS"));
        let problems = from_args(&args("", "true")).expect_err("refused");
        assert!(problems.iter().any(|p| p.variable == "CORS_ALLOW_CREDENTIALS"));
        let ok = from_args(&args("http://localhost:5173", "true")).expect("ok");
        assert!(ok.cors.expect("ok").allow_credentials);
        assert!(from_args(&ServeArgs::default()).expect("ok").cors.is_none());
    }
}
