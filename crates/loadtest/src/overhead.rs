//! `loadtest overhead`: what the middleware stack costs per request, measured in process.
//!
//! Method: the server's own router (`intellifill::http::routes::router`, the same function the server
//! serves) is driven with `tower::ServiceExt::oneshot`, sequentially, so no socket, no HTTP parsing and no
//! queueing are measured. Against it, the same database work is timed alone on a dedicated connection of the
//! runtime role, with the same statements sent the same way (unnamed statements, the first round trip
//! pipelined). The difference is the cost of everything else: request id, panic catcher, timeout, body
//! limit, rate limits (Redis GCRA script per policy), audit capture, auth (an L1 token-cache hit), the
//! org-context extractor and JSON serialization. Samples of the four series are interleaved so drift affects
//! all alike. Measured twice: with Redis (rate-limit counts in Redis: one loopback round trip per policy)
//! and without (in-process GCRA).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use axum::body::Body;
use axum::extract::ConnectInfo;
use futures::future::{join_all, join3};
use hdrhistogram::Histogram;
use http::Request;
use http_body_util::BodyExt;
use serde::Serialize;
use tokio_postgres::types::Type;
use tower::ServiceExt;
use uuid::Uuid;

use crate::load::Latency;

/// A typed statement parameter, as the server sends them.
type Param<'a> = (&'a (dyn tokio_postgres::types::ToSql + Sync), Type);
use crate::seed;
use crate::stack::{InProcess, Stack};

#[derive(Debug, Clone, clap::Args)]
pub struct OverheadArgs {
    /// Timed requests per series (after the warm-up).
    #[arg(long, default_value_t = 5_000)]
    pub requests: u64,
    /// Untimed requests per series first.
    #[arg(long, default_value_t = 500)]
    pub warmup: u64,
    /// Bound on the whole measurement.
    #[arg(long, default_value_t = 300)]
    pub max_secs: u64,
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Series {
    pub name: String,
    pub latency: Latency,
}

#[derive(Debug, Clone, Serialize)]
pub struct Difference {
    pub route: String,
    pub p50_us: i64,
    pub mean_us: f64,
    pub p90_us: i64,
    pub p99_us: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Variant {
    pub name: String,
    pub series: Vec<Series>,
    /// Full stack minus the database work alone.
    pub overhead: Vec<Difference>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OverheadReport {
    pub date: String,
    pub command: String,
    pub machine: crate::run::Machine,
    pub method: &'static str,
    pub target_us: u64,
    pub variants: Vec<Variant>,
}

const USER_ROW: &str = "SELECT id, email, role, is_active, organization_id FROM users WHERE id = current_user_id()";
const ORG_ACCESS: &str = "SELECT org_status, member_role, member_status FROM org_access($1)";
const SET_CONTEXT: &str = "SELECT set_user_context($1), set_org_context($2), set_config('statement_timeout', $3, true)";
const PAGE: &str = "SELECT id, title, left(content, $5), created_by, created_at, updated_at
               FROM knowledge_sources
              WHERE organization_id = $1
                AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
              ORDER BY created_at DESC, id DESC
              LIMIT $4";

/// The server's request transaction for `GET /api/auth/session` (`list = false`) or the knowledge list.
async fn db_alone(client: &tokio_postgres::Client, user: Uuid, org: Option<Uuid>, list: bool) -> Result<()> {
    let timeout = "10000".to_owned();
    let org_param = org.unwrap_or_default();
    let firsts: Vec<(&str, Vec<Param<'_>>)> = if list {
        vec![(USER_ROW, vec![]), (ORG_ACCESS, vec![(&org_param, Type::UUID)])]
    } else {
        vec![(USER_ROW, vec![])]
    };
    let (begun, context, rows) = join3(
        client.batch_execute("BEGIN"),
        client.query_typed(SET_CONTEXT, &[(&user, Type::UUID), (&org, Type::UUID), (&timeout, Type::TEXT)]),
        join_all(firsts.iter().map(|(sql, params)| client.query_typed(sql, params))),
    )
    .await;
    begun?;
    context?;
    for r in rows {
        r?;
    }
    if list {
        let (after_ts, after_id, limit, excerpt): (Option<chrono::DateTime<chrono::Utc>>, Option<Uuid>, i64, i32) =
            (None, None, 21, 280);
        client
            .query_typed(
                PAGE,
                &[
                    (&org_param, Type::UUID),
                    (&after_ts, Type::TIMESTAMPTZ),
                    (&after_id, Type::UUID),
                    (&limit, Type::INT8),
                    (&excerpt, Type::INT4),
                ],
            )
            .await?;
    }
    client.batch_execute("COMMIT").await?;
    Ok(())
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

async fn oneshot(router: &axum::Router, path: &str, token: &str) -> Result<u16> {
    let mut request = Request::get(path).header("authorization", format!("Bearer {token}")).body(Body::empty())?;
    request.extensions_mut().insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40_000))));
    let response = router.clone().oneshot(request).await.map_err(|e| anyhow!("{e}"))?;
    let status = response.status().as_u16();
    response.into_body().collect().await.map_err(|e| anyhow!("{e}"))?;
    Ok(status)
}

