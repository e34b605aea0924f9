//! `pool-starvation`: a long transaction elsewhere locks the listed table, so a pool of 2 is exhausted. The
//! probes (`/health`, `/metrics`) must keep answering quickly, excess requests must be shed with 503 and
//! Retry-After within the pool's wait bound, and service must be full again once the lock is released.

use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Result;
use serde_json::json;

use super::{Ctx, Event, Group, Scenario, ScenarioReport, in_window, ms, report, start_load, status_counts, verdict};

pub(super) async fn run(ctx: &Ctx<'_>) -> Result<ScenarioReport> {
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
    locker.batch_execute("ROLLBACK").await?;
    let released = load.now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (events, samples) = load.finish().await;
    let acquire_timeouts = server.state.db.stats().acquire_timeouts.load(Ordering::Relaxed);
    server.stop().await?;

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
    let shed: Vec<&&Event> = cached.iter().filter(|e| e.is(503, "DATABASE_UNAVAILABLE")).collect();
    let shed_with_retry = shed.iter().filter(|e| e.retry_after).count();
    let shed_max = shed.iter().map(|e| e.latency).max().unwrap_or_default();
    let other_5xx = events.iter().filter(|e| e.status >= 500 && !e.is(503, "DATABASE_UNAVAILABLE")).count();
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
