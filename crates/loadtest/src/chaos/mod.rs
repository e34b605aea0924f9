//! `loadtest chaos <scenario>`: a fault injected under load, with a PASS/FAIL verdict per expectation.
//!
//! The server runs in this process (its state is read directly: breaker, stores, pool, audit pipeline), except
//! in `flood`, whose server is a child process so that its memory and CPU are its own (see `flood`).
//! The load: `concurrency` workers with cached tokens (each a keep-alive connection, listing knowledge), a
//! stream of brand-new tokens (a fresh sign-in every 50 ms, each used once: a token-cache miss that needs the
//! auth service), and for pool starvation, probes of `/health` and `/metrics`. A monitor samples the server's
//! state every 50 ms. Timeline: a quarter of the duration healthy, half under the fault, then recovery
//! (bounded).
//!
//! This module holds the command, the scenario list and the harness every scenario shares (load, monitor,
//! verdicts); each scenario's fault and expectations live in its own file.

mod auth;
mod flood;
mod pool_starvation;
mod postgres_restart;
mod redis_restart;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use http::{HeaderValue, Method};
use intellifill::AppState;
use serde::Serialize;
use serde_json::Value;

use crate::client::{Conn, bearer};
use crate::seed::{self, PASSWORD, Seeded};
use crate::stack::{InProcess, Settings, Stack};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Scenario {
    AuthKilled,
    AuthSlow,
    AuthFlaky,
    AuthFlapping,
    RedisRestart,
    PostgresRestart,
    PoolStarvation,
    Flood,
    All,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::AuthKilled => "auth-killed",
            Scenario::AuthSlow => "auth-slow",
            Scenario::AuthFlaky => "auth-flaky",
            Scenario::AuthFlapping => "auth-flapping",
            Scenario::RedisRestart => "redis-restart",
            Scenario::PostgresRestart => "postgres-restart",
            Scenario::PoolStarvation => "pool-starvation",
            Scenario::Flood => "flood",
            Scenario::All => "all",
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ChaosArgs {
    #[arg(value_enum)]
    pub scenario: Scenario,
    /// Healthy + fault time of each scenario (recovery comes on top, bounded).
    #[arg(long, default_value_t = 20)]
    pub duration_secs: u64,
    /// Workers with cached tokens.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Bound on the requests of the cached workers, per scenario.
    #[arg(long, default_value_t = 2_000_000)]
    pub max_requests: u64,
    /// `flood`: loopback addresses the flood comes from (127.0.0.11, .12, ...).
    #[arg(long, default_value_t = 4)]
    pub flood_sources: usize,
    /// `flood`: connections sending ~1 MB bodies back to back, spread over the sources.
    #[arg(long, default_value_t = 8)]
    pub flood_connections: usize,
    /// Write the report as JSON here.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Verdict {
    pub expectation: String,
    pub passed: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct ScenarioReport {
    pub scenario: String,
    pub passed: bool,
    pub verdicts: Vec<Verdict>,
    pub facts: Value,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct ChaosReport {
    #[serde(flatten)]
    pub provenance: crate::run::Provenance,
    pub passed: bool,
    pub scenarios: Vec<ScenarioReport>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    Cached,
    Fresh,
    Probe,
}

#[derive(Debug, Clone)]
struct Event {
    group: Group,
    /// Request start, since the scenario's start.
    at: Duration,
    latency: Duration,
    /// 0: no answer (transport error or client timeout).
    status: u16,
    code: Option<String>,
    retry_after: bool,
    request_id: Option<String>,
}

impl Event {
    /// Answered with a 2xx.
    fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Answered with this status and this error code.
    fn is(&self, status: u16, code: &str) -> bool {
        self.status == status && self.code.as_deref() == Some(code)
    }
}

#[derive(Debug, Clone)]
struct Sample {
    at: Duration,
    breaker: breaker::State,
    opened: u64,
    store: &'static str,
    redis_healthy: bool,
    pool_waiting: usize,
    pool_active: usize,
    pool_max: usize,
}

struct Load {
    t0: Instant,
    stop: Arc<AtomicBool>,
    events: Arc<Mutex<Vec<Event>>>,
    samples: Arc<Mutex<Vec<Sample>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

#[derive(Clone, Copy)]
struct LoadPlan {
    concurrency: usize,
    max_requests: u64,
    fresh: bool,
    probes: bool,
    /// Bound on everything (a safety net: scenarios stop the load themselves).
    limit: Duration,
}

fn sample(state: &AppState, t0: Instant) -> Sample {
    let b = state.auth.breaker().stats();
    let pool = state.db.pool_status();
    Sample {
        at: t0.elapsed(),
        breaker: b.state,
        opened: b.transitions.opened,
        store: state.rate_limits.store_name(),
        redis_healthy: state.kv.is_healthy(),
        pool_waiting: pool.waiting,
        pool_active: pool.active,
        pool_max: pool.max,
    }
}

/// Where the load's requests are timed and recorded, relative to the scenario's start.
#[derive(Clone)]
struct Recorder {
    t0: Instant,
    events: Arc<Mutex<Vec<Event>>>,
}

impl Recorder {
    /// One GET bounded by `limit` (no answer by then counts as no answer), recorded under `group`. True when it
    /// got no answer.
    async fn get(
        &self,
        conn: &mut Conn,
        group: Group,
        path: &str,
        auth: Option<&HeaderValue>,
        limit: Duration,
    ) -> bool {
        let at = self.t0.elapsed();
        let started = Instant::now();
        let r = tokio::time::timeout(limit, conn.send(Method::GET, path, auth, None))
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("client timeout")));
        let latency = started.elapsed();
        let event = match r {
            Ok(r) => Event {
                group,
                at,
                latency,
                status: r.status,
                code: r.code(),
                retry_after: r.retry_after,
                request_id: r.request_id,
            },
            Err(_) => Event { group, at, latency, status: 0, code: None, retry_after: false, request_id: None },
        };
        let failed = event.status == 0;
        self.events.lock().unwrap_or_else(|p| p.into_inner()).push(event);
        failed
    }
}

fn start_load(stack: &Stack, seeded: &Seeded, server: &InProcess, plan: LoadPlan) -> Load {
    let t0 = Instant::now();
    let deadline = t0 + plan.limit;
    let stop = Arc::new(AtomicBool::new(false));
    let events = Arc::new(Mutex::new(Vec::new()));
    let recorder = Recorder { t0, events: events.clone() };
    let samples = Arc::new(Mutex::new(Vec::new()));
    let issued = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for w in 0..plan.concurrency {
        let user = seeded.users[w % seeded.users.len()].clone();
        let (stop, recorder, issued, addr) = (stop.clone(), recorder.clone(), issued.clone(), server.addr);
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::new(addr);
            let path = format!("/api/organizations/{}/knowledge", user.org);
            while !stop.load(Ordering::Relaxed)
                && Instant::now() < deadline
                && issued.fetch_add(1, Ordering::Relaxed) < plan.max_requests
            {
                let timeout = Duration::from_secs(30);
                if recorder.get(&mut conn, Group::Cached, &path, Some(&user.auth), timeout).await {
                    conn.reset();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    if plan.fresh {
        let (stop, recorder, addr) = (stop.clone(), recorder.clone(), server.addr);
        let emulator = stack.emulator.clone();
        let users = seeded.users.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = 0usize;
            let mut inflight = Vec::new();
            // One new token every 50 ms, bounded by the deadline and by 10,000 tokens.
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline && i < 10_000 {
                let user = users[i % users.len()].clone();
                i += 1;
                let Ok(session) = emulator.sign_in(&user.email, PASSWORD) else { continue };
                let recorder = recorder.clone();
                inflight.push(tokio::spawn(async move {
                    let mut conn = Conn::new(addr);
                    let path = format!("/api/organizations/{}/knowledge", user.org);
                    let auth = bearer(&session.access_token);
                    recorder.get(&mut conn, Group::Fresh, &path, Some(&auth), Duration::from_secs(30)).await;
                }));
                inflight.retain(|h| !h.is_finished());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            for h in inflight {
                let _ = h.await;
            }
        }));
    }
    if plan.probes {
        let (stop, recorder, addr) = (stop.clone(), recorder.clone(), server.addr);
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::new(addr);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let scrape = HeaderValue::from_str(&format!("Bearer {}", crate::stack::METRICS_TOKEN))
                    .expect("a token is a header value");
                for (path, auth) in [("/health", None), ("/metrics", Some(&scrape))] {
                    if recorder.get(&mut conn, Group::Probe, path, auth, Duration::from_secs(10)).await {
                        conn.reset();
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }));
    }
    {
        let (stop, samples, state) = (stop.clone(), samples.clone(), server.state.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let s = sample(&state, t0);
                samples.lock().unwrap_or_else(|p| p.into_inner()).push(s);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }));
    }
    Load { t0, stop, events, samples, tasks }
}

