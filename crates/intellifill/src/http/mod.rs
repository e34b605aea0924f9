//! HTTP surface: the server (accept loop and connection limits), the route list and each route's declared
//! facts, the middleware stack (ordered in one function) and the request context it resolves once,
//! extractors, the OpenAPI document.

pub mod client_ip;
pub mod context;
pub mod extract;
pub mod middleware;
pub mod openapi;
pub mod request_id;
pub mod route;
pub mod routes;
pub(crate) mod server;
pub mod step;
