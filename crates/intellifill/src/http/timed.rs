//! The route step of the `Server-Timing` header ([`crate::timing`]).

use std::time::Instant;

use axum::response::Response;

use super::step::impl_step;
use crate::flow::Flow;
use crate::timing::Timing;

/// The first route step: a [`Timing`] for the request when `SERVER_TIMING` is on, and the header on the way out.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timed;

impl_step!([] Timed as Timed, |state, request, rest| {
    if !state.config.metrics.server_timing {
        return Flow::pass(rest(request));
    }
    let started = Instant::now();
    let timing = Timing::default();
    let mut request = request;
    request.extensions_mut().insert(timing.clone());
    Flow::then(rest(request), move |mut response: Response| {
        response.headers_mut().insert("server-timing", timing.header(started.elapsed()));
        response
    })
});
