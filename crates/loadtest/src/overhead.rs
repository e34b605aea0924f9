//! `loadtest overhead`: what the middleware stack costs per request, measured in process.
//!
//! Method: the server's own router (`intellifill::http::routes::router`, the same function the server
//! serves) is driven with `tower::ServiceExt::oneshot`, sequentially, so no socket, no HTTP parsing and no
//! queueing are measured. Against it, the same database work is timed alone on a dedicated connection of the
//! runtime role, with the same statements sent the same way (unnamed statements, the first round trip
//! pipelined). The difference is the cost of everything else: request id, panic catcher, timeout, body
//! limit, rate limits (leased from Redis, or in process), audit capture, auth (an L1 token-cache hit), the
//! org-context extractor and JSON serialization. Each pair is measured in rounds of two blocks (with, without;
//! the order alternates), and the median over the rounds of the blocks' difference is reported: drift, the
//! order of the blocks and a round disturbed by something else on this small VM cancel out (a first version
//! interleaved single requests and swung by +-40 us between runs). Measured with Redis (rate-limit leases)
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
use intellifill::state::AppState;
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
    /// Rounds per pair: each round is a block of the probe with the stack and a block of the one without,
    /// in alternating order.
    #[arg(long, default_value_t = 20)]
    pub rounds: u64,
    /// Requests per block.
    #[arg(long, default_value_t = 200)]
    pub block: u64,
    /// Untimed requests of every probe first (with `--only`: of that probe).
    #[arg(long, default_value_t = 300)]
    pub warmup: u64,
    /// Before every timed request, overwrite a buffer of this many KiB (outside the timing): the CPU caches
    /// then hold no part of the previous request, as after a database round trip or another tenant's
    /// request. 0 = off.
    #[arg(long, default_value_t = 0)]
    pub thrash_kib: usize,
    /// Leave a layer out of the stack the no-op probes run behind, to attribute its cost (repeatable):
    /// request-id, panic, timeout, body-limit, ip-limit, audit, note-route, auth (the caller is then put in
    /// by a bare layer), user-limit.
    #[arg(long = "drop-layer", value_parser = LAYERS)]
    pub drop_layers: Vec<String>,
    /// With `--only`: timed requests of that probe.
    #[arg(long, default_value_t = 5_000)]
    pub requests: u64,
    /// Bound on the whole measurement.
    #[arg(long, default_value_t = 300)]
    pub max_secs: u64,
    /// Which variants to measure: `redis`, `no-redis` or `both`.
    #[arg(long, default_value = "both", value_parser = ["redis", "no-redis", "both"])]
    pub variant: String,
    /// Extra server setting, VAR=VALUE (repeatable), e.g. `RATE_LIMIT_ENABLED=false` to attribute a stage.
    #[arg(long = "server-env", value_parser = crate::run::parse_kv)]
    pub server_env: Vec<(String, String)>,
    /// Run one probe alone (e.g. `org-noop`), for profiling it with `perf`; the others and the CPU blocks
    /// are skipped.
    #[arg(long, value_parser = Probe::parse)]
    pub only: Option<Probe>,
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Series {
    pub name: String,
    pub latency: Latency,
}