async fn variant(stack: &Stack, args: &OverheadArgs, with_redis: bool, deadline: Instant) -> Result<Variant> {
    let mut settings = stack.settings(4);
    if !with_redis {
        settings.remove("REDIS_URL");
    }
    let server = InProcess::start(&settings).await?;
    let seeded = seed::seed(stack, server.addr, 1, 1, 20).await?;
    let user = &seeded.users[0];
    let router = intellifill::http::routes::router(server.state.clone());
    let (client, connection) = tokio_postgres::connect(&stack.runtime_url, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let list_path = format!("/api/organizations/{}/knowledge", user.org);
    let hello = axum::Router::new()
        .route("/", axum::routing::get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }));
    let names = [
        "hello-world router (oneshot floor)",
        "GET /health (stack floor)",
        "GET /api/auth/session",
        "session transaction alone",
        "GET /api/organizations/{orgId}/knowledge",
        "list transaction alone",
    ];
    let mut hists: Vec<Histogram<u64>> = names.iter().map(|_| histogram()).collect();
    for i in 0..(args.warmup + args.requests) {
        if Instant::now() > deadline {
            break;
        }
        for (k, h) in hists.iter_mut().enumerate() {
            let t0 = Instant::now();
            match k {
                0 => anyhow::ensure!(oneshot(&hello, "/", &user.token).await? == 200, "hello failed"),
                1 => anyhow::ensure!(oneshot(&router, "/health", &user.token).await? == 200, "/health failed"),
                2 => {
                    anyhow::ensure!(oneshot(&router, "/api/auth/session", &user.token).await? == 200, "session failed")
                }
                3 => db_alone(&client, user.id, None, false).await?,
                4 => anyhow::ensure!(oneshot(&router, &list_path, &user.token).await? == 200, "list failed"),
                _ => db_alone(&client, user.id, Some(user.org), true).await?,
            }
            let us = t0.elapsed().as_micros() as u64;
            if i >= args.warmup {
                h.saturating_record(us.max(1));
            }
        }
    }
    drop(router);
    server.stop().await?;
    let series: Vec<Series> =
        names.iter().zip(&hists).map(|(n, h)| Series { name: (*n).to_owned(), latency: Latency::of(h) }).collect();
    let diff = |route: &str, full: &Latency, db: &Latency| Difference {
        route: route.to_owned(),
        p50_us: full.p50_us as i64 - db.p50_us as i64,
        mean_us: ((full.mean_us - db.mean_us) * 10.0).round() / 10.0,
        p90_us: full.p90_us as i64 - db.p90_us as i64,
        p99_us: full.p99_us as i64 - db.p99_us as i64,
    };
    let overhead = vec![
        diff("GET /api/auth/session", &series[2].latency, &series[3].latency),
        diff("GET /api/organizations/{orgId}/knowledge", &series[4].latency, &series[5].latency),
    ];
    Ok(Variant {
        name: if with_redis {
            "with Redis (rate limits in Redis)".into()
        } else {
            "without Redis (in-process rate limits)".into()
        },
        series,
        overhead,
    })
}

pub async fn run(args: OverheadArgs, command: String) -> Result<OverheadReport> {
    let machine = crate::run::machine();
    let date = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let deadline = Instant::now() + Duration::from_secs(args.max_secs);
    eprintln!("[overhead] starting Postgres, Redis, the auth emulator ...");
    let stack = Stack::start(true).await?;
    let mut variants = Vec::new();
    for with_redis in [true, false] {
        eprintln!(
            "[overhead] {} requests per series ({})",
            args.requests,
            if with_redis { "with Redis" } else { "without Redis" }
        );
        variants.push(variant(&stack, &args, with_redis, deadline).await?);
    }
    Ok(OverheadReport {
        date,
        command,
        machine,
        method: "tower oneshot on the server's router (sequential, in process) minus the same transaction on a dedicated runtime-role connection; series interleaved",
        target_us: 50,
        variants,
    })
}

pub fn print(r: &OverheadReport) {
    println!("loadtest overhead, {} ({})", r.date, r.command);
    println!("method: {}", r.method);
    for v in &r.variants {
        println!("== {}", v.name);
        for s in &v.series {
            let l = &s.latency;
            println!(
                "   {:<44} n={} p50 {} us, mean {:.1} us, p90 {} us, p99 {} us, max {} us",
                s.name, l.count, l.p50_us, l.mean_us, l.p90_us, l.p99_us, l.max_us
            );
        }
        for d in &v.overhead {
            println!(
                "   overhead {:<40} p50 {} us, mean {:.1} us, p90 {} us, p99 {} us (target < {} us)",
                d.route, d.p50_us, d.mean_us, d.p90_us, d.p99_us, r.target_us
            );
        }
    }
}
