//! How `loadtest overhead` measures: blocks of one probe, CPU time and context switches of the process, pairs
//! in alternating rounds, the `--only` loop and the `--thrash-kib` buffer.

use std::time::{Duration, Instant};

use anyhow::Result;
use futures::StreamExt;
use hdrhistogram::Histogram;

use super::probes::{PAIRS, Pair, Probe, Target};
use super::{Difference, OverheadArgs, Series};
use crate::load::Latency;
use crate::stack::InProcess;

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

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

/// `--only`: one probe (`--concurrency` requests in flight), for a profiler attached to the process; bounded
/// by `deadline` like the pairs.
pub(super) async fn alone(
    server: &InProcess,
    target: &Target<'_>,
    args: &OverheadArgs,
    probe: Probe,
    deadline: Instant,
) -> Result<(Vec<Series>, Vec<Difference>)> {
    let mut thrash = Thrash::new(args.thrash_kib);
    let allocations = alloc_tracker::Session::new();
    let measured = async {
        block(server, target, probe, args.warmup, args.concurrency, &mut thrash, &alloc_tracker::Session::new())
            .await?;
        block(server, target, probe, args.requests, args.concurrency, &mut thrash, &allocations).await
    };
    let timed = tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), measured)
        .await
        .map_err(|_| anyhow::anyhow!("--only {} did not finish within --max-secs", probe.name()))??;
    let per_request = |d: Duration| d.as_secs_f64() * 1e6 / args.requests.max(1) as f64;
    let (count, bytes) = mean_allocations(&allocations, probe);
    eprintln!(
        "[overhead] {}: wall time {:.1} us/request, process cpu {:.1} us/request, {count} allocations ({bytes} bytes) \
         per request",
        probe.name(),
        per_request(timed.wall),
        per_request(timed.cpu)
    );
    Ok((vec![Series { name: probe.name().to_owned(), latency: Latency::of(&timed.latency) }], Vec::new()))
}

/// Mean allocations and bytes per request of `probe`'s blocks (all threads, so the audit writer's share too).
fn mean_allocations(allocations: &alloc_tracker::Session, probe: Probe) -> (u64, u64) {
    let report = allocations.to_report();
    report
        .operations()
        .find(|(name, _)| *name == probe.name())
        .map(|(_, op)| (op.mean_allocations(), op.mean_bytes()))
        .unwrap_or_default()
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
    wall: Duration,
    cpu: Duration,
    switches: u64,
}

/// `n` requests of `probe` in a row; the audit writer is flushed before the clocks stop, so the rows the block
/// caused are written in it.
/// With `concurrency` above 1, that many requests are in flight at a time (no `--thrash-kib` then).
/// Allocations (all threads) are recorded in `allocations` under the probe's name.
async fn block(
    server: &InProcess,
    target: &Target<'_>,
    probe: Probe,
    n: u64,
    concurrency: usize,
    thrash: &mut Thrash,
    allocations: &alloc_tracker::Session,
) -> Result<Block> {
    let mut latency = histogram();
    let (cpu0, switches0) = (process_cpu(), process_switches());
    let counted = allocations.operation(probe.name()).measure_process().iterations(n.max(1));
    let started = Instant::now();
    if concurrency <= 1 {
        for _ in 0..n {
            thrash.run();
            let t0 = Instant::now();
            target.run(probe).await?;
            latency.saturating_record((t0.elapsed().as_micros() as u64).max(1));
        }
    } else {
        let mut timed = futures::stream::iter(0..n)
            .map(|_| async move {
                let t0 = Instant::now();
                target.run(probe).await.map(|()| t0.elapsed())
            })
            .buffer_unordered(concurrency);
        while let Some(took) = timed.next().await {
            latency.saturating_record((took?.as_micros() as u64).max(1));
        }
    }
    server.state.audit.flush().await;
    let wall = started.elapsed();
    drop(counted);
    Ok(Block { latency, wall, cpu: process_cpu() - cpu0, switches: process_switches() - switches0 })
}

/// The median and quartiles of `values` (not empty).
fn quartiles(values: &mut [f64]) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    (at(0.25), at(0.5), at(0.75))
}

