//! The closed-loop load driver: C workers, each with its own keep-alive connection, each sending its next
//! request as soon as the previous answer is read, for a duration and a request bound. Latencies go to
//! hdrhistograms (microseconds, 3 significant digits) sharded behind mutexes; statuses and error codes are
//! counted. Closed-loop: the latencies are those of a client that waits (no coordinated-omission correction).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{HeaderValue, Method};
use rand::Rng;
use serde::Serialize;
use uuid::Uuid;

use crate::client::Conn;
use crate::seed::{WORDS, content};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Op {
    List,
    Search,
    Create,
    Delete,
    Hello,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::List => "list",
            Op::Search => "search",
            Op::Create => "create",
            Op::Delete => "delete",
            Op::Hello => "hello",
        }
    }
}

/// Weighted operations, e.g. `list=70,search=15,create=10,delete=5`.
#[derive(Debug, Clone)]
pub(crate) struct Mix(Vec<(Op, u32)>);

impl FromStr for Mix {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Mix> {
        let mut ops = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part.split_once('=').ok_or_else(|| anyhow!("expected op=weight, got {part:?}"))?;
            let op = match name.trim() {
                "list" => Op::List,
                "search" => Op::Search,
                "create" => Op::Create,
                "delete" => Op::Delete,
                "hello" => Op::Hello,
                other => bail!("unknown operation {other:?} (list, search, create, delete, hello)"),
            };
            let weight: u32 = weight.trim().parse().map_err(|_| anyhow!("bad weight in {part:?}"))?;
            if weight > 0 {
                ops.push((op, weight));
            }
        }
        if ops.is_empty() {
            bail!("the mix is empty");
        }
        Ok(Mix(ops))
    }
}

impl std::fmt::Display for Mix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(op, w)| format!("{}={w}", op.name())).collect();
        f.write_str(&parts.join(","))
    }
}

impl Mix {
    pub(crate) fn only(op: Op) -> Mix {
        Mix(vec![(op, 1)])
    }

    fn pick(&self, rng: &mut impl Rng) -> Op {
        let total: u32 = self.0.iter().map(|(_, w)| w).sum();
        let mut n = rng.gen_range(0..total);
        for (op, w) in &self.0 {
            if n < *w {
                return *op;
            }
            n -= w;
        }
        self.0[0].0
    }
}

/// Who a worker acts as.
#[derive(Debug, Clone)]
pub(crate) struct Actor {
    pub org: Uuid,
    pub auth: HeaderValue,
}

