//! HTTP machinery: the server (accept loop and connection limits), each route's declared facts, the
//! middleware stack (ordered in one function) and the request context it resolves once, extractors, request
//! ids. The route list, the router and the OpenAPI document built from it are [`crate::router`].

pub mod browser;
pub mod client_ip;
pub mod context;
pub mod extract;
pub mod middleware;
pub mod request_id;
pub mod route;
pub(crate) mod server;
pub mod step;
pub mod timed;
