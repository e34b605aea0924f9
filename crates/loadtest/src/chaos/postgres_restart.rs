//! `postgres-restart`: Postgres stops under load and restarts. Requests in the gap must fail fast with 503,
//! the pool must recover within seconds, and the audit pipeline must spool and replay so that every answered
//! request has exactly one audit row.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::json;

use super::{Ctx, Event, Scenario, ScenarioReport, in_window, ms, report, start_load, status_counts, verdict};

pub(super) async fn run(ctx: &Ctx<'_>) -> Result<ScenarioReport> {
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
    let recovered_at = load
        .poll_until(restarted + Duration::from_secs(10).max(d / 4), || {
            let events = load.events.lock().unwrap_or_else(|p| p.into_inner());
            events.iter().filter(|e| e.at >= restarted && e.ok()).map(|e| e.at + e.latency).min()
        })
        .await;
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
