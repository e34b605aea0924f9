//! The one integration test binary: every test drives the real HTTP server against real Postgres
//! and Redis started by the test kit, with the GoTrue emulator as the auth service.

#[macro_use]
mod helpers;

mod api_errors;
mod api_key_forms;
mod audit;
mod audit_atomic;
mod audit_bounds;
mod audit_partitions;
mod audit_seal;
mod audit_seal_restarts;
mod auth_basic;
mod auth_cache_trust;
mod auth_clocks;
mod auth_misconfig;
mod auth_pipeline;
mod browser;
mod cli;
mod contract;
mod cors;
mod health;
mod hostile_http;
mod invitations;
mod isolation;
mod knowledge;
mod lifecycle;
mod logout_skew;
mod members;
mod observability;
mod org_routes;
mod organizations;
mod pipelined_open;
mod pipelined_reads;
mod ratelimit;
mod redis_tls;
mod roles_sql;
mod scale_out;
mod server_timing;
mod session_end;
mod starvation;
mod statements;
mod tls;
mod user_lifecycle;
