//! `flood`: an adversarial body flood from several addresses while a legitimate client runs a steady mix.
//!
//! The server runs as a child process (`__serve`), so its RSS and CPU time are its own, with the production
//! defaults of every limit (rate limits, anomaly thresholds, audit settings): only addresses, credentials and
//! the spool directory are set. Timeline:
//!
//! 1. baseline (half the duration): the legitimate client alone. One worker per seeded user, each from a
//!    loopback alias of its own pair of users (127.0.0.21..), one request every 250 ms (list, me, search, a
//!    small create), well inside every rate limit, so that it measures latency, not throttling.
//! 2. flood (the other half): `--flood-connections` connections spread over `--flood-sources` loopback aliases
//!    (127.0.0.11..) send ~1 MB JSON POSTs back to back, as fast as the server takes them: unauthenticated to a
//!    real route (401) and to no route (404), and authenticated as an attacker with an organization of its own
//!    (a knowledge body just over the content limit: parsed, then 400). The text mixes IBAN-, phone-, card- and
//!    e-mail-shaped tokens, the sanitizer's worst case. The flood runs on a runtime of its own (one thread), so
//!    the legitimate client's requests never wait behind it in this process. The legitimate client goes on.
//! 3. after: both stop; the server's CPU and the audit trail are watched until idle / complete (bounded).
//!
//! A monitor samples the server's RSS and CPU time every 250 ms; an auditor looks up the legitimate users'
//! audit rows every 500 ms (as the owner, by user and time) and notes when each request's row first appears.
//!
//! PASS: the legitimate p99 under the flood within 2x of the baseline p99; the server's peak RSS under
//! [`RSS_BOUND_MIB`]; every legitimate request's row present within [`AUDIT_LAG_BOUND`] of its answer; the
//! server's CPU back under [`IDLE_CORE_SHARE`] of a core within [`IDLE_BOUND`] after the flood; every
//! legitimate request answered 2xx.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use http::{HeaderValue, Method};
use serde_json::json;
use uuid::Uuid;

use super::{Ctx, Scenario, ScenarioReport, ms, report, verdict};
use crate::client::Conn;
use crate::seed::{self, SeedUser};
use crate::stack::{self, ChildServer, METRICS_TOKEN};

/// The server's resident memory must stay under this (MiB), whatever the flood sends.
pub(super) const RSS_BOUND_MIB: u64 = 300;
/// Longest a legitimate request's audit row may take to appear after its answer.
pub(super) const AUDIT_LAG_BOUND: Duration = Duration::from_secs(5);
/// The server counts as idle under this share of one core (its background tasks tick, the load is gone).
pub(super) const IDLE_CORE_SHARE: f64 = 0.05;
/// How soon after the flood the server must be idle.
pub(super) const IDLE_BOUND: Duration = Duration::from_secs(5);
/// The flood is cut short when the server's RSS passes this (MiB): the verdict is lost anyway, the machine is
/// shared.
const ABORT_RSS_MIB: u64 = 2048;
/// Bound on the wait for idle CPU and for the audit rows after the flood (a measurement, not a verdict).
const SETTLE_LIMIT: Duration = Duration::from_secs(60);
/// Each legitimate worker's pace.
const LEGIT_EVERY: Duration = Duration::from_millis(250);
/// The flood's bodies: just under the 1 MiB body limit, so every one is read in full.
const FLOOD_BODY_BYTES: usize = 1_040_000;

/// One legitimate request.
#[derive(Debug, Clone)]
struct Legit {
    /// Start, since the scenario's start.
    at: Duration,
    latency: Duration,
    /// 0: no answer.
    status: u16,
    request_id: Option<String>,
}

/// One sample of the server process.
#[derive(Debug, Clone, Copy)]
struct ProcSample {
    at: Duration,
    rss_kib: u64,
    cpu: Duration,
    /// This harness's own CPU time (the flood generator and the legitimate client).
    harness_cpu: Duration,
    /// CPU time every process of the machine used (all cores), from `/proc/stat`.
    machine_cpu: Duration,
}

#[derive(Default)]
struct FloodTally {
    requests: AtomicU64,
    bytes: AtomicU64,
    outcomes: Mutex<BTreeMap<String, u64>>,
}