impl Load {
    fn now(&self) -> Duration {
        self.t0.elapsed()
    }

    async fn sleep_until(&self, at: Duration) {
        let now = self.now();
        if at > now {
            tokio::time::sleep(at - now).await;
        }
    }

    /// Checks `probe` every 50 ms until it yields a time or the scenario's clock reaches `until`.
    async fn poll_until(&self, until: Duration, mut probe: impl FnMut() -> Option<Duration>) -> Option<Duration> {
        while self.now() < until {
            if let Some(at) = probe() {
                return Some(at);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    async fn finish(self) -> (Vec<Event>, Vec<Sample>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(40), t).await;
        }
        let events = std::mem::take(&mut *self.events.lock().unwrap_or_else(|p| p.into_inner()));
        let samples = std::mem::take(&mut *self.samples.lock().unwrap_or_else(|p| p.into_inner()));
        (events, samples)
    }
}

fn verdict(expectation: impl Into<String>, passed: bool, detail: impl Into<String>) -> Verdict {
    Verdict { expectation: expectation.into(), passed, detail: detail.into() }
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

fn in_window(e: &Event, from: Duration, to: Duration) -> bool {
    e.at >= from && e.at < to
}

fn status_counts<'a>(events: impl Iterator<Item = &'a Event>) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for e in events {
        let key = match (&e.code, e.status) {
            (_, 0) => "no answer".to_owned(),
            (Some(code), s) => format!("{s} {code}"),
            (None, s) => s.to_string(),
        };
        *m.entry(key).or_insert(0) += 1;
    }
    m
}

