//! Hooks for the benchmarks (the criterion benches in `benches/` and `loadtest overhead`), behind the `bench`
//! feature: the audit and auth internals they time, and the middleware stack with parts left out.

use axum::Router;

pub use crate::audit::actions::RouteNote;
pub use crate::audit::layer::facts::{RequestFacts, Seen};
pub use crate::audit::sanitize::{Limits, Sanitizer};
pub use crate::audit::{AuditNotes, Auditor};
pub use crate::auth::verify::Authenticator;
use crate::http::middleware::{self, Layer, ResolveRoute, Served};
use crate::http::step::StepLayer;
use crate::state::AppState;

/// The names of the outer layers [`stack_with`] can leave out.
pub const LAYERS: [&str; 2] = [Layer::BodyLimit.name(), Layer::Admission.name()];

/// The server's middleware stack around `routes` with only the outer layers (named as in [`LAYERS`]) that `keep`
/// accepts, in the server's order.
pub fn stack_with(routes: Router, state: &AppState, keep: &dyn Fn(&'static str) -> bool) -> impl Served + use<> {
    middleware::stack_with(routes, state, &|layer| keep(layer.name()))
}

/// `routes` behind the steps the server runs around each declared route (timing, route facts, authentication,
/// per-caller limits).
pub fn with_route_steps(routes: Router<AppState>, state: &AppState) -> Router<AppState> {
    crate::router::with_route_steps(routes, state)
}

/// `routes` behind the route-facts step alone (the declared route and its path parameters, which the org
/// extractor reads), for a handler measured without authentication and limits.
pub fn with_route_facts(routes: Router<AppState>, state: &AppState) -> Router<AppState> {
    routes.route_layer(StepLayer::new(ResolveRoute(crate::router::table()), state.clone()))
}
