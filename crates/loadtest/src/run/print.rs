//! The human-readable report of `loadtest run` (the JSON report is the serialized [`RunReport`]).

use super::*;

fn print_phase(p: &Phase) {
    let l = &p.load;
    println!("== {} ({} workers, mix {}, {:.1}s measured)", p.name, l.concurrency, l.mix, l.measured_secs);
    println!(
        "   throughput {:.0} req/s ({:.0} 2xx/s), {} responses ({} 5xx), {} transport errors, {} timeouts",
        l.throughput_rps,
        l.ok_rps,
        l.responses,
        l.server_errors(),
        l.transport_errors,
        l.timeouts
    );
    println!(
        "   latency us: p50 {} p90 {} p99 {} p99.9 {} max {} (mean {:.0})",
        l.latency.p50_us, l.latency.p90_us, l.latency.p99_us, l.latency.p999_us, l.latency.max_us, l.latency.mean_us
    );
    for (op, lat) in &l.per_op {
        println!(
            "     {:<7} n={:<8} p50 {} p99 {} max {}",
            format!("{op:?}"),
            lat.count,
            lat.p50_us,
            lat.p99_us,
            lat.max_us
        );
    }
    let statuses: Vec<String> = l.statuses.iter().map(|(s, n)| format!("{s}:{n}")).collect();
    println!("   statuses {}", statuses.join(" "));
    if !l.error_codes.is_empty() {
        let codes: Vec<String> = l.error_codes.iter().map(|(c, n)| format!("{c}:{n}")).collect();
        println!("   error codes {}", codes.join(" "));
    }
    if l.shed_503_with_retry_after + l.shed_503_without_retry_after > 0 {
        println!(
            "   503: {} with Retry-After, {} without",
            l.shed_503_with_retry_after, l.shed_503_without_retry_after
        );
    }
    if p.postgres_cpu_us_per_request.is_some() || p.server_cpu_us_per_request.is_some() {
        let us = |v: Option<f64>| v.map(|v| format!("{v:.0} us")).unwrap_or_else(|| "-".into());
        println!(
            "   CPU per request (warm-up included): Postgres {}, server {}",
            us(p.postgres_cpu_us_per_request),
            us(p.server_cpu_us_per_request)
        );
    }
    if let Some(s) = &p.server {
        println!(
            "   server: pool max {} waiting max {} active max {}, acquire timeouts {}, pool wait {}",
            s.pool_max, s.pool_waiting_max, s.pool_active_max, s.acquire_timeouts, s.pool_wait
        );
        println!(
            "   server: token cache hit rate {} ({} hits, {} misses), audit written {} spooled {} dropped {}, rate limiter {}",
            s.token_cache_hit_rate.map(|r| format!("{:.4}", r)).unwrap_or_else(|| "-".into()),
            s.token_cache_hits,
            s.token_cache_misses,
            s.audit_written,
            s.audit_spooled,
            s.audit_dropped,
            s.rate_limiter_store
        );
        println!(
            "   server RSS: max {:.1} MiB, end {:.1} MiB, peak (VmHWM) {:.1} MiB",
            s.rss_max_kib as f64 / 1024.0,
            s.rss_end_kib as f64 / 1024.0,
            s.hwm_kib as f64 / 1024.0
        );
    }
}

pub(crate) fn print(r: &RunReport) {
    println!("loadtest run, {} ({})", r.provenance.date, r.provenance.command);
    println!(
        "machine: {} cores ({}), {} MiB; {}",
        r.provenance.machine.nproc,
        r.provenance.machine.cpu,
        r.provenance.machine.mem_total_kib / 1024,
        r.provenance.machine.note
    );
    println!("load average at start: {}", r.provenance.machine.load_average_at_start);
    if !r.server_env.is_empty() {
        println!("extra server settings: {}", r.server_env.join(" "));
    }
    print_phase(&r.mixed);
    if let Some(p) = &r.list_only {
        print_phase(p);
    }
    if let Some(p) = &r.pgbench {
        println!("== pgbench (list transaction, runtime role, RLS on)");
        println!(
            "   {:.0} tps, {} clients, {} threads, {}s, latency avg {} ms, failed {}",
            p.tps,
            p.clients,
            p.threads,
            p.duration_secs,
            p.latency_avg_ms.map(|v| v.to_string()).unwrap_or_default(),
            p.failed.map(|v| v.to_string()).unwrap_or_default()
        );
        if let Some(us) = p.postgres_cpu_us_per_tx {
            println!("   Postgres CPU per transaction {us:.0} us");
        }
        println!("   {}", p.command);
    }
    if let Some(p) = &r.hello {
        print_phase(p);
    }
    let show = |v: Option<f64>| v.map(|v| format!("{:.1} %", v * 100.0)).unwrap_or_else(|| "-".into());
    for (i, round) in r.ratios.list_vs_pgbench_rounds.iter().enumerate() {
        let us = |v: Option<f64>| v.map(|v| format!("{v:.0} us")).unwrap_or_else(|| "-".into());
        println!(
            "round {}: list-only {:.0} req/s, pgbench {:.0} tps, ratio {:.1} %; Postgres CPU per request {} (pgbench {})",
            i + 1,
            round.list_rps,
            round.pgbench_tps,
            round.ratio * 100.0,
            us(round.list_postgres_cpu_us_per_request),
            us(round.pgbench_postgres_cpu_us_per_tx)
        );
    }
    if let Some(m) = r.ratios.list_vs_pgbench_median {
        println!(
            "list-only / pgbench, median of {} alternating rounds: {:.1} %",
            r.ratios.list_vs_pgbench_rounds.len(),
            m * 100.0
        );
    }
    println!(
        "ratios: list-only / pgbench {}, list-only / hello {}, mixed / hello {}",
        show(r.ratios.list_vs_pgbench),
        show(r.ratios.list_vs_hello),
        show(r.ratios.mixed_vs_hello)
    );
    println!(
        "generator process: RSS {:.1} MiB, peak {:.1} MiB",
        r.generator_rss_kib as f64 / 1024.0,
        r.generator_hwm_kib as f64 / 1024.0
    );
}