pub(super) async fn run(ctx: &Ctx<'_>) -> Result<ScenarioReport> {
    let d = ctx.d();
    let (baseline_for, flood_for) = (d / 2, d - d / 2);
    let mut settings = ctx.stack.settings(16);
    for var in stack::RAISED_LIMITS {
        settings.remove(var);
    }
    let log = ctx.stack.dir.path().join("flood-server.log");
    let server = ChildServer::spawn("__serve", settings.vars(), &log).await?;
    let (addr, pid) = (server.addr, server.pid);
    eprintln!("[chaos] flood: server pid {pid} on {addr}, log {}", log.display());

    // The attacker: an account and an organization of its own, made as any user would.
    let owner = ctx.stack.owner().await?;
    let run_id = Uuid::new_v4().simple().to_string();
    let mut attacker = seed::user(ctx.stack, &owner, &format!("attacker.{}@load.test", &run_id[..8])).await?;
    let mut setup = Conn::new(addr);
    let created = setup
        .send(Method::POST, "/api/organizations", Some(&attacker.auth), Some(Bytes::from(r#"{"name":"Flood"}"#)))
        .await?;
    anyhow::ensure!(created.status == 201, "attacker organization: {}", created.status);
    attacker.org = created.json()["id"].as_str().and_then(|s| s.parse().ok()).context("organization id")?;
    // Every legitimate token verified once by this server, from the worker's own address.
    for (i, u) in ctx.seeded.users.iter().enumerate() {
        let mut conn = Conn::from_source(addr, legit_source(i));
        let r = conn.send(Method::GET, &format!("/api/organizations/{}/knowledge", u.org), Some(&u.auth), None).await?;
        anyhow::ensure!(r.status == 200, "warming {}: {}", u.email, r.status);
    }

    let t0 = Instant::now();
    let since = chrono::Utc::now() - chrono::Duration::seconds(5);
    let legit_stop = Arc::new(AtomicBool::new(false));
    let flood_stop = Arc::new(AtomicBool::new(false));
    let watch_stop = Arc::new(AtomicBool::new(false));
    let legit: Arc<Mutex<Vec<Legit>>> = Arc::default();
    let samples: Arc<Mutex<Vec<ProcSample>>> = Arc::default();
    let seen: Arc<Mutex<HashMap<String, Duration>>> = Arc::default();
    let mut tasks = Vec::new();
    let cut_short = Arc::new(AtomicBool::new(false));
    let guard = Guard { flood_stop: flood_stop.clone(), cut_short: cut_short.clone() };
    tasks.push(tokio::spawn(monitor(pid, t0, watch_stop.clone(), samples.clone(), guard)));
    let user_ids: Vec<Uuid> = ctx.seeded.users.iter().map(|u| u.id).collect();
    tasks.push(tokio::spawn(auditor(ctx.stack.owner().await?, user_ids, since, t0, watch_stop.clone(), seen.clone())));
    let mut legit_workers = Vec::new();
    for (i, user) in ctx.seeded.users.iter().enumerate() {
        let conn = Conn::from_source(addr, legit_source(i));
        legit_workers.push(tokio::spawn(legit_worker(conn, user.clone(), i, t0, legit_stop.clone(), legit.clone())));
    }

    tokio::time::sleep(baseline_for).await;
    let flood_start = t0.elapsed();
    let tally = Arc::new(FloodTally::default());
    let bodies = FloodBodies::new(&attacker);
    let sources = ctx.args.flood_sources.clamp(1, 200);
    let connections = ctx.args.flood_connections.max(1);
    // The flood on a runtime of its own: the legitimate client's tasks never queue behind it in this process
    // (they still share the machine's cores with it, as the server does).
    let flood_runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).thread_name("flood").enable_all().build()?;
    let mut flood = Vec::new();
    for c in 0..connections {
        let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 11 + (c % sources) as u8));
        let conn = Conn::from_source(addr, source);
        flood.push(flood_runtime.spawn(flood_worker(conn, c, bodies.clone(), flood_stop.clone(), tally.clone())));
    }
    while t0.elapsed() < flood_start + flood_for && !flood_stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    flood_stop.store(true, Ordering::Relaxed);
    legit_stop.store(true, Ordering::Relaxed);
    let flood_end = t0.elapsed();
    for t in flood {
        let _ = tokio::time::timeout(Duration::from_secs(30), t).await;
    }
    flood_runtime.shutdown_background();

    // After the flood: until the server is idle and every legitimate row is there (bounded).
    // Legitimate workers finish the request they have in flight first (each is bounded by 30 s).
    for t in legit_workers {
        let _ = tokio::time::timeout(Duration::from_secs(31), t).await;
    }
    let legit_done: Vec<Legit> = legit.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let expected: Vec<&str> = legit_done.iter().filter_map(|e| e.request_id.as_deref()).collect();
    let mut idle_at = None;
    let mut complete_at = None;
    while t0.elapsed() < flood_end + SETTLE_LIMIT && (idle_at.is_none() || complete_at.is_none()) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if idle_at.is_none() {
            idle_at = first_idle(&samples.lock().unwrap_or_else(|p| p.into_inner()), flood_end);
        }
        if complete_at.is_none() {
            let seen = seen.lock().unwrap_or_else(|p| p.into_inner());
            complete_at = expected.iter().all(|id| seen.contains_key(*id)).then(|| t0.elapsed());
        }
    }
    let metrics = audit_metrics(addr).await.unwrap_or_default();
    watch_stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(30), t).await;
    }
    let stopping = Instant::now();
    let stopped = server.stop().await;
    let stop_took = stopping.elapsed();

    let samples = samples.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let seen = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let judged = Judged::of(&legit_done, &samples, &seen, (flood_start, flood_end), (idle_at, complete_at));
    let outcomes = tally.outcomes.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let flood_requests = tally.requests.load(Ordering::Relaxed);
    let flood_mib = tally.bytes.load(Ordering::Relaxed) as f64 / 1_048_576.0;
    let flood_secs = (flood_end - flood_start).as_secs_f64();
    let verdicts = judged.verdicts();
    let facts = json!({
        "serverPid": pid,
        "baselineSecs": baseline_for.as_secs_f64(),
        "floodSecs": flood_secs,
        "floodCutShort": cut_short.load(Ordering::Relaxed).then(|| format!("server RSS passed {ABORT_RSS_MIB} MiB")),
        "flood": {
            "sources": sources,
            "connections": connections,
            "bodyBytes": FLOOD_BODY_BYTES,
            "requests": flood_requests,
            "sentMiB": (flood_mib * 10.0).round() / 10.0,
            "requestsPerSecond": (flood_requests as f64 / flood_secs).round(),
            "outcomes": outcomes,
        },
        "legitimate": judged.facts(),
        "auditMetricsAfter": metrics,
        "serverStop": format!("{} ms: {}", ms(stop_took), stopped.as_ref().map_or_else(|e| format!("{e:#}"), |()| "clean".into())),
    });
    Ok(report(Scenario::Flood, verdicts, facts))
}

