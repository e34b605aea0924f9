//! The middleware stack, outermost first, in the one function that orders it, and the steps it is made of.
//!
//! Around the whole router ([`stack`]):
//! 1. request id + error envelope + access log ([`super::request_id`]): every response, even a panic's,
//!    carries `X-Request-ID` and the standard error body;
//! 2. panic catcher: a panicking handler is a 500 `INTERNAL_ERROR`, the process lives on;
//! 3. whole-request timeout: 408 `REQUEST_TIMEOUT`;
//! 4. body size limit for every extractor that reads the body: 413 `PAYLOAD_TOO_LARGE`;
//! 5. [`ResolveRequest`]: the request's facts, once ([`super::context`]: client address, write or not);
//! 6. [`RecordMetrics`]: `http_requests_total` and the duration histogram, for every response;
//! 7. [`PreflightIpLimit`]: the per-ip rate limit ([`crate::ratelimit::per_ip`]) of CORS preflights, which
//!    the next layer answers;
//! 8. CORS ([`super::browser::cors_layer`], when `CORS_ALLOWED_ORIGINS` is set): answers every `OPTIONS`
//!    itself (a preflight: no audit row, no authentication, so never an auth failure or an anomaly; counted
//!    by [`RecordMetrics`], limited by [`PreflightIpLimit`]) and adds the CORS headers to every other response;
//! 9. [`PerIpLimit`]: the per-ip rate limit of every other request, so floods are refused before they cost an
//!    audit row, a token verification or a database connection (behind CORS: a browser can read the 429);
//! 10. [`AuditCapture`]: one audit event per request ([`crate::audit::layer::capture`]), before auth so
//!     failed authentications are audited too.
//!
//! Outermost of all, [`super::browser::SecurityHeadersLayer`] gives every response, the error envelope's
//! included, the security headers of a JSON API.
//!
//! Around each declared route ([`route_steps`], a route layer, so unknown routes are 404, not 401):
//! 0. [`Timed`]: the `Server-Timing` header, when `SERVER_TIMING` is on ([`crate::timing`]);
//! 1. [`ResolveRoute`]: the route's declared facts and its path parameters, once ([`super::route`]);
//! 2. [`Authenticate`]: for routes with a security requirement ([`crate::auth::middleware::authenticate`]);
//! 3. [`PerCallerLimit`]: the user and auth-endpoint limits of the route's class
//!    ([`crate::ratelimit::per_caller`]); the organization's limit follows the membership check (`crate::org`).
//!
//! The stack wraps the router as a whole (tower's `ServiceBuilder::service`), not each route through
//! `Router::layer`, which boxes every route again and clones that box per request. Each group of steps is one
//! [`super::step`] service (a tuple of steps runs in one future): a request pays three boxed futures for the
//! ten steps (the outer steps are two services so the CORS layer can sit between them) (docs/PERFORMANCE.md, "Middleware overhead").

use std::any::Any;
use std::convert::Infallible;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequestParts, RawPathParams, Request};
use axum::response::{IntoResponse, Response};
use futures::FutureExt;
use tower::{Service, ServiceBuilder};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;

use super::context::{PathParams, RequestContext, Route};
use super::request_id::{self, RequestId};
use super::route::RouteTable;
use super::step::StepLayer;
use super::timed::Timed;
use crate::audit::AuditSlot;
use crate::audit::actions::RouteNote;
use crate::auth::middleware::Authentication;
use crate::error::{AppError, ErrorCode};
use crate::flow::{Flow, Keep};
use crate::ratelimit::{KeyParts, RateClass};
use crate::state::AppState;
use crate::timing::Timing;

/// The layers of [`stack`] the overhead benchmark may leave out (`loadtest overhead --drop-layer`), by name.
/// (The outer three change the response body type, so they are always there.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layer {
    BodyLimit,
    /// Steps 5 to 10 of [`stack`].
    Admission,
}

impl Layer {
    #[cfg(feature = "bench")]
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Layer::BodyLimit => "body-limit",
            Layer::Admission => "admission",
        }
    }
}

/// What the server serves, as `axum::serve` takes it: the stack around the routes.
pub trait Served:
    Service<Request, Response = Response, Error = Infallible, Future: Send + 'static> + Clone + Send + Sync + 'static
{
}

