//! Every route of the server, in one list. Each entry names a handler whose `#[utoipa::path]` annotation is
//! the route's one declaration (path, method, OpenAPI operation, audit action, rate-limit class, minimum role:
//! see [`crate::http::route`]); the router, the OpenAPI document (`openapi`) and the [`RouteTable`] the
//! middleware reads are all built from that list. Middleware order lives in [`crate::http::middleware::stack`].

use std::sync::LazyLock;

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

mod openapi;

use crate::api::{audit, invitations, knowledge, me, members, organizations, session};
use crate::error::{AppError, ErrorCode};
use crate::health;
use crate::http::middleware::{self, Served};
use crate::http::route::RouteTable;
use crate::state::AppState;

/// The declared routes: one `routes!` entry per handler. Full paths, not a router nested at `/api` (a nested
/// route sees its path with the prefix stripped, and stripping it costs a URI rebuild per request).
fn declarations() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(me::get))
        .routes(routes!(session::session))
        .routes(routes!(session::logout))
        .routes(routes!(organizations::list))
        .routes(routes!(organizations::create))
        .routes(routes!(organizations::get))
        .routes(routes!(members::list))
        .routes(routes!(members::update))
        .routes(routes!(members::remove))
        .routes(routes!(invitations::create))
        .routes(routes!(invitations::list))
        .routes(routes!(invitations::revoke))
        .routes(routes!(invitations::mine))
        .routes(routes!(invitations::accept))
        .routes(routes!(invitations::decline))
        .routes(routes!(audit::org_log))
        .routes(routes!(audit::all))
        .routes(routes!(knowledge::list))
        .routes(routes!(knowledge::create))
        .routes(routes!(knowledge::search))
        .routes(routes!(knowledge::get))
        .routes(routes!(knowledge::update))
        .routes(routes!(knowledge::delete))
        .routes(routes!(health::live))
        .routes(routes!(health::ready))
        .routes(routes!(health::detailed))
        .routes(routes!(document))
}

/// What the declarations give: the router (without state), the route table, the served document.
pub(crate) struct Declared {
    router: Router<AppState>,
    table: RouteTable,
    document: Bytes,
}

/// Built once per process: the declarations are code, the same for every app.
static DECLARED: LazyLock<Declared> = LazyLock::new(|| {
    let (router, doc) = declarations().split_for_parts();
    let doc = openapi::finish(doc);
    let table = RouteTable::from_openapi(&doc).unwrap_or_else(|problems| panic!("{problems}"));
    let document = Bytes::from(openapi::to_json(&doc));
    Declared { router, table, document }
});

/// Every declared route and method, with its facts.
pub fn table() -> &'static RouteTable {
    &DECLARED.table
}

/// The OpenAPI document.
#[utoipa::path(get, path = "/api/docs/openapi.json", tag = "docs",
    responses((status = 200, description = "this document", content_type = "application/json")),
    extensions(("x-audit-action" = json!("docs.read")), ("x-rate-limit" = json!("ip"))))]
pub(crate) async fn document() -> impl axum::response::IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], DECLARED.document.clone())
}

/// `/metrics` alone, for `METRICS_BIND_ADDR`.
pub(crate) fn metrics_router(state: AppState) -> Router {
    Router::new().route("/metrics", get(health::scrape)).with_state(state)
}

/// The whole application: the middleware stack around [`routes()`].
pub fn app(state: AppState) -> impl Served + use<> {
    app_with(state, Router::new())
}

/// [`app`] with `extra` routes besides the API's (dev mode's demo page), behind the same stack.
pub(crate) fn app_with(state: AppState, extra: Router) -> impl Served + use<> {
    middleware::stack(routes(state.clone()).merge(extra), &state)
}

/// Every route: the declared ones behind the route steps, `/metrics` (Prometheus text, not part of the
/// API contract; on a listener of its own when `METRICS_BIND_ADDR` is set) and the fallback.
pub(crate) fn routes(state: AppState) -> Router {
    with_route_steps(DECLARED.router.clone(), &state)
        .merge(match state.config.metrics.bind_addr {
            Some(_) => Router::new(),
            None => Router::new().route("/metrics", get(health::scrape)),
        })
        .fallback(not_found)
        .with_state(state)
}

/// `routes` behind the route steps of [`middleware::route_steps`], over the declared routes' [`table`]. Public
/// so the overhead benchmark can wrap a no-op route in exactly these steps.
pub(crate) fn with_route_steps(routes: Router<AppState>, state: &AppState) -> Router<AppState> {
    routes.route_layer(middleware::route_steps(state, table()))
}

async fn not_found() -> AppError {
    AppError::new(ErrorCode::RouteNotFound, "no such route")
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    /// `in.name` of each parameter an operation of the served document declares.
    fn parameters(operation: &Value) -> Vec<String> {
        let name = |p: &Value, key: &str| p[key].as_str().unwrap_or_default().to_owned();
        operation["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| format!("{}.{}", name(p, "in"), name(p, "name")))
            .collect()
    }

    /// Every link of the document points at a declared operation and sets exactly that operation's path
    /// parameters (and no parameter it does not have), so following it makes a complete call.
    #[test]
    fn links_name_declared_operations_and_all_their_path_parameters() {
        let doc: Value = serde_json::from_slice(&super::DECLARED.document).expect("the document is JSON");
        let mut links = 0;
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().expect("a path item") {
                for (status, response) in operation["responses"].as_object().into_iter().flatten() {
                    for (name, link) in response["links"].as_object().into_iter().flatten() {
                        let from = format!("{method} {path} {status} link {name}");
                        let reference =
                            link["operationRef"].as_str().unwrap_or_else(|| panic!("{from}: no operationRef"));
                        let (pointer, target_method) = reference
                            .strip_prefix("#/paths/")
                            .and_then(|r| r.rsplit_once('/'))
                            .unwrap_or_else(|| panic!("{from}: {reference} is not #/paths/<path>/<method>"));
                        let target_path = pointer.replace("%7B", "{").replace("%7D", "}").replace("~1", "/");
                        let target = &doc["paths"][&target_path][target_method];
                        assert!(target.is_object(), "{from}: no operation {target_method} {target_path}");
                        let declared = parameters(target);
                        let set: Vec<&String> =
                            link["parameters"].as_object().into_iter().flatten().map(|(k, _)| k).collect();
                        for parameter in &set {
                            assert!(
                                declared.contains(parameter),
                                "{from}: {target_method} {target_path} has no {parameter}"
                            );
                        }
                        for parameter in declared.iter().filter(|p| p.starts_with("path.")) {
                            assert!(
                                set.contains(&parameter),
                                "{from}: {parameter} of {target_method} {target_path} unset"
                            );
                        }
                        links += 1;
                    }
                }
            }
        }
        assert_eq!(links, 15, "the create and accept operations' links");
    }
}
