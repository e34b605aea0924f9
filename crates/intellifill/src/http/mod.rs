//! HTTP machinery: the server (accept loop and connection limits), each route's declared facts, the
//! middleware stack (ordered in one function) and the request context it resolves once, extractors, request
//! ids. The route list, the router and the OpenAPI document built from it are [`crate::router`].

pub(crate) mod browser;
pub(crate) mod client_ip;
pub(crate) mod context;
pub(crate) mod extract;
pub(crate) mod middleware;
pub(crate) mod request_id;
pub(crate) mod route;
pub(crate) mod server;
pub(crate) mod step;
pub(crate) mod timed;