impl<T> Served for T where
    T: Service<Request, Response = Response, Error = Infallible, Future: Send + 'static>
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// The whole stack around `routes` (every route, the fallback, the state applied).
pub fn stack(routes: Router, state: &AppState) -> impl Served + use<> {
    stack_with(routes, state, &|_| true)
}

/// [`stack`] with only the layers `keep` accepts, in the same order: the one place the order is written,
/// shared with the overhead benchmark.
pub(crate) fn stack_with(routes: Router, state: &AppState, keep: &dyn Fn(Layer) -> bool) -> impl Served + use<> {
    let http = &state.config.http;
    ServiceBuilder::new()
        .layer(super::browser::SecurityHeadersLayer::new(&state.config.browser))
        .layer(request_id::RequestIdLayer)
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(TimeoutLayer::with_status_code(axum::http::StatusCode::REQUEST_TIMEOUT, http.request_timeout))
        .option_layer(keep(Layer::BodyLimit).then(|| DefaultBodyLimit::max(http.max_body_bytes)))
        .option_layer(
            keep(Layer::Admission)
                .then(|| StepLayer::new((ResolveRequest, RecordMetrics, PreflightIpLimit), state.clone())),
        )
        .option_layer(keep(Layer::Admission).then(|| super::browser::cors_layer(&state.config.browser)).flatten())
        .option_layer(keep(Layer::Admission).then(|| StepLayer::new((PerIpLimit, AuditCapture), state.clone())))
        .service(routes)
}

/// The steps around each route of `table` (the declared routes).
pub(crate) fn route_steps(
    state: &AppState,
    table: &'static RouteTable,
) -> StepLayer<(Timed, ResolveRoute, Authenticate, PerCallerLimit)> {
    StepLayer::new((Timed, ResolveRoute(table), Authenticate, PerCallerLimit), state.clone())
}