/// The address of legitimate worker `i`: two users per address, inside the per-ip limit.
fn legit_source(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 21 + (i / 2) as u8))
}

/// One legitimate user's steady mix, a request every [`LEGIT_EVERY`].
async fn legit_worker(
    mut conn: Conn,
    user: SeedUser,
    worker: usize,
    t0: Instant,
    stop: Arc<AtomicBool>,
    out: Arc<Mutex<Vec<Legit>>>,
) {
    let list = format!("/api/organizations/{}/knowledge", user.org);
    let mut tick = tokio::time::interval(LEGIT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut n = worker;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        n += 1;
        let (method, path, body) = match n % 5 {
            0 | 3 => (Method::GET, list.clone(), None),
            1 => (Method::GET, "/api/me".to_owned(), None),
            2 => (Method::GET, format!("{list}/search?q={}", seed::WORDS[n % seed::WORDS.len()]), None),
            _ => {
                let body = json!({"title": format!("note {n}"), "content": seed::content(n, 20)});
                (Method::POST, list.clone(), Some(Bytes::from(body.to_string())))
            }
        };
        let at = t0.elapsed();
        let started = Instant::now();
        let r = tokio::time::timeout(Duration::from_secs(30), conn.send(method, &path, Some(&user.auth), body)).await;
        let latency = started.elapsed();
        let event = match r {
            Ok(Ok(r)) => Legit { at, latency, status: r.status, request_id: r.request_id },
            _ => {
                conn.reset();
                Legit { at, latency, status: 0, request_id: None }
            }
        };
        out.lock().unwrap_or_else(|p| p.into_inner()).push(event);
    }
}

/// The flood's requests, built once (clones share the bytes).
#[derive(Clone)]
struct FloodBodies {
    body: Bytes,
    attacker_org_path: String,
    attacker_auth: HeaderValue,
}

