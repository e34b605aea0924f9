//! The demo page `intellifill dev` serves at the API's root (never `serve`): static HTML and JS with the
//! vendored supabase-js (`assets/demo/VENDORED.md`), and `dev-config.json` telling the page where the API and
//! the auth service are.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

const INDEX: &str = include_str!("../../assets/demo/index.html");
const DEMO_JS: &str = include_str!("../../assets/demo/demo.js");
const SUPABASE_JS: &str = include_str!("../../assets/demo/supabase.js");

/// What the page reads from `dev-config.json`.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DemoConfig {
    pub api: String,
    pub auth: String,
    pub anon_key: String,
    pub acme_id: uuid::Uuid,
    pub demo_users: Vec<String>,
}

fn asset(content_type: &'static str, body: &'static str, csp: Option<HeaderValue>) -> Response {
    let mut response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    if let Some(csp) = csp {
        response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    response
}

/// The page's routes, merged into the dev server's router (or served on their own, from another origin than
/// the API, by the browser test).
pub fn routes(config: DemoConfig) -> Router {
    // The page's own policy (the API's is `default-src 'none'`): its scripts from here, calls to the API and
    // the auth service only (the API is named: the page may be served from another origin, as the browser
    // test does).
    let csp = format!(
        "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self' {} {}; \
         form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        config.api, config.auth
    );
    let csp = HeaderValue::from_str(&csp).expect("ascii urls");
    let json = serde_json::to_string(&config).expect("serializable");
    Router::new()
        .route("/", get(move || async move { asset("text/html; charset=utf-8", INDEX, Some(csp)) }))
        .route("/demo.js", get(|| async { asset("text/javascript; charset=utf-8", DEMO_JS, None) }))
        .route("/supabase.js", get(|| async { asset("text/javascript; charset=utf-8", SUPABASE_JS, None) }))
        .route("/dev-config.json", get(move || async move { ([(header::CONTENT_TYPE, "application/json")], json) }))
}
