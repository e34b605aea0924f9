//! How `loadtest overhead` measures: blocks of one probe, CPU time and context switches of the process, pairs
//! in alternating rounds, the `--only` loop and the `--thrash-kib` buffer.

use std::time::{Duration, Instant};

use anyhow::Result;
use hdrhistogram::Histogram;

use super::probes::{PAIRS, Probe, Target};
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

/// `--only`: one probe, sequentially, for a profiler attached to the process.
pub(super) async fn alone(
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
pub(super) async fn pairs(
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
