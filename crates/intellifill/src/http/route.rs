//! What the server knows about each route, read from the route's one declaration.
//!
//! A route is declared once, by its handler's `#[utoipa::path]` annotation: path, method, parameters, bodies
//! and responses (the OpenAPI operation), plus these vendor extensions, which the router, the audit trail and
//! the rate limits are driven by:
//!
//! | extension | values | used for |
//! | --- | --- | --- |
//! | `x-audit-action` | `knowledge.create`, ... (required) | the audit row's `action` |
//! | `x-audit-entity` | `knowledge_source`, ... (optional) | the audit row's `entity_type` |
//! | `x-rate-limit` | `ip`, `user`, `auth`, `org-read`, `org-write` (required) | which policies charge the request |
//! | `x-min-role` | `VIEWER`, `MEMBER`, `ADMIN`, `OWNER`, `PLATFORM_ADMIN` (optional) | documentation and the route walk (the handler's extractor enforces it) |
//!
//! A route needs a caller when its operation has a `security` requirement. [`RouteTable::from_openapi`]
//! refuses an operation that lacks a required extension or has an unknown value, naming it, so a route cannot
//! be added without its audit action and rate-limit class (the router is built from the same declarations).

use rustc_hash::FxHashMap;

use axum::http::Method;
use utoipa::openapi::OpenApi;
use utoipa::openapi::path::{HttpMethod, Operation};

pub(crate) use crate::ratelimit::RateClass;

pub(crate) const AUDIT_ACTION: &str = "x-audit-action";
pub(crate) const AUDIT_ENTITY: &str = "x-audit-entity";
pub(crate) const RATE_LIMIT: &str = "x-rate-limit";
pub(crate) const MIN_ROLE: &str = "x-min-role";

/// The least a caller must hold to use a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MinRole {
    Viewer,
    Member,
    Admin,
    Owner,
    PlatformAdmin,
}

impl MinRole {
    fn parse(s: &str) -> Option<MinRole> {
        Some(match s {
            "VIEWER" => MinRole::Viewer,
            "MEMBER" => MinRole::Member,
            "ADMIN" => MinRole::Admin,
            "OWNER" => MinRole::Owner,
            "PLATFORM_ADMIN" => MinRole::PlatformAdmin,
            _ => return None,
        })
    }

    /// The organization role this minimum names (`None` for the platform role).
    pub fn org_role(self) -> Option<&'static str> {
        match self {
            MinRole::Viewer => Some("VIEWER"),
            MinRole::Member => Some("MEMBER"),
            MinRole::Admin => Some("ADMIN"),
            MinRole::Owner => Some("OWNER"),
            MinRole::PlatformAdmin => None,
        }
    }
}

/// The names path parameters may have (`super::context::PathParams` keeps each in a place of its own).
pub(crate) const PARAM_NAMES: [&str; 3] = ["orgId", "userId", "id"];

/// One route and method, as declared.
#[derive(Debug, Clone)]
pub struct RouteFacts {
    /// The path template, as the router matches it (`/api/organizations/{orgId}/knowledge`).
    pub path: &'static str,
    pub method: Method,
    pub action: &'static str,
    pub entity: Option<&'static str>,
    pub rate: RateClass,
    pub min_role: Option<MinRole>,
    /// The operation has a security requirement: the request is authenticated before the handler.
    pub authenticated: bool,
    /// The operation takes a request body.
    pub has_body: bool,
}

impl RouteFacts {
    /// Whether the route's path names an organization.
    pub fn org_scoped(&self) -> bool {
        self.path.contains("{orgId}")
    }
}

/// Every declared route and method.
#[derive(Debug)]
pub struct RouteTable {
    routes: Vec<RouteFacts>,
    /// Looked up on every request by the matched template: FxHash, the keys being the server's own strings.
    by_path: FxHashMap<&'static str, Vec<usize>>,
}

/// An operation's method, as axum's.
fn method_of(method: &HttpMethod) -> Method {
    match method {
        HttpMethod::Get => Method::GET,
        HttpMethod::Post => Method::POST,
        HttpMethod::Put => Method::PUT,
        HttpMethod::Delete => Method::DELETE,
        HttpMethod::Options => Method::OPTIONS,
        HttpMethod::Head => Method::HEAD,
        HttpMethod::Patch => Method::PATCH,
        HttpMethod::Trace => Method::TRACE,
    }
}

