//! The one integration test binary: every test drives the real HTTP server against real Postgres
//! and Redis started by the test kit, with the GoTrue emulator as the auth service.

mod helpers;

mod api_errors;
mod audit;
mod audit_bounds;
mod auth_basic;
mod auth_pipeline;
mod cli;
mod contract;
mod health;
mod hostile_http;
mod isolation;
mod knowledge;
mod lifecycle;
mod members;
mod observability;
mod org_routes;
mod organizations;
mod ratelimit;
mod scale_out;
mod starvation;
mod tls;
