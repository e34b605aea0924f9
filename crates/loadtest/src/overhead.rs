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
use std::sync::Arc;
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
    /// Which variants to measure: `redis`, `no-redis` or `both`.
    #[arg(long, default_value = "both", value_parser = ["redis", "no-redis", "both"])]
    pub variant: String,
    /// Extra server setting, VAR=VALUE (repeatable), e.g. `RATE_LIMIT_ENABLED=false` to attribute a stage.
    #[arg(long = "server-env", value_parser = crate::run::parse_kv)]
    pub server_env: Vec<(String, String)>,
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

/// CPU time of this process (server, its background tasks and the harness) per request of a block run alone.
#[derive(Debug, Clone, Serialize)]
pub struct CpuCost {
    pub route: String,
    pub requests: u64,
    /// Per request with the stack, and without it (the bare router, or the same database work alone).
    pub full_stack_us: f64,
    pub database_alone_us: f64,
    /// `full_stack_us - database_alone_us`: what the stack costs in CPU.
    pub overhead_us: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Variant {
    pub name: String,
    pub series: Vec<Series>,
    /// Full stack minus the database work alone (wall clock).
    pub overhead: Vec<Difference>,
    /// Full stack minus the database work alone (CPU time of the process).
    pub cpu: Vec<CpuCost>,
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

/// The server's request transaction: the user row (and the membership with `org`), and the knowledge page
/// with `list`.
async fn db_alone(client: &tokio_postgres::Client, user: Uuid, org: Option<Uuid>, list: bool) -> Result<()> {
    let timeout = "10000".to_owned();
    let org_param = org.unwrap_or_default();
    let firsts: Vec<(&str, Vec<Param<'_>>)> = if org.is_some() {
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

/// One request through `router`, in a task of its own on the runtime's workers, as hyper runs a connection.
async fn oneshot(router: &axum::Router, path: &str, token: &str) -> Result<u16> {
    let mut request = Request::get(path).header("authorization", format!("Bearer {token}")).body(Body::empty())?;
    request.extensions_mut().insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40_000))));
    let router = router.clone();
    tokio::spawn(async move {
        let response = router.oneshot(request).await.map_err(|e| anyhow!("{e}"))?;
        let status = response.status().as_u16();
        response.into_body().collect().await.map_err(|e| anyhow!("{e}"))?;
        Ok(status)
    })
    .await?
}

/// The database work alone, in a task of its own too (same scheduling as [`oneshot`]).
async fn db_task(client: &Arc<tokio_postgres::Client>, user: Uuid, org: Option<Uuid>, list: bool) -> Result<()> {
    let client = client.clone();
    tokio::spawn(async move { db_alone(&client, user, org, list).await }).await?
}

/// CPU time this process's threads have run so far (the sum of `/proc/self/task/*/schedstat`, in ns; the
/// runtime's threads live for the whole measurement, so none of the time is lost with an exiting thread).
fn process_cpu() -> Duration {
    let tasks = std::fs::read_dir("/proc/self/task").into_iter().flatten().flatten();
    let ns: u64 = tasks
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(ns)
}

/// One kind of timed request.
#[derive(Debug, Clone, Copy)]
enum Probe {
    /// A bare router answering a tiny JSON: the floor of any request.
    Hello,
    /// `/health`: request id, panic catcher, timeout, body limit, per-ip limit (not audited).
    Health,
    /// The same tiny handler behind every layer an `/api` route has (per-ip limit, audit, auth, per-user
    /// limit, route note): the middleware stack alone.
    Noop,
    /// The same behind the stack at an org-scoped path, with the org-context extractor (`OrgTx`): what the
    /// overhead target is about (rate limit + audit + auth cache hit + org context).
    OrgNoop,
    /// The org no-op's transaction alone (context, user row, membership, commit).
    OrgDb,
    Session,
    /// The session handler alone: the caller (as auth would find it) put in by a bare layer, no other layer.
    SessionHandler,
    SessionDb,
    /// The session's transaction through the server's pool (`Db::begin` / `Tx::commit`), no HTTP.
    SessionPool,
    List,
    ListDb,
}

impl Probe {
    const ALL: [Probe; 11] = [
        Probe::Hello,
        Probe::Health,
        Probe::Noop,
        Probe::OrgNoop,
        Probe::OrgDb,
        Probe::Session,
        Probe::SessionHandler,
        Probe::SessionDb,
        Probe::SessionPool,
        Probe::List,
        Probe::ListDb,
    ];