/// Run a blocking fault-injection call (the emulator's setters wait for its accept loop) off the runtime.
async fn blocking(f: impl FnOnce() + Send + 'static) {
    let _ = tokio::task::spawn_blocking(f).await;
}

struct Ctx<'a> {
    stack: &'a Stack,
    seeded: &'a Seeded,
    args: &'a ChaosArgs,
}

impl Ctx<'_> {
    fn d(&self) -> Duration {
        Duration::from_secs(self.args.duration_secs.max(4))
    }

    async fn server(&self, tweak: impl FnOnce(&mut Settings)) -> Result<InProcess> {
        let mut settings = self.stack.settings(8);
        settings.set("AUTH_HTTP_TIMEOUT_MS", "1000");
        settings.set("AUTH_BREAKER_RESET_TIMEOUT_MS", "2000");
        settings.set("AUDIT_FLUSH_INTERVAL_MS", "200");
        tweak(&mut settings);
        let server = InProcess::start(&settings).await?;
        // Cached users: every token verified once by this instance.
        let mut conn = Conn::new(server.addr);
        for u in &self.seeded.users {
            let r =
                conn.send(Method::GET, &format!("/api/organizations/{}/knowledge", u.org), Some(&u.auth), None).await?;
            anyhow::ensure!(r.status == 200, "warming {}: {}", u.email, r.status);
        }
        Ok(server)
    }

    fn plan(&self) -> LoadPlan {
        LoadPlan {
            concurrency: self.args.concurrency,
            max_requests: self.args.max_requests,
            fresh: true,
            probes: false,
            limit: self.d() + Duration::from_secs(60),
        }
    }
}

fn report(scenario: Scenario, verdicts: Vec<Verdict>, facts: Value) -> ScenarioReport {
    ScenarioReport { scenario: scenario.name().to_owned(), passed: verdicts.iter().all(|v| v.passed), verdicts, facts }
}

pub(crate) async fn run(args: ChaosArgs, command: String) -> Result<ChaosReport> {
    let provenance = crate::run::Provenance::now(command);
    let scenarios = match args.scenario {
        Scenario::All => vec![
            Scenario::AuthKilled,
            Scenario::AuthSlow,
            Scenario::AuthFlaky,
            Scenario::AuthFlapping,
            Scenario::RedisRestart,
            Scenario::PostgresRestart,
            Scenario::PoolStarvation,
            Scenario::Flood,
        ],
        one => vec![one],
    };
    eprintln!("[chaos] starting Postgres, Redis, the auth emulator ...");
    let stack = Stack::start(true).await?;
    let seeder = InProcess::start(&stack.settings(4)).await?;
    let seeded = seed::seed(&stack, seeder.addr, 2, 4, 5).await?;
    seeder.stop().await?;
    let ctx = Ctx { stack: &stack, seeded: &seeded, args: &args };
    let mut reports = Vec::new();
    for scenario in scenarios {
        eprintln!("[chaos] {} ({} s + recovery) ...", scenario.name(), ctx.d().as_secs());
        let report = match scenario {
            Scenario::RedisRestart => redis_restart::run(&ctx).await,
            Scenario::PostgresRestart => postgres_restart::run(&ctx).await,
            Scenario::PoolStarvation => pool_starvation::run(&ctx).await,
            Scenario::Flood => flood::run(&ctx).await,
            other => auth::run(&ctx, other).await,
        };
        let report = report.unwrap_or_else(|e| ScenarioReport {
            scenario: scenario.name().to_owned(),
            passed: false,
            verdicts: vec![verdict("the scenario runs", false, format!("{e:#}"))],
            facts: Value::Null,
        });
        print_scenario(&report);
        reports.push(report);
    }
    Ok(ChaosReport { provenance, passed: reports.iter().all(|r| r.passed), scenarios: reports })
}

fn print_scenario(r: &ScenarioReport) {
    println!("== chaos {}: {}", r.scenario, if r.passed { "PASS" } else { "FAIL" });
    for v in &r.verdicts {
        println!("   {} {} -- {}", if v.passed { "PASS" } else { "FAIL" }, v.expectation, v.detail);
    }
}

pub(crate) fn print(r: &ChaosReport) {
    println!(
        "chaos summary ({}): {} -- {}",
        r.provenance.date,
        if r.passed { "PASS" } else { "FAIL" },
        r.scenarios
            .iter()
            .map(|s| format!("{} {}", s.scenario, if s.passed { "PASS" } else { "FAIL" }))
            .collect::<Vec<_>>()
            .join(", ")
    );
}