/// Every probe the chosen pairs need, one block each per round, the order rotating from round to round (and
/// reversed every other round); each pair's difference is taken within a round, so all pairs see the same
/// drift and can be compared with each other (the layers in place = the whole minus the org handler alone, in
/// the same rounds). The median over the rounds ignores a round disturbed by something else on the machine.
pub(super) async fn pairs(
    server: &InProcess,
    target: &Target<'_>,
    args: &OverheadArgs,
    deadline: Instant,
) -> Result<(Vec<Series>, Vec<Difference>)> {
    let chosen: Vec<&Pair> =
        PAIRS.iter().filter(|p| args.pairs.is_empty() || args.pairs.iter().any(|k| k == p.key)).collect();
    let probes: Vec<Probe> =
        Probe::ALL.into_iter().filter(|probe| chosen.iter().any(|p| p.with == *probe || p.without == *probe)).collect();
    let at = |probe: Probe| probes.iter().position(|q| *q == probe).expect("a chosen pair's probe");
    for probe in &probes {
        for _ in 0..args.warmup {
            target.run(*probe).await?;
        }
    }
    let mut totals: Vec<Histogram<u64>> = probes.iter().map(|_| histogram()).collect();
    let mut rounds: Vec<Vec<Block>> = Vec::new();
    let allocations = alloc_tracker::Session::new();
    let mut thrash = Thrash::new(args.thrash_kib);
    for round in 0..args.rounds as usize {
        if Instant::now() > deadline {
            break;
        }
        let mut order: Vec<usize> = (0..probes.len()).collect();
        order.rotate_left(round / 2 % probes.len());
        if round % 2 == 1 {
            order.reverse();
        }
        let mut blocks: Vec<Option<Block>> = probes.iter().map(|_| None).collect();
        for i in order {
            let b = block(server, target, probes[i], args.block, args.concurrency, &mut thrash, &allocations).await?;
            totals[i].add(&b.latency)?;
            blocks[i] = Some(b);
        }
        rounds.push(blocks.into_iter().map(|b| b.expect("every probe ran")).collect());
    }
    anyhow::ensure!(!rounds.is_empty(), "no time left to measure");
    let requests = rounds.len() as u64 * args.block;
    let tenth = |x: f64| (x * 10.0).round() / 10.0;
    let per = |d: Duration| tenth(d.as_secs_f64() * 1e6 / requests as f64);
    let per_switch = |n: u64| (n as f64 / requests as f64 * 100.0).round() / 100.0;
    let mut differences = Vec::new();
    for pair in chosen {
        let (w, wo) = (at(pair.with), at(pair.without));
        let diff = |f: &dyn Fn(&Histogram<u64>) -> f64| -> Vec<f64> {
            rounds.iter().map(|r| f(&r[w].latency) - f(&r[wo].latency)).collect()
        };
        let (q1, median, q3) = quartiles(&mut diff(&|h| h.value_at_quantile(0.5) as f64));
        let mut per_request: Vec<f64> = rounds
            .iter()
            .map(|r| (r[w].wall.as_secs_f64() - r[wo].wall.as_secs_f64()) * 1e6 / args.block as f64)
            .collect();
        let (wq1, wmedian, wq3) = quartiles(&mut per_request);
        let cpu = |side: usize| per(rounds.iter().map(|r| r[side].cpu).sum());
        let switches = |side: usize| per_switch(rounds.iter().map(|r| r[side].switches).sum());
        differences.push(Difference {
            route: pair.what.to_owned(),
            rounds: rounds.len() as u64,
            requests,
            p50_us: median as i64,
            p50_q1_us: q1 as i64,
            p50_q3_us: q3 as i64,
            per_request_us: tenth(wmedian),
            per_request_q1_us: tenth(wq1),
            per_request_q3_us: tenth(wq3),
            mean_us: tenth(quartiles(&mut diff(&|h| h.mean())).1),
            p90_us: quartiles(&mut diff(&|h| h.value_at_quantile(0.9) as f64)).1 as i64,
            cpu_with_us: cpu(w),
            cpu_without_us: cpu(wo),
            cpu_us: tenth(cpu(w) - cpu(wo)),
            switches_with: switches(w),
            switches_without: switches(wo),
            allocations_with: mean_allocations(&allocations, pair.with),
            allocations_without: mean_allocations(&allocations, pair.without),
        });
    }
    let series = probes
        .iter()
        .zip(&totals)
        .filter(|(_, h)| !h.is_empty())
        .map(|(p, h)| Series { name: p.name().to_owned(), latency: Latency::of(h) })
        .collect();
    Ok((series, differences))
}