/// Every operation of `doc` with its path and method.
pub(crate) fn operations(doc: &OpenApi) -> impl Iterator<Item = (&str, HttpMethod, &Operation)> {
    doc.paths.paths.iter().flat_map(|(path, item)| {
        [
            (HttpMethod::Get, &item.get),
            (HttpMethod::Post, &item.post),
            (HttpMethod::Put, &item.put),
            (HttpMethod::Patch, &item.patch),
            (HttpMethod::Delete, &item.delete),
            (HttpMethod::Head, &item.head),
            (HttpMethod::Options, &item.options),
            (HttpMethod::Trace, &item.trace),
        ]
        .into_iter()
        .filter_map(move |(method, op)| op.as_ref().map(|op| (path.as_str(), method, op)))
    })
}

/// Kept for the life of the process: the table is built once from the declarations (see
/// `crate::router`) and its strings are read on every request.
fn leak(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

impl RouteTable {
    /// The facts of every operation of `doc`; an error names each operation whose declaration is incomplete.
    pub fn from_openapi(doc: &OpenApi) -> Result<RouteTable, String> {
        let mut routes = Vec::new();
        let mut problems = Vec::new();
        for (path, method, op) in operations(doc) {
            let method = method_of(&method);
            let ext = |name: &str| op.extensions.as_ref().and_then(|e| e.get(name)).and_then(|v| v.as_str());
            let mut problem = |what: String| problems.push(format!("{method} {path}: {what}"));
            let action = match ext(AUDIT_ACTION) {
                Some(a) if !a.is_empty() => a,
                _ => {
                    problem(format!("no {AUDIT_ACTION}"));
                    continue;
                }
            };
            let Some(rate) = ext(RATE_LIMIT).and_then(RateClass::parse) else {
                problem(format!("{RATE_LIMIT} missing or not one of ip, user, auth, org-read, org-write"));
                continue;
            };
            let min_role = match ext(MIN_ROLE) {
                None => None,
                Some(r) => match MinRole::parse(r) {
                    Some(r) => Some(r),
                    None => {
                        problem(format!("{MIN_ROLE} {r:?} is not a role"));
                        continue;
                    }
                },
            };
            let unknown_param = path
                .split('/')
                .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
                .find(|name| !PARAM_NAMES.contains(name));
            if let Some(name) = unknown_param {
                problem(format!("path parameter {{{name}}} is not one of {:?}", PARAM_NAMES));
                continue;
            }
            let authenticated = op.security.as_ref().is_some_and(|s| !s.is_empty());
            if authenticated == (rate == RateClass::Ip) {
                problem(format!("{RATE_LIMIT} ip is for public routes only, and every public route is ip"));
                continue;
            }
            let write = !matches!(method, Method::GET | Method::HEAD);
            if (rate == RateClass::OrgWrite && !write) || (rate == RateClass::OrgRead && write) {
                problem(format!("{RATE_LIMIT} {} does not fit the method", ext(RATE_LIMIT).unwrap_or_default()));
                continue;
            }
            routes.push(RouteFacts {
                path: leak(path),
                method,
                action: leak(action),
                entity: ext(AUDIT_ENTITY).map(leak),
                rate,
                min_role,
                authenticated,
                has_body: op.request_body.is_some(),
            });
        }
        let mut seen = std::collections::HashSet::new();
        for r in &routes {
            if !seen.insert(r.action) {
                problems.push(format!("{} {}: {AUDIT_ACTION} {} is used by another route", r.method, r.path, r.action));
            }
        }
        if !problems.is_empty() {
            return Err(format!("incomplete route declarations:\n  {}", problems.join("\n  ")));
        }
        let mut by_path: FxHashMap<&'static str, Vec<usize>> = FxHashMap::default();
        for (i, r) in routes.iter().enumerate() {
            by_path.entry(r.path).or_default().push(i);
        }
        Ok(RouteTable { routes, by_path })
    }

    /// The facts of `method` on the route template `path`.
    pub fn get(&self, path: &str, method: &Method) -> Option<&RouteFacts> {
        self.by_path.get(path)?.iter().map(|&i| &self.routes[i]).find(|r| r.method == *method)
    }

    /// Every declared route and method.
    pub fn iter(&self) -> impl Iterator<Item = &RouteFacts> {
        self.routes.iter()
    }
}
