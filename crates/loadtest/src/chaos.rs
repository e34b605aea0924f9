//! `loadtest chaos <scenario>`: a fault injected under load, with a PASS/FAIL verdict per expectation.
//!
//! The server runs in this process (its state is read directly: breaker, stores, pool, audit pipeline).
//! The load: `concurrency` workers with cached tokens (each a keep-alive connection, listing knowledge), a
//! stream of brand-new tokens (a fresh sign-in every 50 ms, each used once: a token-cache miss that needs the
//! auth service), and for pool starvation, probes of `/health` and `/metrics`. A monitor samples the server's
//! state every 50 ms. Timeline: a quarter of the duration healthy, half under the fault, then recovery
//! (bounded).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use http::Method;
use intellifill::AppState;
use serde::Serialize;
use serde_json::{Value, json};

use crate::client::{Conn, bearer};
use crate::seed::{self, PASSWORD, Seeded};
use crate::stack::{InProcess, Settings, Stack};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    AuthKilled,
    AuthSlow,
    AuthFlaky,
    AuthFlapping,
    RedisRestart,
    PostgresRestart,
    PoolStarvation,
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
            Scenario::All => "all",
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct ChaosArgs {
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
    /// Write the report as JSON here.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub expectation: String,
    pub passed: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    pub scenario: String,
    pub passed: bool,
    pub verdicts: Vec<Verdict>,
    pub facts: Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChaosReport {
    pub date: String,
    pub command: String,
    pub machine: crate::run::Machine,
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

fn record(events: &Mutex<Vec<Event>>, group: Group, at: Duration, latency: Duration, r: Result<crate::client::Resp>) {
    let event = match r {
        Ok(r) => Event {
            group,
            at,
            latency,
            status: r.status,
            code: r.code(),
            retry_after: r.retry_after,
            request_id: r.request_id.clone(),
        },
        Err(_) => Event { group, at, latency, status: 0, code: None, retry_after: false, request_id: None },
    };
    events.lock().unwrap_or_else(|p| p.into_inner()).push(event);
}

fn start_load(stack: &Stack, seeded: &Seeded, server: &InProcess, plan: LoadPlan) -> Load {
    let t0 = Instant::now();
    let deadline = t0 + plan.limit;
    let stop = Arc::new(AtomicBool::new(false));
    let events = Arc::new(Mutex::new(Vec::new()));
    let samples = Arc::new(Mutex::new(Vec::new()));
    let issued = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for w in 0..plan.concurrency {
        let user = seeded.users[w % seeded.users.len()].clone();
        let (stop, events, issued, addr) = (stop.clone(), events.clone(), issued.clone(), server.addr);
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::new(addr);
            let path = format!("/api/organizations/{}/knowledge", user.org);
            while !stop.load(Ordering::Relaxed)
                && Instant::now() < deadline
                && issued.fetch_add(1, Ordering::Relaxed) < plan.max_requests
            {
                let at = t0.elapsed();
                let started = Instant::now();
                let r = tokio::time::timeout(
                    Duration::from_secs(30),
                    conn.send(Method::GET, &path, Some(&user.auth), None),
                )
                .await
                .unwrap_or_else(|_| Err(anyhow::anyhow!("client timeout")));
                let failed = r.is_err();
                record(&events, Group::Cached, at, started.elapsed(), r);
                if failed {
                    conn.reset();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    if plan.fresh {
        let (stop, events, addr) = (stop.clone(), events.clone(), server.addr);
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
                let events = events.clone();
                inflight.push(tokio::spawn(async move {
                    let mut conn = Conn::new(addr);
                    let path = format!("/api/organizations/{}/knowledge", user.org);
                    let auth = bearer(&session.access_token);
                    let at = t0.elapsed();
                    let started = Instant::now();
                    let r =
                        tokio::time::timeout(Duration::from_secs(30), conn.send(Method::GET, &path, Some(&auth), None))
                            .await
                            .unwrap_or_else(|_| Err(anyhow::anyhow!("client timeout")));
                    record(&events, Group::Fresh, at, started.elapsed(), r);
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
        let (stop, events, addr) = (stop.clone(), events.clone(), server.addr);
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::new(addr);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                for path in ["/health", "/metrics"] {
                    let at = t0.elapsed();
                    let started = Instant::now();
                    let r = tokio::time::timeout(Duration::from_secs(10), conn.send(Method::GET, path, None, None))
                        .await
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("client timeout")));
                    if r.is_err() {
                        conn.reset();
                    }
                    record(&events, Group::Probe, at, started.elapsed(), r);
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

    async fn finish(self) -> (Vec<Event>, Vec<Sample>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(40), t).await;
        }
        let events = std::mem::take(&mut *self.events.lock().unwrap_or_else(|p| p.into_inner()));
        let samples = std::mem::take(&mut *self.samples.lock().unwrap_or_else(|p| p.into_inner()));
        (events, samples)
    }

    fn samples(&self) -> Vec<Sample> {
        self.samples.lock().unwrap_or_else(|p| p.into_inner()).clone()
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

async fn auth_scenario(ctx: &Ctx<'_>, scenario: Scenario) -> Result<ScenarioReport> {
    let threshold = if scenario == Scenario::AuthFlaky { "40" } else { "50" };
    let server = ctx
        .server(|s| {
            s.set("AUTH_BREAKER_ERROR_THRESHOLD_PERCENT", threshold);
            s.set("AUTH_BREAKER_WINDOW_MS", "2000");
            s.set("AUTH_BREAKER_BUCKETS", "10");
        })
        .await?;
    let state = server.state.clone();
    let faults = ctx.stack.emulator.faults();
    let d = ctx.d();
    let (fault_at, clear_at) = (d / 4, d * 3 / 4);
    let load = start_load(ctx.stack, ctx.seeded, &server, ctx.plan());
    load.sleep_until(fault_at).await;
    let fault_start = load.now();
    match scenario {
        Scenario::AuthKilled => {
            let f = faults.clone();
            blocking(move || f.refuse_connections(None)).await;
        }
        Scenario::AuthSlow => faults.set_latency(Duration::from_millis(1500)),
        Scenario::AuthFlaky => faults.set_error_rate(0.5, 503),
        _ => {
            // Flapping: refused for 1 s, then answering for 1 s, until the fault window ends.
            let mut refusing = false;
            for _ in 0..1000 {
                if load.now() >= clear_at {
                    break;
                }
                let f = faults.clone();
                if refusing {
                    blocking(move || f.clear()).await;
                } else {
                    blocking(move || f.refuse_connections(None)).await;
                }
                refusing = !refusing;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    load.sleep_until(clear_at).await;
    let f = faults.clone();
    blocking(move || f.clear()).await;
    let fault_end = load.now();
    // Recovery: the breaker closes once a trial call succeeds after its reset timeout (2 s here).
    let recovery_bound = Duration::from_secs(10).max(d / 4);
    let mut closed_at = None;
    while load.now() < fault_end + recovery_bound {
        let s = sample(&state, load.t0);
        if s.breaker == breaker::State::Closed {
            closed_at = Some(s.at);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A little more load after closing, to see new tokens succeed again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (events, samples) = load.finish().await;
    server.stop().await?;

    let opened_at = samples
        .iter()
        .find(|s| {
            s.at >= fault_start
                && s.at <= fault_end
                && (s.breaker == breaker::State::Open || s.opened > samples[0].opened)
        })
        .map(|s| s.at);
    let cached: Vec<&Event> = events.iter().filter(|e| e.group == Group::Cached && e.at >= fault_start).collect();
    let cached_ok = cached.iter().filter(|e| (200..300).contains(&e.status)).count();
    let cached_rate = if cached.is_empty() { 0.0 } else { cached_ok as f64 / cached.len() as f64 };
    let fresh_all: Vec<&Event> = events.iter().filter(|e| e.group == Group::Fresh).collect();
    let fresh_fault: Vec<&Event> = fresh_all.iter().copied().filter(|e| in_window(e, fault_start, fault_end)).collect();
    let unauthorized = fresh_all.iter().filter(|e| e.status == 401).count();
    let failures: Vec<&&Event> = fresh_all.iter().filter(|e| !(200..300).contains(&e.status)).collect();
    let proper_503 = failures
        .iter()
        .filter(|e| e.status == 503 && e.code.as_deref() == Some("AUTH_SERVICE_UNAVAILABLE") && e.retry_after)
        .count();
    let fresh_after =
        closed_at.map(|c| fresh_all.iter().filter(|e| e.at > c && (200..300).contains(&e.status)).count());

    let verdicts = vec![
        verdict(
            "the breaker opens within the fault window",
            opened_at.is_some(),
            match opened_at {
                Some(at) => format!("opened {} ms after the fault", ms(at.saturating_sub(fault_start))),
                None => "never opened during the fault".into(),
            },
        ),
        verdict(
            "cached users keep >= 99.9 % success",
            !cached.is_empty() && cached_rate >= 0.999,
            format!("{cached_ok}/{} ok ({:.3} %) from the fault on", cached.len(), cached_rate * 100.0),
        ),
        verdict(
            "new tokens get 503 AUTH_SERVICE_UNAVAILABLE + Retry-After, never 401",
            unauthorized == 0 && proper_503 == failures.len() && proper_503 > 0,
            format!(
                "{} new tokens during the fault: {:?}; failures {} of which proper 503 {}; 401s {}",
                fresh_fault.len(),
                status_counts(fresh_fault.iter().copied()),
                failures.len(),
                proper_503,
                unauthorized
            ),
        ),
        verdict(
            "recovery closes the breaker and new tokens succeed again",
            closed_at.is_some() && fresh_after.is_some_and(|n| n > 0),
            match closed_at {
                Some(c) => format!(
                    "closed {} ms after the fault was cleared; {} new tokens accepted after that",
                    ms(c.saturating_sub(fault_end)),
                    fresh_after.unwrap_or(0)
                ),
                None => format!("still not closed {} s after the fault was cleared", recovery_bound.as_secs()),
            },
        ),
    ];
    let latency_fresh_max = fresh_fault.iter().map(|e| ms(e.latency)).max().unwrap_or(0);
    Ok(report(
        scenario,
        verdicts,
        json!({
            "faultStartMs": ms(fault_start),
            "faultEndMs": ms(fault_end),
            "breakerErrorThresholdPercent": threshold,
            "authHttpTimeoutMs": 1000,
            "breakerResetTimeoutMs": 2000,
            "breakerWindowMs": 2000,
            "cachedRequests": cached.len(),
            "newTokens": fresh_all.len(),
            "newTokenOutcomesDuringFault": status_counts(fresh_fault.iter().copied()),
            "newTokenMaxLatencyMsDuringFault": latency_fresh_max,
            "breakerOpenings": samples.last().map(|s| s.opened.saturating_sub(samples[0].opened)),
        }),
    ))
}

async fn redis_restart(ctx: &Ctx<'_>) -> Result<ScenarioReport> {
    let redis = ctx.stack.redis.as_ref().context("redis-restart needs redis-server")?;
    let server = ctx.server(|_| {}).await?;
    let state = server.state.clone();
    let d = ctx.d();
    let load = start_load(ctx.stack, ctx.seeded, &server, ctx.plan());
    load.sleep_until(d / 4).await;
    let fault_start = load.now();
    let l1_before = state.auth.cache().stats.l1_hits.load(Ordering::Relaxed);
    redis.stop().await?;
    load.sleep_until(d * 3 / 4).await;
    let l1_during = state.auth.cache().stats.l1_hits.load(Ordering::Relaxed).saturating_sub(l1_before);
    redis.restart().await?;
    let restarted = load.now();
    let mut back_at = None;
    while load.now() < restarted + Duration::from_secs(20).max(d / 4) {
        let s = sample(&state, load.t0);
        if s.store == "redis" && s.redis_healthy {
            back_at = Some(s.at);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (events, samples) = load.finish().await;
    server.stop().await?;

    let failures: Vec<&Event> = events.iter().filter(|e| !(200..300).contains(&e.status)).collect();
    let fell_back = samples.iter().any(|s| s.at >= fault_start && s.at <= restarted && s.store == "memory");
    let verdicts = vec![
        verdict(
            "no request errors while Redis is down and back",
            failures.is_empty(),
            format!(
                "{} requests, {} failed: {:?}",
                events.len(),
                failures.len(),
                status_counts(failures.iter().copied())
            ),
        ),
        verdict(
            "fallback: the rate limiter answers from memory during the outage",
            fell_back,
            if fell_back {
                "store was \"memory\" during the outage".into()
            } else {
                "store never left \"redis\"".to_string()
            },
        ),
        verdict(
            "fallback: cached tokens keep being served from L1",
            l1_during > 0,
            format!("{l1_during} L1 hits while Redis was down"),
        ),
        verdict(
            "reconnection: the store is back on Redis",
            back_at.is_some(),
            match back_at {
                Some(at) => format!("back on redis {} ms after the restart", ms(at.saturating_sub(restarted))),
                None => "still on the fallback".into(),
            },
        ),
    ];
    Ok(report(
        Scenario::RedisRestart,
        verdicts,
        json!({ "faultStartMs": ms(fault_start), "restartedMs": ms(restarted), "requests": events.len() }),
    ))
}

async fn postgres_restart(ctx: &Ctx<'_>) -> Result<ScenarioReport> {
    let server = ctx.server(|s| s.set("DB_CONNECT_TIMEOUT_MS", "1000")).await?;
    let state = server.state.clone();
    let audit = state.audit.stats();
    let (spooled0, replayed0) = (audit.get(&audit.spooled), audit.get(&audit.replayed));
    let d = ctx.d();
    let mut plan = ctx.plan();
    plan.fresh = false;
    let load = start_load(ctx.stack, ctx.seeded, &server, plan);
    load.sleep_until(d / 4).await;
    let stopping = load.now();
    ctx.stack.pg.stop().await?;
    let stopped = load.now();
    load.sleep_until(d * 3 / 4).await;
    let restarting = load.now();
    ctx.stack.pg.restart().await?;
    let restarted = load.now();
    // Keep the load on for the recovery (bounded).
    let mut recovered_at = None;
    while load.now() < restarted + Duration::from_secs(10).max(d / 4) {
        let ok_after = load
            .events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|e| e.at >= restarted && (200..300).contains(&e.status))
            .map(|e| e.at + e.latency)
            .min();
        if let Some(at) = ok_after {
            recovered_at = Some(at);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (events, _) = load.finish().await;

    // Flush the audit pipeline (the spool is replayed by the writer), then count the rows per request id.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        state.audit.flush().await;
        if (state.audit.spool_pending() == 0 && state.audit.queue_depth() == 0) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let spooled = audit.get(&audit.spooled) - spooled0;
    let replayed = audit.get(&audit.replayed) - replayed0;
    let dropped = audit.get(&audit.dropped);
    server.stop().await?;
    let ids: Vec<String> = events.iter().filter_map(|e| e.request_id.clone()).collect();
    let owner = ctx.stack.owner().await?;
    let rows = owner
        .query("SELECT request_id, count(*) FROM audit_log WHERE request_id = ANY($1) GROUP BY request_id", &[&ids])
        .await?;
    let stored: BTreeMap<String, i64> = rows.iter().map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1))).collect();
    let missing = ids.iter().filter(|id| !stored.contains_key(*id)).count();
    let duplicated = stored.values().filter(|n| **n != 1).count();

    let gap: Vec<&Event> = events.iter().filter(|e| in_window(e, stopped, restarting)).collect();
    let gap_max = gap.iter().map(|e| e.latency).max().unwrap_or_default();
    let gap_non_503 = gap.iter().filter(|e| e.status != 503).count();
    let unanswered = events.iter().filter(|e| e.status == 0).count();
    let verdicts = vec![
        verdict(
            "requests fail fast with 503 during the gap (none over 3 s)",
            !gap.is_empty() && gap_max < Duration::from_secs(3) && gap_non_503 == 0,
            format!(
                "{} requests in the gap: {:?}; slowest {} ms",
                gap.len(),
                status_counts(gap.iter().copied()),
                ms(gap_max)
            ),
        ),
        verdict(
            "the pool recovers within 5 s of the restart",
            recovered_at.is_some_and(|at| at.saturating_sub(restarted) < Duration::from_secs(5)),
            match recovered_at {
                Some(at) => format!("first success {} ms after the restart", ms(at.saturating_sub(restarted))),
                None => "no success after the restart".into(),
            },
        ),
        verdict(
            "audit events are spooled during the outage and replayed",
            spooled > 0 && replayed > 0 && state.audit.spool_pending() == 0,
            format!("spooled {spooled}, replayed {replayed}, still pending {}", state.audit.spool_pending()),
        ),
        verdict(
            "zero audit events lost: one row per answered request id",
            missing == 0 && duplicated == 0 && dropped == 0 && unanswered == 0,
            format!(
                "{} answered requests, {} rows found, {missing} missing, {duplicated} not exactly once, dropped {dropped}, unanswered requests {unanswered}",
                ids.len(),
                stored.len()
            ),
        ),
    ];
    Ok(report(
        Scenario::PostgresRestart,
        verdicts,
        json!({
            "stopMs": ms(stopping),
            "stoppedMs": ms(stopped),
            "restartMs": ms(restarting),
            "restartedMs": ms(restarted),
            "requests": events.len(),
            "outcomes": status_counts(events.iter()),
        }),
    ))
}

async fn pool_starvation(ctx: &Ctx<'_>) -> Result<ScenarioReport> {
    let server = ctx.server(|s| s.set("DB_POOL_MAX_SIZE", "2")).await?;
    let wait_bound = server.state.config.database.pool_wait_timeout;
    let d = ctx.d();
    let mut plan = ctx.plan();
    plan.fresh = false;
    plan.probes = true;
    plan.concurrency = ctx.args.concurrency.max(16);
    let load = start_load(ctx.stack, ctx.seeded, &server, plan);
    load.sleep_until(d / 4).await;
    // A long-running transaction elsewhere (a migration, a bulk job) holds the table: every list request
    // keeps its pooled connection while it waits for the lock, so two requests exhaust the pool of 2.
    let hold = (d / 2).min(Duration::from_secs(8));
    let locker = ctx.stack.owner().await?;
    locker.batch_execute("BEGIN; LOCK TABLE knowledge_sources IN ACCESS EXCLUSIVE MODE").await?;
    let locked = load.now();
    tokio::time::sleep(hold).await;
    let sampled = load.samples();
    locker.batch_execute("ROLLBACK").await?;
    let released = load.now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (events, samples) = load.finish().await;
    let acquire_timeouts = server.state.db.stats().acquire_timeouts.load(Ordering::Relaxed);
    server.stop().await?;
    drop(sampled);

    let exhausted = samples
        .iter()
        .filter(|s| s.at >= locked && s.at < released)
        .any(|s| s.pool_active >= s.pool_max && s.pool_waiting > 0);
    let waiting_max = samples.iter().map(|s| s.pool_waiting).max().unwrap_or(0);
    // Probes sent once the pool is exhausted (a moment after the lock).
    let from = locked + Duration::from_millis(500);
    let probes: Vec<&Event> =
        events.iter().filter(|e| e.group == Group::Probe && in_window(e, from, released)).collect();
    let mut probe_ms: Vec<f64> = probes.iter().map(|e| e.latency.as_secs_f64() * 1000.0).collect();
    probe_ms.sort_by(|a, b| a.total_cmp(b));
    let p99 = probe_ms.get(((probe_ms.len() as f64 * 0.99).ceil() as usize).saturating_sub(1)).copied().unwrap_or(0.0);
    let pmax = probe_ms.last().copied().unwrap_or(0.0);
    let probes_ok = probes.iter().all(|e| e.status == 200);
    let cached: Vec<&Event> =
        events.iter().filter(|e| e.group == Group::Cached && in_window(e, from, released)).collect();
    let shed: Vec<&&Event> =
        cached.iter().filter(|e| e.status == 503 && e.code.as_deref() == Some("DATABASE_UNAVAILABLE")).collect();
    let shed_with_retry = shed.iter().filter(|e| e.retry_after).count();
    let shed_max = shed.iter().map(|e| e.latency).max().unwrap_or_default();
    let other_5xx = events
        .iter()
        .filter(|e| e.status >= 500 && !(e.status == 503 && e.code.as_deref() == Some("DATABASE_UNAVAILABLE")))
        .count();
    let after: Vec<&Event> =
        events.iter().filter(|e| e.group == Group::Cached && e.at >= released + Duration::from_secs(2)).collect();
    let after_ok = after.iter().filter(|e| e.status == 200).count();

    let verdicts = vec![
        verdict(
            "the pool is exhausted (all connections busy, requests waiting)",
            exhausted,
            format!("waiting max {waiting_max}, acquire timeouts {acquire_timeouts}"),
        ),
        verdict(
            "/health and /metrics answer quickly while the pool is exhausted (p99 < 100 ms, max < 1 s)",
            !probes.is_empty() && probes_ok && p99 < 100.0 && pmax < 1000.0,
            format!("{} probes: p99 {p99:.1} ms, max {pmax:.1} ms, all 200: {probes_ok}", probes.len()),
        ),
        verdict(
            "excess requests are shed with 503 DATABASE_UNAVAILABLE + Retry-After, within the wait bound",
            !shed.is_empty() && shed_with_retry == shed.len() && shed_max < wait_bound + Duration::from_secs(1),
            format!(
                "{} requests during the starvation: {:?}; shed {} ({} with Retry-After), slowest shed {} ms (bound {} ms)",
                cached.len(),
                status_counts(cached.iter().copied()),
                shed.len(),
                shed_with_retry,
                ms(shed_max),
                ms(wait_bound)
            ),
        ),
        verdict(
            "no other 5xx, and full service once the lock is released",
            other_5xx == 0 && !after.is_empty() && after_ok == after.len(),
            format!("other 5xx {other_5xx}; after release {after_ok}/{} ok", after.len()),
        ),
    ];
    Ok(report(
        Scenario::PoolStarvation,
        verdicts,
        json!({
            "poolSize": 2,
            "poolWaitTimeoutMs": ms(wait_bound),
            "lockedMs": ms(locked),
            "releasedMs": ms(released),
            "requests": events.len(),
            "outcomes": status_counts(events.iter().filter(|e| e.group == Group::Cached)),
        }),
    ))
}

fn report(scenario: Scenario, verdicts: Vec<Verdict>, facts: Value) -> ScenarioReport {
    ScenarioReport { scenario: scenario.name().to_owned(), passed: verdicts.iter().all(|v| v.passed), verdicts, facts }
}

pub async fn run(args: ChaosArgs, command: String) -> Result<ChaosReport> {
    let machine = crate::run::machine();
    let date = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let scenarios = match args.scenario {
        Scenario::All => vec![
            Scenario::AuthKilled,
            Scenario::AuthSlow,
            Scenario::AuthFlaky,
            Scenario::AuthFlapping,
            Scenario::RedisRestart,
            Scenario::PostgresRestart,
            Scenario::PoolStarvation,
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
            Scenario::RedisRestart => redis_restart(&ctx).await,
            Scenario::PostgresRestart => postgres_restart(&ctx).await,
            Scenario::PoolStarvation => pool_starvation(&ctx).await,
            other => auth_scenario(&ctx, other).await,
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
    Ok(ChaosReport { date, command, machine, passed: reports.iter().all(|r| r.passed), scenarios: reports })
}

fn print_scenario(r: &ScenarioReport) {
    println!("== chaos {}: {}", r.scenario, if r.passed { "PASS" } else { "FAIL" });
    for v in &r.verdicts {
        println!("   {} {} -- {}", if v.passed { "PASS" } else { "FAIL" }, v.expectation, v.detail);
    }
}

pub fn print(r: &ChaosReport) {
    println!(
        "chaos summary ({}): {} -- {}",
        r.date,
        if r.passed { "PASS" } else { "FAIL" },
        r.scenarios
            .iter()
            .map(|s| format!("{} {}", s.scenario, if s.passed { "PASS" } else { "FAIL" }))
            .collect::<Vec<_>>()
            .join(", ")
    );
}