impl FloodBodies {
    fn new(attacker: &SeedUser) -> FloodBodies {
        // Sanitizer bait: IBAN-, phone-, card- and e-mail-shaped tokens, mixed, over and over.
        let bait = "GB82 WEST 1234 5698 7654 32 +44 20 7946 0958 4111 1111 1111 1111 jane.doe@example.org ";
        let overhead = r#"{"title":"flood","content":""}"#.len();
        let content: String = bait.chars().cycle().take(FLOOD_BODY_BYTES - overhead).collect();
        let body = Bytes::from(json!({"title": "flood", "content": content}).to_string());
        FloodBodies {
            body,
            attacker_org_path: format!("/api/organizations/{}/knowledge", attacker.org),
            attacker_auth: attacker.auth.clone(),
        }
    }
}

/// One flood connection: ~1 MB POSTs back to back until told to stop.
async fn flood_worker(
    mut conn: Conn,
    worker: usize,
    bodies: FloodBodies,
    stop: Arc<AtomicBool>,
    tally: Arc<FloodTally>,
) {
    let mut n = worker;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let (path, auth) = match n % 3 {
            0 => (format!("/api/organizations/{}/knowledge", Uuid::new_v4()), None),
            1 => (format!("/flood/{n}"), None),
            _ => (bodies.attacker_org_path.clone(), Some(&bodies.attacker_auth)),
        };
        let sent = tokio::time::timeout(
            Duration::from_secs(30),
            conn.send(Method::POST, &path, auth, Some(bodies.body.clone())),
        )
        .await;
        let outcome = match sent {
            Ok(Ok(r)) => match r.code() {
                Some(code) => format!("{} {code}", r.status),
                None => r.status.to_string(),
            },
            Ok(Err(_)) | Err(_) => {
                conn.reset();
                "no answer (connection closed or refused)".to_owned()
            }
        };
        tally.requests.fetch_add(1, Ordering::Relaxed);
        tally.bytes.fetch_add(bodies.body.len() as u64, Ordering::Relaxed);
        *tally.outcomes.lock().unwrap_or_else(|p| p.into_inner()).entry(outcome).or_insert(0) += 1;
    }
}

/// Stops the flood when the server grows past [`ABORT_RSS_MIB`].
struct Guard {
    flood_stop: Arc<AtomicBool>,
    cut_short: Arc<AtomicBool>,
}

