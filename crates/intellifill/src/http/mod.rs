//! HTTP surface: routes (one file), middleware (ordered in one function), extractors, OpenAPI document.

pub mod client_ip;
pub mod extract;
pub mod middleware;
pub mod openapi;
pub mod request_id;
pub mod routes;
pub mod step;
