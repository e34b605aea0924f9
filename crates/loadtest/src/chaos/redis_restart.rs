//! `redis-restart`: Redis stops under load and comes back. No request may fail: the rate limiter falls back to
//! memory, cached tokens keep being served from L1, and the store returns to Redis after the restart.

use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::json;

use super::{Ctx, Event, Scenario, ScenarioReport, ms, report, sample, start_load, status_counts, verdict};

pub(super) async fn run(ctx: &Ctx<'_>) -> Result<ScenarioReport> {
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
    let back_at = load
        .poll_until(restarted + Duration::from_secs(20).max(d / 4), || {
            let s = sample(&state, load.t0);
            (s.store == "redis" && s.redis_healthy).then_some(s.at)
        })
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (events, samples) = load.finish().await;
    server.stop().await?;

    let failures: Vec<&Event> = events.iter().filter(|e| !e.ok()).collect();
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