/// Samples the server's RSS and CPU time every 250 ms.
async fn monitor(pid: u32, t0: Instant, stop: Arc<AtomicBool>, out: Arc<Mutex<Vec<ProcSample>>>, guard: Guard) {
    while !stop.load(Ordering::Relaxed) {
        let Some(cpu) = stack::cpu_time(pid) else { return };
        let (rss_kib, _) = stack::memory_kib(Some(pid));
        if rss_kib > ABORT_RSS_MIB * 1024 && !guard.flood_stop.swap(true, Ordering::Relaxed) {
            guard.cut_short.store(true, Ordering::Relaxed);
        }
        let harness_cpu = stack::cpu_time(std::process::id()).unwrap_or_default();
        let machine_cpu = machine_cpu_time().unwrap_or_default();
        let sample = ProcSample { at: t0.elapsed(), rss_kib, cpu, harness_cpu, machine_cpu };
        out.lock().unwrap_or_else(|p| p.into_inner()).push(sample);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Notes, every 500 ms, when each of the users' audit rows first shows up.
async fn auditor(
    owner: tokio_postgres::Client,
    users: Vec<Uuid>,
    since: chrono::DateTime<chrono::Utc>,
    t0: Instant,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<HashMap<String, Duration>>>,
) {
    let sql =
        "SELECT request_id FROM audit_log WHERE user_id = ANY($1) AND created_at >= $2 AND request_id IS NOT NULL";
    while !stop.load(Ordering::Relaxed) {
        if let Ok(rows) = owner.query(sql, &[&users, &since]).await {
            let now = t0.elapsed();
            let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
            for row in rows {
                seen.entry(row.get::<_, String>(0)).or_insert(now);
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The busy CPU time of the whole machine (every core, every process), from the first line of `/proc/stat`.
fn machine_cpu_time() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<u64> = text.lines().next()?.split_whitespace().skip(1).filter_map(|t| t.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal: busy is all but idle and iowait (USER_HZ = 100).
    let busy = ticks.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, t)| t).sum::<u64>();
    Some(Duration::from_millis(busy * 10))
}

/// The first instant after `from` when the server used less than [`IDLE_CORE_SHARE`] of a core over one second.
fn first_idle(samples: &[ProcSample], from: Duration) -> Option<Duration> {
    let after: Vec<&ProcSample> = samples.iter().filter(|s| s.at >= from).collect();
    after.iter().enumerate().find_map(|(i, start)| {
        let end = after[i..].iter().find(|s| s.at >= start.at + Duration::from_secs(1))?;
        let share = (end.cpu - start.cpu).as_secs_f64() / (end.at - start.at).as_secs_f64();
        (share < IDLE_CORE_SHARE).then_some(start.at)
    })
}

/// `audit_*` series of the server's `/metrics`, by name and labels.
async fn audit_metrics(addr: std::net::SocketAddr) -> Result<BTreeMap<String, f64>> {
    let mut conn = Conn::new(addr);
    let auth = HeaderValue::from_str(&format!("Bearer {METRICS_TOKEN}"))?;
    let r = conn.send(Method::GET, "/metrics", Some(&auth), None).await?;
    let text = String::from_utf8_lossy(&r.body).into_owned();
    Ok(text
        .lines()
        .filter(|l| l.starts_with("audit_"))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect())
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Percentile `p` (0..=1) of sorted milliseconds.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).saturating_sub(1);
    sorted.get(i).copied().unwrap_or(0.0)
}

fn latencies(events: &[&Legit]) -> Vec<f64> {
    let mut v: Vec<f64> = events.iter().map(|e| e.latency.as_secs_f64() * 1000.0).collect();
    v.sort_by(f64::total_cmp);
    v
}

/// What the run shows, measured.
struct Judged {
    baseline: Vec<f64>,
    flooded: Vec<f64>,
    failed: BTreeMap<String, u64>,
    answered: usize,
    rss_baseline_mib: f64,
    rss_peak_mib: f64,
    rss_end_mib: f64,
    cpu_baseline_share: f64,
    cpu_flood_secs: f64,
    /// Cores used during the flood, on average: the server, this harness, the whole machine.
    cores_during_flood: (f64, f64, f64),
    idle_after: Option<Duration>,
    rows_missing: usize,
    lag_p50: Duration,
    lag_max: Duration,
    complete_after: Option<Duration>,
}

impl Judged {
    fn of(
        legit: &[Legit],
        samples: &[ProcSample],
        seen: &HashMap<String, Duration>,
        (flood_start, flood_end): (Duration, Duration),
        (idle_at, complete_at): (Option<Duration>, Option<Duration>),
    ) -> Judged {
        // The first second warms connections up; it is not the baseline.
        let baseline: Vec<&Legit> =
            legit.iter().filter(|e| e.at >= Duration::from_secs(1) && e.at < flood_start).collect();
        let flooded: Vec<&Legit> = legit.iter().filter(|e| e.at >= flood_start && e.at < flood_end).collect();
        let mut failed = BTreeMap::new();
        for e in legit.iter().filter(|e| !(200..300).contains(&e.status)) {
            *failed.entry(if e.status == 0 { "no answer".to_owned() } else { e.status.to_string() }).or_insert(0) += 1;
        }
        let mib = |kib: u64| (kib as f64 / 1024.0 * 10.0).round() / 10.0;
        let at_or_before = |t: Duration| samples.iter().rev().find(|s| s.at <= t).or(samples.first());
        // CPU seconds one of the sample's clocks advanced between two instants, and the seconds between them.
        let cpu_between =
            |a: Duration, b: Duration, clock: fn(&ProcSample) -> Duration| match (at_or_before(a), at_or_before(b)) {
                (Some(x), Some(y)) if y.at > x.at => {
                    (clock(y).saturating_sub(clock(x)).as_secs_f64(), (y.at - x.at).as_secs_f64())
                }
                _ => (0.0, 0.0),
            };
        let (base_cpu, base_secs) = cpu_between(Duration::from_secs(1), flood_start, |s| s.cpu);
        let cores = |clock: fn(&ProcSample) -> Duration| match cpu_between(flood_start, flood_end, clock) {
            (cpu, secs) if secs > 0.0 => cpu / secs,
            _ => 0.0,
        };
        let (flood_cpu, _) = cpu_between(flood_start, flood_end, |s| s.cpu);
        let cores_during_flood = (cores(|s| s.cpu), cores(|s| s.harness_cpu), cores(|s| s.machine_cpu));
        let mut lags: Vec<Duration> = Vec::new();
        let mut rows_missing = 0;
        for e in legit.iter().filter(|e| e.request_id.is_some()) {
            match e.request_id.as_deref().and_then(|id| seen.get(id)) {
                Some(first_seen) => lags.push(first_seen.saturating_sub(e.at + e.latency)),
                None => rows_missing += 1,
            }
        }
        lags.sort();
        Judged {
            baseline: latencies(&baseline),
            flooded: latencies(&flooded),
            failed,
            answered: legit.iter().filter(|e| e.request_id.is_some()).count(),
            rss_baseline_mib: mib(at_or_before(flood_start).map_or(0, |s| s.rss_kib)),
            rss_peak_mib: mib(samples.iter().map(|s| s.rss_kib).max().unwrap_or(0)),
            rss_end_mib: mib(samples.last().map_or(0, |s| s.rss_kib)),
            cpu_baseline_share: if base_secs > 0.0 { base_cpu / base_secs } else { 0.0 },
            cpu_flood_secs: flood_cpu,
            cores_during_flood,
            idle_after: idle_at.map(|t| t.saturating_sub(flood_end)),
            rows_missing,
            lag_p50: lags.get(lags.len() / 2).copied().unwrap_or_default(),
            lag_max: lags.last().copied().unwrap_or_default(),
            complete_after: complete_at.map(|t| t.saturating_sub(flood_end)),
        }
    }

    fn verdicts(&self) -> Vec<super::Verdict> {
        let (b99, f99) = (percentile(&self.baseline, 0.99), percentile(&self.flooded, 0.99));
        let when = |d: Option<Duration>| {
            d.map_or_else(|| format!("not within {} s", SETTLE_LIMIT.as_secs()), |d| format!("{} ms", ms(d)))
        };
        vec![
            verdict(
                "legitimate p99 under the flood within 2x of its baseline",
                !self.baseline.is_empty() && !self.flooded.is_empty() && f99 <= 2.0 * b99,
                format!(
                    "baseline p99 {b99:.1} ms ({} requests), under the flood p99 {f99:.1} ms ({} requests): {:.2}x",
                    self.baseline.len(),
                    self.flooded.len(),
                    if b99 > 0.0 { f99 / b99 } else { f64::INFINITY }
                ),
            ),
            verdict(
                format!("server RSS stays under {RSS_BOUND_MIB} MiB"),
                self.rss_peak_mib > 0.0 && self.rss_peak_mib < RSS_BOUND_MIB as f64,
                format!(
                    "before the flood {} MiB, peak {} MiB, at the end {} MiB",
                    self.rss_baseline_mib, self.rss_peak_mib, self.rss_end_mib
                ),
            ),
            verdict(
                format!("every legitimate request's audit row present within {} s", AUDIT_LAG_BOUND.as_secs()),
                self.answered > 0 && self.rows_missing == 0 && self.lag_max <= AUDIT_LAG_BOUND,
                format!(
                    "{} answered, {} rows missing; lag after the answer p50 {} ms, max {} ms (polled every 500 ms); \
                     all present {} after the flood",
                    self.answered,
                    self.rows_missing,
                    ms(self.lag_p50),
                    ms(self.lag_max),
                    when(self.complete_after)
                ),
            ),
            verdict(
                format!(
                    "server CPU back under {:.0} % of a core within {} s of the flood",
                    IDLE_CORE_SHARE * 100.0,
                    IDLE_BOUND.as_secs()
                ),
                self.idle_after.is_some_and(|d| d <= IDLE_BOUND),
                format!(
                    "baseline {:.0} % of a core; {:.1} s of CPU during the flood; idle {} after it",
                    self.cpu_baseline_share * 100.0,
                    self.cpu_flood_secs,
                    when(self.idle_after)
                ),
            ),
            verdict(
                "every legitimate request answered 2xx",
                self.failed.is_empty(),
                format!("not 2xx: {:?}", self.failed),
            ),
        ]
    }

    fn facts(&self) -> serde_json::Value {
        let summary = |v: &[f64]| json!({"requests": v.len(), "p50Ms": percentile(v, 0.5), "p99Ms": percentile(v, 0.99), "maxMs": v.last()});
        json!({
            "baseline": summary(&self.baseline),
            "underFlood": summary(&self.flooded),
            "notOk": self.failed,
            "rssMiB": {"beforeFlood": self.rss_baseline_mib, "peak": self.rss_peak_mib, "end": self.rss_end_mib},
            "auditLagMs": {"p50": ms(self.lag_p50), "max": ms(self.lag_max), "rowsMissing": self.rows_missing},
            "idleAfterFloodMs": self.idle_after.map(ms),
            "coresDuringFlood": {
                "server": round2(self.cores_during_flood.0),
                "harness": round2(self.cores_during_flood.1),
                "machine": round2(self.cores_during_flood.2),
            },
        })
    }
}