    fn name(self) -> &'static str {
        match self {
            Probe::Hello => "hello-world router (floor)",
            Probe::Health => "GET /health",
            Probe::Noop => "no-op handler behind the /api stack",
            Probe::OrgNoop => "org-scoped no-op (OrgTx) behind the stack",
            Probe::OrgDb => "org no-op transaction alone",
            Probe::Session => "GET /api/auth/session",
            Probe::SessionHandler => "session handler alone (no middleware)",
            Probe::SessionDb => "session transaction alone",
            Probe::SessionPool => "session transaction through the server's pool",
            Probe::List => "GET /api/organizations/{orgId}/knowledge",
            Probe::ListDb => "list transaction alone",
        }
    }
}

/// What a probe needs.
struct Target<'a> {
    hello: axum::Router,
    stacked: axum::Router,
    handler: axum::Router,
    router: axum::Router,
    client: Arc<tokio_postgres::Client>,
    db: intellifill::db::Db,
    user: &'a seed::SeedUser,
    list_path: String,
    org_noop_path: String,
}

impl Target<'_> {
    async fn run(&self, probe: Probe) -> Result<()> {
        let token = &self.user.token;
        let status = match probe {
            Probe::Hello => oneshot(&self.hello, "/", token).await?,
            Probe::Health => oneshot(&self.router, "/health", token).await?,
            Probe::Noop => oneshot(&self.stacked, "/api/noop", token).await?,
            Probe::OrgNoop => oneshot(&self.stacked, &self.org_noop_path, token).await?,
            Probe::OrgDb => return db_task(&self.client, self.user.id, Some(self.user.org), false).await,
            Probe::Session => oneshot(&self.router, "/api/auth/session", token).await?,
            Probe::SessionHandler => oneshot(&self.handler, "/", token).await?,
            Probe::List => oneshot(&self.router, &self.list_path, token).await?,
            Probe::SessionDb => return db_task(&self.client, self.user.id, None, false).await,
            Probe::ListDb => return db_task(&self.client, self.user.id, Some(self.user.org), true).await,
            Probe::SessionPool => {
                let (db, user) = (self.db.clone(), self.user.id);
                return tokio::spawn(async move {
                    let ctx = intellifill::db::RlsContext { user_id: user, org_id: None };
                    let (tx, _) = db.begin(ctx, &[(USER_ROW, &[])]).await.map_err(|e| anyhow!("{e}"))?;
                    tx.commit().await.map_err(|e| anyhow!("{e}"))
                })
                .await?;
            }
        };
        anyhow::ensure!(status == 200, "{} answered {status}", probe.name());
        Ok(())
    }
}

/// (what is measured, with it, without it)
const PAIRS: [(&str, Probe, Probe); 6] = [
    ("whole stack incl. org context (org-scoped no-op vs its transaction alone)", Probe::OrgNoop, Probe::OrgDb),
    ("the server's pool and Tx vs a plain connection (session transaction)", Probe::SessionPool, Probe::SessionDb),
    ("session handler alone vs its transaction alone", Probe::SessionHandler, Probe::SessionDb),
    ("middleware stack alone (no-op /api handler vs bare router)", Probe::Noop, Probe::Hello),
    ("GET /api/auth/session vs its transaction alone", Probe::Session, Probe::SessionDb),
    ("GET /api/organizations/{orgId}/knowledge vs its transaction alone", Probe::List, Probe::ListDb),
];

/// A handler that needs the organization context and does nothing with it.
async fn org_noop(ctx: intellifill::org::OrgTx) -> Result<axum::Json<serde_json::Value>, intellifill::error::AppError> {
    ctx.tx.commit().await?;
    Ok(axum::Json(serde_json::json!({"status": "ok"})))
}

fn tiny_json() -> axum::routing::MethodRouter<intellifill::state::AppState> {
    axum::routing::get(|| async { axum::Json(serde_json::json!({"status": "ok"})) })
}

