//! `loadtest overhead`: what the middleware stack costs per request, measured in process.
//!
//! Method: the server's own router (`intellifill::testing::app`, the same function the server
//! serves) is driven with `tower::ServiceExt::oneshot`, sequentially, so no socket, no HTTP parsing and no
//! queueing are measured. Against it, the same database work is timed alone on a dedicated connection of the
//! runtime role, with the same statements sent the same way (unnamed statements, the first round trip
//! pipelined). The difference is the cost of everything else: request id, panic catcher, timeout, body
//! limit, rate limits (leased from Redis, or in process), audit capture, auth (an L1 token-cache hit), the
//! org-context extractor and JSON serialization. Every round runs one block of each probe the chosen pairs need
//! (the order rotates), each pair's difference is taken within the round, and the median over the rounds is
//! reported: drift, the order of the blocks and a round disturbed by something else on this small VM cancel
//! out, and the pairs can be subtracted from each other (a first version interleaved single requests and swung
//! by +-40 us between runs; a second measured the pairs one after the other, so they drifted apart). Measured
//! with Redis (rate-limit leases) and without (in-process GCRA).

mod measure;
mod probes;

use std::time::{Duration, Instant};

use anyhow::Result;
use serde::Serialize;

use crate::load::Latency;
use crate::seed;
use crate::stack::{InProcess, Stack};
use probes::{LAYERS, Probe, Target};

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct OverheadArgs {
    /// Rounds: each round is one block of every probe the chosen pairs need, in rotating order.
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
    /// body-limit, admission (per-ip limit + audit), route-steps (route facts, auth, per-caller limits; the
    /// caller is then put in by a bare layer). The request id, panic catcher and timeout are always there.
    #[arg(long = "drop-layer", value_parser = LAYERS)]
    pub drop_layers: Vec<String>,
    /// Add this many pass-through `from_fn` layers (no work) outside the stack the no-op probes run behind:
    /// what the layer machinery alone costs.
    #[arg(long, default_value_t = 0)]
    pub dummy_layers: usize,
    /// Requests in flight in each block (1 = one after the other). Above 1 the report's `per request` figures
    /// are the block's wall time divided by its requests: with everything on one CPU (`taskset -c 0`) that is
    /// the CPU every process spends per request at saturation, so its difference is what the stack costs per
    /// request under load. The server's pool and the dedicated connections of the `*-db` probes get this size.
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// Measure only these pairs (repeatable; default all): whole, whole-routed, route, layers-in-place,
    /// org-context, org-context-routed, stack, pool, session-handler, session, list.
    #[arg(long = "pair", value_parser = probes::parse_pair)]
    pub pairs: Vec<String>,
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
    /// Once Postgres, Redis and the emulator are running, move every thread of this process (the server and
    /// the harness) to this CPU, leaving the helpers on the CPUs the command was started with: the database
    /// on a core of its own, as on a separate host. Start the command with `taskset -c <others>`.
    #[arg(long)]
    pub server_cpu: Option<usize>,
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Series {
    pub name: String,
    pub latency: Latency,
}

/// One pair's difference (with the stack minus without it), from alternating blocks.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Difference {
    pub route: String,
    pub rounds: u64,
    /// Timed requests of each side.
    pub requests: u64,
    /// Median over the rounds of the blocks' p50 difference, and the rounds' quartiles of it.
    pub p50_us: i64,
    pub p50_q1_us: i64,
    pub p50_q3_us: i64,
    /// Median over the rounds of the difference of the blocks' wall time per request (with `--concurrency` above
    /// 1: the CPU per request at saturation, everything on one CPU), and its quartiles.
    pub per_request_us: f64,
    pub per_request_q1_us: f64,
    pub per_request_q3_us: f64,
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
    /// Heap allocations and bytes allocated per request (all threads), each side.
    pub allocations_with: (u64, u64),
    pub allocations_without: (u64, u64),
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Variant {
    pub name: String,
    /// Every probe's latency over all its timed blocks.
    pub series: Vec<Series>,
    pub overhead: Vec<Difference>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct OverheadReport {
    #[serde(flatten)]
    pub provenance: crate::run::Provenance,
    pub method: &'static str,
    pub target_us: u64,
    pub variants: Vec<Variant>,
}

async fn variant(stack: &Stack, args: &OverheadArgs, with_redis: bool, deadline: Instant) -> Result<Variant> {
    let mut settings = stack.settings(args.concurrency.max(4));
    if !with_redis {
        settings.remove("REDIS_URL");
    }
    for (var, value) in &args.server_env {
        settings.set(var, value.clone());
    }
    let server = InProcess::start(&settings).await?;
    let seeded = seed::seed(stack, server.addr, 1, 1, 20).await?;
    let target = Target::build(
        &server.state,
        &stack.runtime_url,
        &seeded.users[0],
        &args.drop_layers,
        args.dummy_layers,
        args.concurrency,
    )
    .await?;
    let result = match args.only {
        Some(only) => measure::alone(&server, &target, args, only, deadline).await,
        None => measure::pairs(&server, &target, args, deadline).await,
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

pub(crate) async fn run(args: OverheadArgs, command: String) -> Result<OverheadReport> {
    let provenance = crate::run::Provenance::now(command);
    let deadline = Instant::now() + Duration::from_secs(args.max_secs);
    eprintln!("[overhead] starting Postgres, Redis, the auth emulator ...");
    let stack = Stack::start(true).await?;
    if let Some(cpu) = args.server_cpu {
        pin_process(cpu)?;
    }
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
        provenance,
        method: "tower oneshot on the server's router in a spawned task (sequential, in process) against the same transaction, also in a spawned task, on a dedicated runtime-role connection; in every round one block of each probe the pairs need (order rotating, reversed every other round), each pair's difference taken within the round, the median over the rounds. CPU: process CPU time and context switches over the blocks, audit writer flushed at the end of each",
        target_us: 50,
        variants,
    })
}

/// Every thread of this process to `cpu` (threads started later inherit it); child processes keep theirs.
fn pin_process(cpu: usize) -> Result<()> {
    let status = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", &cpu.to_string(), &std::process::id().to_string()])
        .stdout(std::process::Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "taskset could not move this process to CPU {cpu}");
    eprintln!("[overhead] server and harness on CPU {cpu}; Postgres, Redis and the emulator stay where they started");
    Ok(())
}

pub(crate) fn print(r: &OverheadReport) {
    println!("loadtest overhead, {} ({})", r.provenance.date, r.provenance.command);
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
                 wall time per request {:.1} us ({:.1}..{:.1}); cpu {:.1} us/request ({:.1} vs {:.1}); context switches/request {:.2} vs {:.2}; allocations/request {} vs {} ({} vs {} bytes); {} rounds, {} requests each side",
                d.route,
                d.p50_us,
                d.p50_q1_us,
                d.p50_q3_us,
                d.mean_us,
                d.p90_us,
                r.target_us,
                d.per_request_us,
                d.per_request_q1_us,
                d.per_request_q3_us,
                d.cpu_us,
                d.cpu_with_us,
                d.cpu_without_us,
                d.switches_with,
                d.switches_without,
                d.allocations_with.0,
                d.allocations_without.0,
                d.allocations_with.1,
                d.allocations_without.1,
                d.rounds,
                d.requests
            );
        }
    }
}