#[derive(Debug, Clone)]
pub(crate) struct LoadSpec {
    pub addr: SocketAddr,
    pub concurrency: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub max_requests: u64,
    pub mix: Mix,
    pub actors: Arc<Vec<Actor>>,
    pub request_timeout: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Latency {
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl Latency {
    pub(crate) fn of(h: &Histogram<u64>) -> Latency {
        Latency {
            count: h.len(),
            mean_us: (h.mean() * 10.0).round() / 10.0,
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct LoadResult {
    pub concurrency: usize,
    pub mix: String,
    pub measured_secs: f64,
    /// Responses (any status) whose request started in the measured window.
    pub responses: u64,
    pub throughput_rps: f64,
    /// 2xx responses per second.
    pub ok_rps: f64,
    pub latency: Latency,
    pub per_op: BTreeMap<Op, Latency>,
    pub statuses: BTreeMap<u16, u64>,
    pub error_codes: BTreeMap<String, u64>,
    /// 503 answers with / without a `Retry-After` header.
    pub shed_503_with_retry_after: u64,
    pub shed_503_without_retry_after: u64,
    /// Requests without an answer: connection errors, and client-side timeouts.
    pub transport_errors: u64,
    pub timeouts: u64,
    pub connects: u64,
    /// Requests answered in the warm-up and the measured window together: the denominator of a resource
    /// sampled around the whole phase (Postgres CPU per request).
    pub all_requests: u64,
    /// Time to open every worker's connection before the run.
    pub connect_secs: f64,
}

impl LoadResult {
    pub(crate) fn server_errors(&self) -> u64 {
        self.statuses.iter().filter(|(s, _)| **s >= 500).map(|(_, n)| n).sum()
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid histogram bounds")
}

struct Shard {
    all: Histogram<u64>,
    per_op: BTreeMap<Op, Histogram<u64>>,
    statuses: BTreeMap<u16, u64>,
    codes: BTreeMap<String, u64>,
    shed_with: u64,
    shed_without: u64,
    transport: u64,
    timeouts: u64,
}

impl Shard {
    fn new() -> Shard {
        Shard {
            all: histogram(),
            per_op: BTreeMap::new(),
            statuses: BTreeMap::new(),
            codes: BTreeMap::new(),
            shed_with: 0,
            shed_without: 0,
            transport: 0,
            timeouts: 0,
        }
    }
}

enum Outcome {
    Answer { status: u16, code: Option<String>, retry_after: bool },
    Transport,
    Timeout,
}

struct Shared {
    spec: LoadSpec,
    shards: Vec<Mutex<Shard>>,
    issued: AtomicU64,
    last_end_us: AtomicU64,
    warmup_requests: AtomicU64,
    ready: AtomicUsize,
}

impl Shared {
    fn record(&self, worker: usize, op: Op, micros: u64, outcome: Outcome) {
        let mut s = self.shards[worker % self.shards.len()].lock().unwrap_or_else(|p| p.into_inner());
        s.all.saturating_record(micros.max(1));
        s.per_op.entry(op).or_insert_with(histogram).saturating_record(micros.max(1));
        match outcome {
            Outcome::Answer { status, code, retry_after } => {
                *s.statuses.entry(status).or_default() += 1;
                if let Some(code) = code {
                    *s.codes.entry(code).or_default() += 1;
                }
                if status == 503 {
                    if retry_after {
                        s.shed_with += 1;
                    } else {
                        s.shed_without += 1;
                    }
                }
            }
            Outcome::Transport => s.transport += 1,
            Outcome::Timeout => s.timeouts += 1,
        }
    }
}

/// Run the load described by `spec`.
pub(crate) async fn run(spec: LoadSpec) -> Result<LoadResult> {
    if spec.actors.is_empty() && spec.mix.0.iter().any(|(op, _)| *op != Op::Hello) {
        bail!("no actors to send API requests as");
    }
    let shards = (0..spec.concurrency.clamp(1, 32)).map(|_| Mutex::new(Shard::new())).collect();
    let shared = Arc::new(Shared {
        spec: spec.clone(),
        shards,
        issued: AtomicU64::new(0),
        last_end_us: AtomicU64::new(0),
        warmup_requests: AtomicU64::new(0),
        ready: AtomicUsize::new(0),
    });

    // Open every connection first (at most 256 connects at a time: the listen backlog is finite).
    let connect_started = Instant::now();
    let gate = Arc::new(tokio::sync::Semaphore::new(256));
    let (go_tx, go_rx) = tokio::sync::watch::channel::<Option<Instant>>(None);
    let mut workers = Vec::with_capacity(spec.concurrency);
    for w in 0..spec.concurrency {
        let shared = shared.clone();
        let gate = gate.clone();
        let mut go = go_rx.clone();
        workers.push(tokio::spawn(async move {
            let mut conn = Conn::new(shared.spec.addr);
            {
                let _permit = gate.acquire().await;
                let deadline = Instant::now() + Duration::from_secs(30);
                while conn.connect(Duration::from_secs(5)).await.is_err() && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            shared.ready.fetch_add(1, Ordering::Relaxed);
            let start = loop {
                if let Some(start) = *go.borrow_and_update() {
                    break start;
                }
                if go.changed().await.is_err() {
                    return conn.connects;
                }
            };
            worker(w, &shared, &mut conn, start).await;
            conn.connects
        }));
    }
    let connect_deadline = Instant::now() + Duration::from_secs(120);
    while shared.ready.load(Ordering::Relaxed) < spec.concurrency && Instant::now() < connect_deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connect_secs = connect_started.elapsed().as_secs_f64();
    let start = Instant::now();
    let _ = go_tx.send(Some(start));
    let mut connects = 0;
    for w in workers {
        connects += w.await.unwrap_or(0);
    }
    let measure_start = spec.warmup;
    let end = Duration::from_micros(shared.last_end_us.load(Ordering::Relaxed)).min(spec.warmup + spec.duration);
    let measured = end.saturating_sub(measure_start).max(Duration::from_millis(1));

    let mut total = Shard::new();
    for s in &shared.shards {
        let s = s.lock().unwrap_or_else(|p| p.into_inner());
        total.all.add(&s.all).map_err(|e| anyhow!("{e:?}"))?;
        for (op, h) in &s.per_op {
            total.per_op.entry(*op).or_insert_with(histogram).add(h).map_err(|e| anyhow!("{e:?}"))?;
        }
        for (k, v) in &s.statuses {
            *total.statuses.entry(*k).or_default() += v;
        }
        for (k, v) in &s.codes {
            *total.codes.entry(k.clone()).or_default() += v;
        }
        total.shed_with += s.shed_with;
        total.shed_without += s.shed_without;
        total.transport += s.transport;
        total.timeouts += s.timeouts;
    }
    let responses: u64 = total.statuses.values().sum();
    let ok: u64 = total.statuses.iter().filter(|(s, _)| (200..300).contains(*s)).map(|(_, n)| n).sum();
    let secs = measured.as_secs_f64();
    Ok(LoadResult {
        concurrency: spec.concurrency,
        mix: spec.mix.to_string(),
        measured_secs: (secs * 1000.0).round() / 1000.0,
        responses,
        throughput_rps: (responses as f64 / secs * 10.0).round() / 10.0,
        ok_rps: (ok as f64 / secs * 10.0).round() / 10.0,
        latency: Latency::of(&total.all),
        per_op: total.per_op.iter().map(|(op, h)| (*op, Latency::of(h))).collect(),
        statuses: total.statuses,
        error_codes: total.codes,
        shed_503_with_retry_after: total.shed_with,
        shed_503_without_retry_after: total.shed_without,
        transport_errors: total.transport,
        timeouts: total.timeouts,
        connects: connects.saturating_sub(spec.concurrency as u64),
        all_requests: responses + total.transport + total.timeouts + shared.warmup_requests.load(Ordering::Relaxed),
        connect_secs: (connect_secs * 1000.0).round() / 1000.0,
    })
}

async fn worker(w: usize, shared: &Shared, conn: &mut Conn, start: Instant) {
    let spec = &shared.spec;
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_entropy();
    let actor = spec.actors.get(w % spec.actors.len().max(1)).cloned();
    let mut created: Vec<Uuid> = Vec::new();
    let warm_end = start + spec.warmup;
    let end = warm_end + spec.duration;
    let mut seq = w * 1_000_000;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let measured = now >= warm_end;
        if measured && shared.issued.fetch_add(1, Ordering::Relaxed) >= spec.max_requests {
            break;
        }
        let mut op = spec.mix.pick(&mut rng);
        if op == Op::Delete && created.is_empty() {
            op = Op::Create;
        }
        seq += 1;
        let (method, path, body) = match (&actor, op) {
            (_, Op::Hello) => (Method::GET, "/".to_owned(), None),
            (None, _) => return,
            (Some(a), Op::List) => (Method::GET, format!("/api/organizations/{}/knowledge", a.org), None),
            (Some(a), Op::Search) => {
                let q = WORDS[rng.gen_range(0..WORDS.len())];
                (Method::GET, format!("/api/organizations/{}/knowledge/search?q={q}", a.org), None)
            }
            (Some(a), Op::Create) => {
                let body = serde_json::json!({"title": format!("Load {seq}"), "content": content(seq, 30)});
                (Method::POST, format!("/api/organizations/{}/knowledge", a.org), Some(Bytes::from(body.to_string())))
            }
            (Some(a), Op::Delete) => {
                let id = created.pop().unwrap_or_default();
                (Method::DELETE, format!("/api/organizations/{}/knowledge/{id}", a.org), None)
            }
        };
        let auth = actor.as_ref().filter(|_| op != Op::Hello).map(|a| &a.auth);
        let t0 = Instant::now();
        let result = tokio::time::timeout(spec.request_timeout, conn.send(method, &path, auth, body)).await;
        let micros = t0.elapsed().as_micros() as u64;
        let outcome = match result {
            Ok(Ok(resp)) => {
                if op == Op::Create
                    && resp.status == 201
                    && let Some(id) = resp.json()["id"].as_str().and_then(|s| s.parse().ok())
                {
                    created.push(id);
                }
                Outcome::Answer { status: resp.status, code: resp.code(), retry_after: resp.retry_after }
            }
            Ok(Err(_)) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                Outcome::Transport
            }
            Err(_) => {
                conn.reset();
                Outcome::Timeout
            }
        };
        if measured {
            shared.record(w, op, micros, outcome);
            let end_us = start.elapsed().as_micros() as u64;
            shared.last_end_us.fetch_max(end_us, Ordering::Relaxed);
        } else {
            shared.warmup_requests.fetch_add(1, Ordering::Relaxed);
        }
    }
}
