//! `loadtest run`: the embedded stack, the server as a child process, seeding, then four phases at the same
//! concurrency: the mixed workload, a list-only workload, the pgbench ceiling of the list transaction, and
//! a hello-world axum server (the HTTP ceiling of the machine).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use http::{HeaderValue, Method};
use serde::Serialize;
use serde_json::Value;

use crate::client::Conn;
use crate::load::{self, Actor, LoadResult, LoadSpec, Mix, Op};
use crate::pgbench::{self, PgbenchResult};
use crate::seed::{self, Seeded};
use crate::stack::{self, ChildServer, Stack};

mod print;

pub(crate) use print::print;

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct RunArgs {
    /// Organizations to seed.
    #[arg(long, default_value_t = 10)]
    pub orgs: usize,
    /// Users per organization.
    #[arg(long, default_value_t = 10)]
    pub users: usize,
    /// Concurrent workers (one keep-alive connection each).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Measured duration of each phase.
    #[arg(long, default_value_t = 30)]
    pub duration_secs: u64,
    /// Unmeasured warm-up before each phase.
    #[arg(long, default_value_t = 2)]
    pub warmup_secs: u64,
    /// Bound on the measured requests of each phase.
    #[arg(long, default_value_t = 10_000_000)]
    pub max_requests: u64,
    /// Operation mix of the main phase.
    #[arg(long, default_value = "list=70,search=15,create=10,delete=5")]
    pub mix: Mix,
    /// DB_POOL_MAX_SIZE of the server.
    #[arg(long, default_value_t = 20)]
    pub pool_size: usize,
    /// Knowledge sources seeded per organization (more than a page: the list answers 20 rows and a cursor).
    #[arg(long, default_value_t = 100)]
    pub knowledge: usize,
    /// pgbench clients are min(concurrency, this): the throwaway cluster has max_connections=300.
    #[arg(long, default_value_t = 250)]
    pub pgbench_max_clients: usize,
    /// Client-side bound on one request.
    #[arg(long, default_value_t = 30)]
    pub request_timeout_secs: u64,
    #[arg(long)]
    pub skip_list_only: bool,
    #[arg(long)]
    pub skip_pgbench: bool,
    #[arg(long)]
    pub skip_hello: bool,
    /// After the phases, this many alternating pairs of list-only and pgbench (`--round-secs` each): on a
    /// shared machine whose speed drifts by minutes, the median of close pairs is the steadier ratio.
    #[arg(long, default_value_t = 0)]
    pub ratio_rounds: usize,
    #[arg(long, default_value_t = 10)]
    pub round_secs: u64,
    /// Extra server setting, VAR=VALUE (repeatable), e.g. `AUDIT_EXCLUDE_PATHS=/health,/health/ready,/metrics,/api/*` to
    /// attribute the cost of one stage.
    #[arg(long = "server-env", value_parser = parse_kv)]
    pub server_env: Vec<(String, String)>,
    /// Postgres setting of the throwaway cluster, NAME=VALUE (repeatable; `ALTER SYSTEM SET`, then a restart),
    /// e.g. `shared_buffers=1GB`. The cluster's command-line settings (fsync, synchronous_commit off) still win.
    #[arg(long = "pg-setting", value_parser = parse_kv)]
    pub pg_settings: Vec<(String, String)>,
    /// Write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

pub(crate) fn parse_kv(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("expected VAR=VALUE, got {s:?}"))?;
    Ok((k.trim().to_owned(), v.to_owned()))
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Machine {
    pub nproc: usize,
    pub cpu: String,
    pub mem_total_kib: u64,
    pub load_average_at_start: String,
    pub note: &'static str,
}

/// When, how and where a command ran: the head of every report (written flat into its JSON).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Provenance {
    pub date: String,
    pub command: String,
    pub machine: Machine,
}

impl Provenance {
    /// `command` starting now, on this machine (its load average as it starts).
    pub(crate) fn now(command: String) -> Provenance {
        let machine = machine();
        let date = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        Provenance { date, command, machine }
    }
}

fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").map(|r| r.trim_start_matches([' ', '\t', ':']).to_owned()))
        .unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_total_kib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    Machine {
        nproc: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        cpu,
        mem_total_kib,
        load_average_at_start: std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim().to_owned(),
        note: "the load generator, the server, Postgres, Redis and the auth emulator all share these cores",
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct ServerStats {
    pub pool_max: u64,
    pub pool_waiting_max: u64,
    pub pool_active_max: u64,
    /// Pool wait percentiles over the last 2,048 acquisitions (server's own figures).
    pub pool_wait: Value,
    pub acquire_timeouts: u64,
    pub token_cache_hits: u64,
    pub token_cache_misses: u64,
    pub token_cache_hit_rate: Option<f64>,
    pub audit_written: u64,
    pub audit_spooled: u64,
    pub audit_dropped: u64,
    pub rate_limiter_store: String,
    pub rss_max_kib: u64,
    pub rss_end_kib: u64,
    pub hwm_kib: u64,
    pub samples: u64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Phase {
    pub name: String,
    pub load: LoadResult,
    pub server: Option<ServerStats>,
    /// CPU the Postgres cluster used during the phase (warm-up included, audit rows written included),
    /// divided by the requests of the phase, warm-up included; in microseconds.
    pub postgres_cpu_us_per_request: Option<f64>,
    /// The same for the server process.
    pub server_cpu_us_per_request: Option<f64>,
}

/// CPU per request from two samples of a CPU clock around a phase.
fn per_request(before: Option<Duration>, after: Option<Duration>, requests: u64) -> Option<f64> {
    let spent = after?.checked_sub(before?)?;
    (requests > 0).then(|| (spent.as_secs_f64() * 1e6 / requests as f64).round())
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct RatioRound {
    pub list_rps: f64,
    pub pgbench_tps: f64,
    pub ratio: f64,
    pub list_postgres_cpu_us_per_request: Option<f64>,
    pub pgbench_postgres_cpu_us_per_tx: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Ratios {
    /// list-only server throughput / pgbench tps of the same transaction.
    pub list_vs_pgbench: Option<f64>,
    /// list-only server throughput / hello-world throughput.
    pub list_vs_hello: Option<f64>,
    /// `--ratio-rounds`: each pair, and the median of their ratios.
    pub list_vs_pgbench_rounds: Vec<RatioRound>,
    pub list_vs_pgbench_median: Option<f64>,
    pub mixed_vs_hello: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct RunReport {
    #[serde(flatten)]
    pub provenance: Provenance,
    pub orgs: usize,
    pub users_per_org: usize,
    pub concurrency: usize,
    pub duration_secs: u64,
    pub pool_size: usize,
    pub server_env: Vec<String>,
    pub open_files_limit: Option<u64>,
    pub mixed: Phase,
    pub list_only: Option<Phase>,
    pub pgbench: Option<PgbenchResult>,
    pub hello: Option<Phase>,
    pub ratios: Ratios,
    pub generator_rss_kib: u64,
    pub generator_hwm_kib: u64,
}

/// Reads the server's own figures over HTTP (`/health/detailed` as the platform ADMIN, `/metrics`).
pub(crate) struct Observer {
    addr: SocketAddr,
    admin: HeaderValue,
    pid: Option<u32>,
}

#[derive(Debug, Default, Clone)]
struct Samples {
    waiting_max: u64,
    active_max: u64,
    rss_max: u64,
    count: u64,
}

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok()).flatten()
    })
}

impl Observer {
    pub(crate) async fn detailed(&self) -> Result<Value> {
        let mut conn = Conn::new(self.addr);
        let mut last = String::new();
        for _ in 0..20 {
            match conn.send(Method::GET, "/health/detailed", Some(&self.admin), None).await {
                Ok(r) if r.status == 200 => return Ok(r.json()),
                Ok(r) => last = format!("{} {}", r.status, String::from_utf8_lossy(&r.body)),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        bail!("/health/detailed did not answer: {last}")
    }

    /// Wait until the audit queue and spool are empty (bounded).
    pub(crate) async fn drain_audit(&self, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let d = self.detailed().await?;
            if d["audit"]["queue"].as_u64() == Some(0) && d["audit"]["spooled"].as_u64() == Some(0) {
                return Ok(());
            }
            if Instant::now() > deadline {
                eprintln!("warning: the audit queue did not drain within {within:?}: {}", d["audit"]);
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    fn sample(&self, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Samples> {
        let addr = self.addr;
        let pid = self.pid;
        tokio::spawn(async move {
            let mut conn = Conn::new(addr);
            let mut s = Samples::default();
            // Bounded: at most one hour of samples.
            for _ in 0..14_400 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                if let Ok(Ok(r)) =
                    tokio::time::timeout(Duration::from_secs(2), conn.send(Method::GET, "/metrics", None, None)).await
                {
                    let text = String::from_utf8_lossy(&r.body);
                    s.waiting_max = s.waiting_max.max(metric(&text, "db_pool_waiting").unwrap_or(0.0) as u64);
                    s.active_max =
                        s.active_max.max(metric(&text, "db_pool_connections{state=\"active\"}").unwrap_or(0.0) as u64);
                }
                s.rss_max = s.rss_max.max(stack::memory_kib(pid).0);
                s.count += 1;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            s
        })
    }
}

fn counter(v: &Value, path: &[&str]) -> u64 {
    path.iter().fold(v, |v, k| &v[*k]).as_u64().unwrap_or(0)
}

async fn phase(name: &str, spec: LoadSpec, observer: Option<&Observer>, pg_data: Option<&Path>) -> Result<Phase> {
    eprintln!(
        "[loadtest] phase {name}: {} workers, {}s (+{}s warm-up), mix {}",
        spec.concurrency,
        spec.duration.as_secs(),
        spec.warmup.as_secs(),
        spec.mix
    );
    let Some(observer) = observer else {
        let load = load::run(spec).await?;
        return Ok(Phase {
            name: name.to_owned(),
            load,
            server: None,
            postgres_cpu_us_per_request: None,
            server_cpu_us_per_request: None,
        });
    };
    let before = observer.detailed().await?;
    let pg_before = pg_data.and_then(stack::postgres_cpu_time);
    let server_before = observer.pid.and_then(stack::cpu_time);
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = observer.sample(stop.clone());
    let load = load::run(spec).await?;
    stop.store(true, Ordering::Relaxed);
    let samples = sampler.await.unwrap_or_default();
    let after = observer.detailed().await?;
    let delta = |path: &[&str]| counter(&after, path).saturating_sub(counter(&before, path));
    let hits = delta(&["tokenCache", "hits"]);
    let misses = delta(&["tokenCache", "misses"]);
    let (rss_end, hwm) = stack::memory_kib(observer.pid);
    let server = ServerStats {
        pool_max: counter(&after, &["db", "pool", "max"]),
        pool_waiting_max: samples.waiting_max,
        pool_active_max: samples.active_max,
        pool_wait: after["db"]["waitTime"].clone(),
        acquire_timeouts: delta(&["db", "acquireTimeouts"]),
        token_cache_hits: hits,
        token_cache_misses: misses,
        token_cache_hit_rate: (hits + misses > 0).then(|| hits as f64 / (hits + misses) as f64),
        audit_written: delta(&["audit", "written"]),
        audit_spooled: delta(&["audit", "spooledTotal"]),
        audit_dropped: counter(&after, &["audit", "dropped"]),
        rate_limiter_store: after["rateLimiter"]["store"].as_str().unwrap_or("").to_owned(),
        rss_max_kib: samples.rss_max.max(rss_end),
        rss_end_kib: rss_end,
        hwm_kib: hwm,
        samples: samples.count,
    };
    observer.drain_audit(Duration::from_secs(120)).await?;
    let postgres_cpu_us_per_request =
        per_request(pg_before, pg_data.and_then(stack::postgres_cpu_time), load.all_requests);
    let server_cpu_us_per_request =
        per_request(server_before, observer.pid.and_then(stack::cpu_time), load.all_requests);
    Ok(Phase {
        name: name.to_owned(),
        load,
        server: Some(server),
        postgres_cpu_us_per_request,
        server_cpu_us_per_request,
    })
}

pub(crate) async fn run(args: RunArgs, command: String) -> Result<RunReport> {
    let provenance = Provenance::now(command);
    let limit = stack::open_files_limit();
    if let Some(limit) = limit
        && (limit as usize) < args.concurrency + 512
    {
        eprintln!(
            "warning: the open-files limit ({limit}) is below concurrency + 512; raise it with `ulimit -n` (scripts/bench does)"
        );
    }
    eprintln!("[loadtest] starting Postgres, Redis, the auth emulator ...");
    let stack = Stack::start(true).await?;
    stack.set_postgres(&args.pg_settings).await?;
    let mut settings = stack.settings(args.pool_size);
    for (var, value) in &args.server_env {
        settings.set(var, value.clone());
    }
    // Fail early on a misspelt variable.
    settings.serve_args()?;
    let server = ChildServer::spawn("__serve", settings.vars(), &stack.dir.path().join("server.log")).await?;
    eprintln!(
        "[loadtest] server (pid {}) on {}; seeding {} orgs x {} users ...",
        server.pid, server.addr, args.orgs, args.users
    );
    let seeded: Seeded = seed::seed(&stack, server.addr, args.orgs, args.users, args.knowledge).await?;
    let observer = Observer { addr: server.addr, admin: seeded.admin.auth.clone(), pid: Some(server.pid) };
    let actors: Arc<Vec<Actor>> =
        Arc::new(seeded.users.iter().map(|u| Actor { org: u.org, auth: u.auth.clone() }).collect());
    let spec = |addr: SocketAddr, mix: Mix| LoadSpec {
        addr,
        concurrency: args.concurrency,
        warmup: Duration::from_secs(args.warmup_secs),
        duration: Duration::from_secs(args.duration_secs),
        max_requests: args.max_requests,
        mix,
        actors: actors.clone(),
        request_timeout: Duration::from_secs(args.request_timeout_secs),
    };

    let pg_data = Some(stack.pg.data_dir());
    let mixed = phase("mixed", spec(server.addr, args.mix.clone()), Some(&observer), pg_data).await?;
    let list_only = if args.skip_list_only {
        None
    } else {
        Some(phase("list-only", spec(server.addr, Mix::only(Op::List)), Some(&observer), pg_data).await?)
    };

    let pairs: Vec<_> = seeded.users.iter().map(|u| (u.id, u.org)).collect();
    let clients = args.concurrency.min(args.pgbench_max_clients).max(1);
    let run_pgbench = async |secs: u64| -> Result<PgbenchResult> {
        eprintln!("[loadtest] phase pgbench: {clients} clients, {secs}s");
        let before = stack::postgres_cpu_time(stack.pg.data_dir());
        let mut result = pgbench::run(pgbench::PgbenchRun {
            dir: stack.dir.path(),
            pairs: &pairs,
            port: stack.pg.port(),
            user: intellifill::testing::schema::RUNTIME_ROLE,
            password: &stack.runtime_password,
            database: stack::DATABASE,
            clients,
            threads: 2,
            duration: Duration::from_secs(secs),
        })
        .await?;
        result.postgres_cpu_us_per_tx =
            per_request(before, stack::postgres_cpu_time(stack.pg.data_dir()), result.transactions.unwrap_or(0));
        Ok(result)
    };
    let mut rounds = Vec::new();
    for i in 0..args.ratio_rounds {
        let mut round = spec(server.addr, Mix::only(Op::List));
        round.warmup = Duration::from_secs(1);
        round.duration = Duration::from_secs(args.round_secs);
        let list = phase(&format!("list-only round {}", i + 1), round, Some(&observer), pg_data).await?;
        let pg = run_pgbench(args.round_secs).await?;
        let ratio = if pg.tps > 0.0 { list.load.ok_rps / pg.tps } else { 0.0 };
        eprintln!(
            "[loadtest] round {}: {:.0} req/s / {:.0} tps = {:.1} %",
            i + 1,
            list.load.ok_rps,
            pg.tps,
            ratio * 100.0
        );
        rounds.push(RatioRound {
            list_rps: list.load.ok_rps,
            pgbench_tps: pg.tps,
            ratio,
            list_postgres_cpu_us_per_request: list.postgres_cpu_us_per_request,
            pgbench_postgres_cpu_us_per_tx: pg.postgres_cpu_us_per_tx,
        });
    }
    server.stop().await.context("stopping the server")?;

    let pgbench = if args.skip_pgbench { None } else { Some(run_pgbench(args.duration_secs).await?) };

    let hello = if args.skip_hello {
        None
    } else {
        let hello = ChildServer::spawn("__hello", &[], &stack.dir.path().join("hello.log")).await?;
        let phase = phase("hello", spec(hello.addr, Mix::only(Op::Hello)), None, None).await?;
        hello.stop().await?;
        Some(phase)
    };

    let ratio = |a: f64, b: f64| (b > 0.0).then(|| (a / b * 1000.0).round() / 1000.0);
    let list_rps = list_only.as_ref().map(|p| p.load.ok_rps);
    let hello_rps = hello.as_ref().map(|p| p.load.ok_rps);
    let ratios = Ratios {
        list_vs_pgbench: list_rps.zip(pgbench.as_ref().map(|p| p.tps)).and_then(|(a, b)| ratio(a, b)),
        list_vs_hello: list_rps.zip(hello_rps).and_then(|(a, b)| ratio(a, b)),
        mixed_vs_hello: hello_rps.and_then(|h| ratio(mixed.load.ok_rps, h)),
        list_vs_pgbench_median: median(rounds.iter().map(|r| r.ratio).collect()),
        list_vs_pgbench_rounds: rounds,
    };
    let (generator_rss_kib, generator_hwm_kib) = stack::memory_kib(None);
    Ok(RunReport {
        provenance,
        orgs: args.orgs,
        users_per_org: args.users,
        concurrency: args.concurrency,
        duration_secs: args.duration_secs,
        pool_size: args.pool_size,
        server_env: args.server_env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        open_files_limit: limit,
        mixed,
        list_only,
        pgbench,
        hello,
        ratios,
        generator_rss_kib,
        generator_hwm_kib,
    })
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len().is_multiple_of(2) { (values[mid - 1] + values[mid]) / 2.0 } else { values[mid] })
}