/// One pair's difference (with the stack minus without it), from alternating blocks.
#[derive(Debug, Clone, Serialize)]
pub struct Difference {
    pub route: String,
    pub rounds: u64,
    /// Timed requests of each side.
    pub requests: u64,
    /// Median over the rounds of the blocks' p50 difference, and the rounds' quartiles of it.
    pub p50_us: i64,
    pub p50_q1_us: i64,
    pub p50_q3_us: i64,
    /// Median over the rounds of the blocks' mean and p90 differences.
    pub mean_us: f64,
    pub p90_us: i64,
    /// CPU time of the process per request (all threads: server, its background tasks, the harness; the
    /// audit writer flushed at the end of every block so its work lands in the block that caused it).
    pub cpu_with_us: f64,
    pub cpu_without_us: f64,
    pub cpu_us: f64,
    /// Thread context switches per request, each side.
    pub switches_with: f64,
    pub switches_without: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Variant {
    pub name: String,
    /// Every probe's latency over all its timed blocks.
    pub series: Vec<Series>,
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

/// Context switches of this process's threads so far (voluntary + involuntary, `/proc/self/task/*/status`):
/// how often a request parks and wakes a thread, which the CPU time alone does not show.
fn process_switches() -> u64 {
    let tasks = std::fs::read_dir("/proc/self/task").into_iter().flatten().flatten();
    tasks
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .flat_map(|s| {
            s.lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}

/// One kind of timed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
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
    /// The org no-op handler alone: the caller put in by a bare layer, no other layer.
    OrgHandler,
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
    const ALL: [Probe; 12] = [
        Probe::Hello,
        Probe::Health,
        Probe::Noop,
        Probe::OrgNoop,
        Probe::OrgHandler,
        Probe::OrgDb,
        Probe::Session,
        Probe::SessionHandler,
        Probe::SessionDb,
        Probe::SessionPool,
        Probe::List,
        Probe::ListDb,
    ];

    /// The probe's command-line name: its variant in kebab case (`org-noop`).
    fn key(self) -> String {
        let mut key = String::new();
        for (i, c) in format!("{self:?}").chars().enumerate() {
            if c.is_ascii_uppercase() && i > 0 {
                key.push('-');
            }
            key.push(c.to_ascii_lowercase());
        }
        key
    }

    fn parse(s: &str) -> Result<Probe, String> {
        Probe::ALL.into_iter().find(|p| p.key() == s).ok_or_else(|| {
            let keys: Vec<String> = Probe::ALL.iter().map(|p| p.key()).collect();
            format!("unknown probe {s:?}; one of {}", keys.join(", "))
        })
    }

    fn name(self) -> &'static str {
        match self {
            Probe::Hello => "hello-world router (floor)",
            Probe::Health => "GET /health",
            Probe::Noop => "no-op handler behind the /api stack",
            Probe::OrgNoop => "org-scoped no-op (OrgTx) behind the stack",
            Probe::OrgDb => "org no-op transaction alone",
            Probe::Session => "GET /api/auth/session",
            Probe::SessionHandler => "session handler alone (no middleware)",
            Probe::OrgHandler => "org no-op handler alone (no middleware)",
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
            Probe::OrgHandler => oneshot(&self.handler, &self.org_noop_path, token).await?,
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
const PAIRS: [(&str, Probe, Probe); 7] = [
    ("whole stack incl. org context (org-scoped no-op vs its transaction alone)", Probe::OrgNoop, Probe::OrgDb),
    ("the server's pool and Tx vs a plain connection (session transaction)", Probe::SessionPool, Probe::SessionDb),
    ("session handler alone vs its transaction alone", Probe::SessionHandler, Probe::SessionDb),
    ("org no-op handler alone vs its transaction alone", Probe::OrgHandler, Probe::OrgDb),
    ("middleware stack alone (no-op /api handler vs bare router)", Probe::Noop, Probe::Hello),
    ("GET /api/auth/session vs its transaction alone", Probe::Session, Probe::SessionDb),
    ("GET /api/organizations/{orgId}/knowledge vs its transaction alone", Probe::List, Probe::ListDb),
];

/// A handler that needs the organization context and does nothing with it.
async fn org_noop(ctx: intellifill::org::OrgTx) -> Result<axum::Json<serde_json::Value>, intellifill::error::AppError> {
    ctx.tx.commit().await?;
    Ok(axum::Json(serde_json::json!({"status": "ok"})))
}

const LAYERS: [&str; 9] =
    ["request-id", "panic", "timeout", "body-limit", "ip-limit", "audit", "note-route", "auth", "user-limit"];

/// The no-op routes behind the server's stack (`http::middleware::stack` and `http::routes::api_layers`), or,
/// with `--drop-layer`, behind the same layers in the same order without the dropped ones.
fn stacked(
    api: axum::Router<AppState>,
    state: &AppState,
    caller: &intellifill::auth::AuthUser,
    dropped: &[String],
) -> axum::Router {
    use axum::middleware::{from_fn, from_fn_with_state};
    if dropped.is_empty() {
        let api = intellifill::http::routes::api_layers(api, state);
        return intellifill::http::middleware::stack(axum::Router::new().nest("/api", api), state)
            .with_state(state.clone());
    }
    let keep = |layer: &str| !dropped.iter().any(|d| d == layer);
    let mut api = api;
    if keep("user-limit") {
        api = api.route_layer(from_fn_with_state(state.clone(), intellifill::ratelimit::api));
    }
    if keep("auth") {
        api = api.route_layer(from_fn_with_state(state.clone(), intellifill::auth::middleware::require_auth));
    } else {
        let caller = caller.clone();
        api = api.route_layer(from_fn(move |mut request: axum::extract::Request, next: axum::middleware::Next| {
            request.extensions_mut().insert(caller.clone());
            next.run(request)
        }));
    }
    if keep("note-route") {
        api = api.route_layer(from_fn(intellifill::audit::layer::note_route));
    }
    let mut router = axum::Router::new().nest("/api", api);
    if keep("audit") {
        router = router.layer(from_fn_with_state(state.clone(), intellifill::audit::layer::capture));
    }
    if keep("ip-limit") {
        router = router.layer(from_fn_with_state(state.clone(), intellifill::ratelimit::global));
    }
    if keep("body-limit") {
        router = router.layer(axum::extract::DefaultBodyLimit::max(state.config.http.max_body_bytes));
    }
    if keep("timeout") {
        router = router.layer(tower_http::timeout::TimeoutLayer::with_status_code(
            http::StatusCode::REQUEST_TIMEOUT,
            state.config.http.request_timeout,
        ));
    }
    if keep("panic") {
        router = router.layer(tower_http::catch_panic::CatchPanicLayer::new());
    }
    if keep("request-id") {
        router = router.layer(from_fn(intellifill::http::request_id::layer));
    }
    router.with_state(state.clone())
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
    let caller = state.auth.verify(&seeded.users[0].token).await.map_err(|e| anyhow!("{e}"))?;
    let api = axum::Router::new()
        .route("/noop", tiny_json())
        .route("/organizations/{orgId}/noop", axum::routing::get(org_noop));
    let target = Target {
        hello: axum::Router::new().route("/", tiny_json()).with_state(state.clone()),
        stacked: stacked(api, &state, &caller, &args.drop_layers),
        router: intellifill::http::routes::router(state.clone()),
        handler: {
            let caller = caller.clone();
            axum::Router::new()
                .route("/", axum::routing::get(intellifill::api::session::session))
                .route("/api/organizations/{orgId}/noop", axum::routing::get(org_noop))
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
    let result = match args.only {
        Some(only) => alone(&target, args, only, deadline).await,
        None => pairs(&server, &target, args, deadline).await,
    };
    drop(target);
    server.stop().await?;
    let (series, overhead) = result?;
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

/// `--only`: one probe, sequentially, for a profiler attached to the process.
async fn alone(
    target: &Target<'_>,
    args: &OverheadArgs,
    probe: Probe,
    deadline: Instant,
) -> Result<(Vec<Series>, Vec<Difference>)> {
    let mut h = histogram();
    let mut thrash = Thrash::new(args.thrash_kib);
    for i in 0..(args.warmup + args.requests) {
        if Instant::now() > deadline {
            break;
        }
        thrash.run();
        let t0 = Instant::now();
        target.run(probe).await?;
        if i >= args.warmup {
            h.saturating_record((t0.elapsed().as_micros() as u64).max(1));
        }
    }
    Ok((vec![Series { name: probe.name().to_owned(), latency: Latency::of(&h) }], Vec::new()))
}

/// `--thrash-kib`: a buffer overwritten before each timed request.
struct Thrash {
    buffer: Vec<u8>,
    round: u8,
}

impl Thrash {
    fn new(kib: usize) -> Thrash {
        Thrash { buffer: vec![0; kib * 1024], round: 0 }
    }

    fn run(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        self.round = self.round.wrapping_add(1);
        self.buffer.fill(self.round);
        std::hint::black_box(&self.buffer);
    }
}

/// What one block of a probe measured.
struct Block {
    latency: Histogram<u64>,
    cpu: Duration,
    switches: u64,
}

/// `n` requests of `probe` in a row; the audit writer is flushed before the clocks stop, so the rows the block
/// caused are written in it.
async fn block(server: &InProcess, target: &Target<'_>, probe: Probe, n: u64, thrash: &mut Thrash) -> Result<Block> {
    let mut latency = histogram();
    let (cpu0, switches0) = (process_cpu(), process_switches());
    for _ in 0..n {
        thrash.run();
        let t0 = Instant::now();
        target.run(probe).await?;
        latency.saturating_record((t0.elapsed().as_micros() as u64).max(1));
    }
    server.state.audit.flush().await;
    Ok(Block { latency, cpu: process_cpu() - cpu0, switches: process_switches() - switches0 })
}

/// The median and quartiles of `values` (not empty).
fn quartiles(values: &mut [f64]) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    (at(0.25), at(0.5), at(0.75))
}

/// Every pair as alternating blocks: drift and the order within a round cancel out, and the median over the
/// rounds ignores a round disturbed by something else on the machine.
async fn pairs(
    server: &InProcess,
    target: &Target<'_>,
    args: &OverheadArgs,
    deadline: Instant,
) -> Result<(Vec<Series>, Vec<Difference>)> {
    for probe in Probe::ALL {
        for _ in 0..args.warmup {
            target.run(probe).await?;
        }
    }
    let mut totals: Vec<Histogram<u64>> = Probe::ALL.iter().map(|_| histogram()).collect();
    let total = |p: Probe| Probe::ALL.iter().position(|q| *q == p).unwrap_or(0);
    let mut differences = Vec::new();
    let mut thrash = Thrash::new(args.thrash_kib);
    for (what, with, without) in PAIRS {
        let (mut p50, mut mean, mut p90) = (Vec::new(), Vec::new(), Vec::new());
        let (mut cpu, mut switches, mut requests) = ([Duration::ZERO; 2], [0u64; 2], 0);
        for round in 0..args.rounds {
            if Instant::now() > deadline {
                break;
            }
            let order = if round % 2 == 0 { [(0, with), (1, without)] } else { [(1, without), (0, with)] };
            let mut blocks: [Option<Block>; 2] = [None, None];
            for (side, probe) in order {
                let b = block(server, target, probe, args.block, &mut thrash).await?;
                totals[total(probe)].add(&b.latency)?;
                cpu[side] += b.cpu;
                switches[side] += b.switches;
                blocks[side] = Some(b);
            }
            let [Some(w), Some(wo)] = &blocks else { unreachable!("both sides ran") };
            let (w, wo) = (&w.latency, &wo.latency);
            p50.push(w.value_at_quantile(0.5) as f64 - wo.value_at_quantile(0.5) as f64);
            p90.push(w.value_at_quantile(0.9) as f64 - wo.value_at_quantile(0.9) as f64);
            mean.push(w.mean() - wo.mean());
            requests += args.block;
        }
        anyhow::ensure!(requests > 0, "no time left to measure {what}");
        let per = |d: Duration| (d.as_secs_f64() * 1e6 / requests as f64 * 10.0).round() / 10.0;
        let per_switch = |n: u64| (n as f64 / requests as f64 * 100.0).round() / 100.0;
        let (q1, median, q3) = quartiles(&mut p50);
        differences.push(Difference {
            route: what.to_owned(),
            rounds: p50.len() as u64,
            requests,
            p50_us: median as i64,
            p50_q1_us: q1 as i64,
            p50_q3_us: q3 as i64,
            mean_us: (quartiles(&mut mean).1 * 10.0).round() / 10.0,
            p90_us: quartiles(&mut p90).1 as i64,
            cpu_with_us: per(cpu[0]),
            cpu_without_us: per(cpu[1]),
            cpu_us: ((per(cpu[0]) - per(cpu[1])) * 10.0).round() / 10.0,
            switches_with: per_switch(switches[0]),
            switches_without: per_switch(switches[1]),
        });
    }
    let series = Probe::ALL
        .iter()
        .zip(&totals)
        .filter(|(_, h)| !h.is_empty())
        .map(|(p, h)| Series { name: p.name().to_owned(), latency: Latency::of(h) })
        .collect();
    Ok((series, differences))
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
            "[overhead] {} rounds of 2 x {} requests per pair ({})",
            args.rounds,
            args.block,
            if with_redis { "with Redis" } else { "without Redis" }
        );
        variants.push(variant(&stack, &args, with_redis, deadline).await?);
    }
    Ok(OverheadReport {
        date,
        command,
        machine,
        method: "tower oneshot on the server's router in a spawned task (sequential, in process) against the same transaction, also in a spawned task, on a dedicated runtime-role connection; per pair, rounds of two blocks in alternating order, the median over the rounds of the blocks' differences. CPU: process CPU time and context switches over the blocks, audit writer flushed at the end of each",
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
                "   overhead {:<40} p50 {} us (rounds' quartiles {}..{}), mean {:.1} us, p90 {} us (target < {} us); \
                 cpu {:.1} us/request ({:.1} vs {:.1}); context switches/request {:.2} vs {:.2}; {} rounds, {} requests each side",
                d.route,
                d.p50_us,
                d.p50_q1_us,
                d.p50_q3_us,
                d.mean_us,
                d.p90_us,
                r.target_us,
                d.cpu_us,
                d.cpu_with_us,
                d.cpu_without_us,
                d.switches_with,
                d.switches_without,
                d.rounds,
                d.requests
            );
        }
    }
}