async fn variant(stack: &Stack, args: &OverheadArgs, with_redis: bool, deadline: Instant) -> Result<Variant> {
    let mut settings = stack.settings(4);
    if !with_redis {
        settings.remove("REDIS_URL");
    }
    for (var, value) in &args.server_env {
        settings.set(var, value.clone());
    }
    let server = InProcess::start(&settings).await?;
    let seeded = seed::seed(stack, server.addr, 1, 1, 20).await?;
    let state = server.state.clone();
    let (client, connection) = tokio_postgres::connect(&stack.runtime_url, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let api = intellifill::http::routes::api_layers(
        axum::Router::new()
            .route("/noop", tiny_json())
            .route("/organizations/{orgId}/noop", axum::routing::get(org_noop)),
        &state,
    );
    let target = Target {
        hello: axum::Router::new().route("/", tiny_json()).with_state(state.clone()),
        stacked: intellifill::http::middleware::stack(axum::Router::new().nest("/api", api), &state)
            .with_state(state.clone()),
        router: intellifill::http::routes::router(state.clone()),
        handler: {
            let caller = state.auth.verify(&seeded.users[0].token).await.map_err(|e| anyhow!("{e}"))?;
            axum::Router::new()
                .route("/", axum::routing::get(intellifill::api::session::session))
                .layer(axum::middleware::from_fn(
                    move |mut request: axum::extract::Request, next: axum::middleware::Next| {
                        request.extensions_mut().insert(caller.clone());
                        next.run(request)
                    },
                ))
                .with_state(state.clone())
        },
        client: Arc::new(client),
        db: state.db.clone(),
        user: &seeded.users[0],
        list_path: format!("/api/organizations/{}/knowledge", seeded.users[0].org),
        org_noop_path: format!("/api/organizations/{}/noop", seeded.users[0].org),
    };
    let mut hists: Vec<Histogram<u64>> = Probe::ALL.iter().map(|_| histogram()).collect();
    for i in 0..(args.warmup + args.requests) {
        if Instant::now() > deadline {
            break;
        }
        for (probe, h) in Probe::ALL.iter().zip(hists.iter_mut()) {
            let t0 = Instant::now();
            target.run(*probe).await?;
            if i >= args.warmup {
                h.saturating_record((t0.elapsed().as_micros() as u64).max(1));
            }
        }
    }
    let mut cpu = Vec::new();
    for (what, with, without) in PAIRS {
        cpu.push(cpu_cost(&server, &target, args.requests, what, with, without).await?);
    }
    drop(target);
    server.stop().await?;
    let series: Vec<Series> = Probe::ALL
        .iter()
        .zip(&hists)
        .map(|(p, h)| Series { name: p.name().to_owned(), latency: Latency::of(h) })
        .collect();
    let latency = |p: Probe| &series[Probe::ALL.iter().position(|q| q.name() == p.name()).unwrap_or(0)].latency;
    let overhead = PAIRS
        .iter()
        .map(|(what, with, without)| {
            let (full, base) = (latency(*with), latency(*without));
            Difference {
                route: (*what).to_owned(),
                p50_us: full.p50_us as i64 - base.p50_us as i64,
                mean_us: ((full.mean_us - base.mean_us) * 10.0).round() / 10.0,
                p90_us: full.p90_us as i64 - base.p90_us as i64,
                p99_us: full.p99_us as i64 - base.p99_us as i64,
            }
        })
        .collect();
    Ok(Variant {
        cpu,
        name: if with_redis {
            "with Redis (rate limits in Redis)".into()
        } else {
            "without Redis (in-process rate limits)".into()
        },
        series,
        overhead,
    })
}

/// A block of `n` requests of `with`, the audit writer flushed at its end (its work is part of the cost),
/// then a block of `without`; CPU time of the process per request of each.
async fn cpu_cost(
    server: &InProcess,
    target: &Target<'_>,
    n: u64,
    what: &str,
    with: Probe,
    without: Probe,
) -> Result<CpuCost> {
    server.state.audit.flush().await;
    let t0 = process_cpu();
    for _ in 0..n {
        target.run(with).await?;
    }
    server.state.audit.flush().await;
    let full = process_cpu() - t0;
    let t0 = process_cpu();
    for _ in 0..n {
        target.run(without).await?;
    }
    let alone = process_cpu() - t0;
    let per = |d: Duration| (d.as_secs_f64() * 1e6 / n as f64 * 10.0).round() / 10.0;
    Ok(CpuCost {
        route: what.to_owned(),
        requests: n,
        full_stack_us: per(full),
        database_alone_us: per(alone),
        overhead_us: ((per(full) - per(alone)) * 10.0).round() / 10.0,
    })
}

pub async fn run(args: OverheadArgs, command: String) -> Result<OverheadReport> {
    let machine = crate::run::machine();
    let date = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let deadline = Instant::now() + Duration::from_secs(args.max_secs);
    eprintln!("[overhead] starting Postgres, Redis, the auth emulator ...");
    let stack = Stack::start(true).await?;
    let mut variants = Vec::new();
    let wanted = |with_redis: bool| args.variant == "both" || (args.variant == "redis") == with_redis;
    for with_redis in [true, false].into_iter().filter(|w| wanted(*w)) {
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
        method: "tower oneshot on the server's router in a spawned task (sequential, in process) minus the same transaction, also in a spawned task, on a dedicated runtime-role connection; series interleaved. CPU: process CPU time over a block of each alone, audit writer flushed",
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
        for c in &v.cpu {
            println!(
                "   cpu      {:<40} {:.1} us/request (with {:.1}, without {:.1}; {} requests each)",
                c.route, c.overhead_us, c.full_stack_us, c.database_alone_us, c.requests
            );
        }
    }
}