/// Declares a step: a unit struct and its [`Step`](crate::http::step::Step) impl, whose body is an async block over `$state`,
/// `$request` and `$rest`.
macro_rules! step {
    ($(#[$doc:meta])* $name:ident, |$state:ident, $request:ident, $rest:ident| $body:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub(crate) struct $name;

        super::step::impl_step!([] $name as _, |$state, $request, $rest| $body);
    };
    ($(#[$doc:meta])* $name:ident($field:ty), |$step:pat, $state:ident, $request:ident, $rest:ident| $body:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub(crate) struct $name(pub(crate) $field);

        super::step::impl_step!([] $name as $step, |$state, $request, $rest| $body);
    };
}

step!(
    /// The request context and the audit notes slot into the extensions.
    ResolveRequest,
    |state, request, rest| {
        let (mut parts, body) = request.into_parts();
        let context = RequestContext::resolve(&parts, &state.config.http.trusted_proxies);
        parts.extensions.insert(context);
        parts.extensions.insert(AuditSlot::default());
        rest(Request::from_parts(parts, body))
    }
);

step!(
    /// Every response counted, by method, route template (or `unmatched`) and status.
    RecordMetrics,
    |state, request, rest| {
        let started = Instant::now();
        let method = request.method().clone();
        let context = RequestContext::of(request.extensions());
        let metrics = &state.http_metrics;
        Flow::then(rest(request), move |response: Response| {
            let route = context.route().map_or("unmatched", |r| r.facts.path);
            metrics.record(&method, route, response.status().as_u16(), started.elapsed().as_secs_f64());
            response
        })
    }
);

step!(
    /// The per-ip rate limit of the requests the CORS layer answers (preflights), charged before it answers
    /// them; every other request is charged by [`PerIpLimit`], behind the CORS layer so a refusal carries the
    /// CORS headers a browser needs to read it.
    PreflightIpLimit,
    |state, request, rest| {
        if !super::browser::answered_by_cors(&state.config.browser, request.method()) {
            return Flow::pass(rest(request));
        }
        let ip = request.extensions().get::<RequestContext>().and_then(RequestContext::client_ip);
        crate::ratelimit::per_ip(&state.rate_limits, ip, request, rest)
    }
);

step!(
    /// The per-ip rate limit.
    PerIpLimit,
    |state, request, rest| {
        let ip = request.extensions().get::<RequestContext>().and_then(RequestContext::client_ip);
        crate::ratelimit::per_ip(&state.rate_limits, ip, request, rest)
    }
);

step!(
    /// One audit event per request.
    AuditCapture,
    |state, request, rest| {
        let context = request.extensions().get::<RequestContext>();
        let (ip, is_write) = context.map_or((None, false), |c| (c.client_ip(), c.is_write()));
        let request_id = request.extensions().get::<RequestId>().map(|r| r.0.clone());
        let client_request_id = request.extensions().get::<request_id::ClientRequestId>().map(|r| r.0.clone());
        let seen = crate::audit::layer::Seen {
            request_id: request_id.as_ref(),
            client_request_id: client_request_id.as_ref(),
            ip,
            is_write,
            max_body_bytes: state.config.http.max_body_bytes,
        };
        crate::audit::layer::capture(&state.audit, seen, request, rest)
    }
);

step!(
    /// The matched route's declaration and path parameters into the request context and the audit notes.
    ResolveRoute(&'static RouteTable),
    |ResolveRoute(table), state, request, rest| {
        let (mut parts, body) = request.into_parts();
        let matched = parts.extensions.get::<axum::extract::MatchedPath>();
        let Some(facts) = matched.and_then(|m| table.get(m.as_str(), &parts.method)) else {
            // A declared path with another method: the method router answers 405 (every route behind these
            // steps is declared, the router being built from the declarations).
            return Flow::pass(rest(Request::from_parts(parts, body)));
        };
        // The extractor only reads the extensions the router put there: ready at once.
        let params = match RawPathParams::from_request_parts(&mut parts, &()).now_or_never() {
            Some(Ok(raw)) => PathParams::of(&raw),
            Some(Err(e)) => {
                return Flow::now(
                    AppError::new(ErrorCode::InvalidId, format!("invalid path parameter: {e}")).into_response(),
                );
            }
            None => return Flow::now(AppError::internal(anyhow::anyhow!("path parameters not ready")).into_response()),
        };
        crate::audit::note(&parts.extensions, |n| {
            n.route = Some(RouteNote { path: facts.path, action: facts.action, entity: facts.entity });
            n.path_entity_id = params.entity();
        });
        let context = match parts.extensions.get::<RequestContext>() {
            Some(context) => context.clone(),
            // A route mounted without the outer steps (a benchmark probe): resolved here.
            None => {
                let context = RequestContext::resolve(&parts, &state.config.http.trusted_proxies);
                parts.extensions.insert(context.clone());
                context
            }
        };
        context.set_route(Route { facts, params });
        Flow::<'_, _, Keep>::pass(rest(Request::from_parts(parts, body)))
    }
);

step!(
    /// Authentication, for routes that declare a security requirement.
    Authenticate,
    |state, request, rest| {
        let context = request.extensions().get::<RequestContext>();
        if !context.and_then(RequestContext::route).is_some_and(|r| r.facts.authenticated) {
            return Flow::<'_, _, Keep>::pass(rest(request));
        }
        let timing = request.extensions().get::<Timing>().cloned();
        let started = Instant::now();
        match crate::auth::middleware::authenticate(&state.auth, request) {
            Authentication::Now(result) => {
                if let Some(timing) = &timing {
                    timing.auth(started.elapsed());
                }
                match result {
                    Ok(request) => Flow::pass(rest(request)),
                    Err(refused) => Flow::now(refused),
                }
            }
            Authentication::Later(authenticated) => Flow::later(async move {
                let result = authenticated.await;
                if let Some(timing) = timing {
                    timing.auth(started.elapsed());
                }
                match result {
                    Ok(request) => rest(request).await,
                    Err(refused) => refused,
                }
            }),
        }
    }
);

step!(
    /// The user and auth-endpoint limits of the route's rate-limit class (none for a request without a
    /// declared route).
    PerCallerLimit,
    |state, request, rest| {
        let context = request.extensions().get::<RequestContext>();
        let class = context.and_then(RequestContext::route).map_or(RateClass::Ip, |r| r.facts.rate);
        let parts = KeyParts {
            user: request.extensions().get::<crate::auth::AuthUser>().map(|u| u.id),
            org: None,
            ip: context.and_then(RequestContext::client_ip),
        };
        crate::ratelimit::per_caller(&state.rate_limits, class, parts, request, rest)
    }
);

fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "unknown panic".to_owned());
    AppError::internal(anyhow::anyhow!("handler panicked: {detail}")).into_response()
}
