//! `auth-killed`, `auth-slow`, `auth-flaky`, `auth-flapping`: the auth service refuses connections, answers
//! late, fails half its calls, or alternates between refusing and answering. Cached tokens must keep working,
//! new tokens must get a proper 503 (never a 401), and the breaker must open under the fault and close after.

use std::time::Duration;

use anyhow::Result;
use serde_json::json;

use super::{
    Ctx, Event, Group, Scenario, ScenarioReport, blocking, in_window, ms, report, sample, start_load, status_counts,
    verdict,
};

pub(super) async fn run(ctx: &Ctx<'_>, scenario: Scenario) -> Result<ScenarioReport> {
    let threshold = if scenario == Scenario::AuthFlaky { "40" } else { "50" };
    let server = ctx
        .server(|s| {
            s.set("AUTH_BREAKER_ERROR_THRESHOLD_PERCENT", threshold);
            s.set("AUTH_BREAKER_WINDOW_MS", "2000");
            s.set("AUTH_BREAKER_BUCKETS", "10");
        })
        .await?;
    let state = server.state.clone();
    let faults = ctx.stack.emulator.faults();
    let d = ctx.d();
    let (fault_at, clear_at) = (d / 4, d * 3 / 4);
    let load = start_load(ctx.stack, ctx.seeded, &server, ctx.plan());
    load.sleep_until(fault_at).await;
    let fault_start = load.now();
    match scenario {
        Scenario::AuthKilled => {
            let f = faults.clone();
            blocking(move || f.refuse_connections(None)).await;
        }
        Scenario::AuthSlow => faults.set_latency(Duration::from_millis(1500)),
        Scenario::AuthFlaky => faults.set_error_rate(0.5, 503),
        _ => {
            // Flapping: refused for 1 s, then answering for 1 s, until the fault window ends.
            let mut refusing = false;
            for _ in 0..1000 {
                if load.now() >= clear_at {
                    break;
                }
                let f = faults.clone();
                if refusing {
                    blocking(move || f.clear()).await;
                } else {
                    blocking(move || f.refuse_connections(None)).await;
                }
                refusing = !refusing;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    load.sleep_until(clear_at).await;
    let f = faults.clone();
    blocking(move || f.clear()).await;
    let fault_end = load.now();
    // Recovery: the breaker closes once a trial call succeeds after its reset timeout (2 s here).
    let recovery_bound = Duration::from_secs(10).max(d / 4);
    let closed_at = load
        .poll_until(fault_end + recovery_bound, || {
            let s = sample(&state, load.t0);
            (s.breaker == breaker::State::Closed).then_some(s.at)
        })
        .await;
    // A little more load after closing, to see new tokens succeed again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (events, samples) = load.finish().await;
    server.stop().await?;

    let opened_at = samples
        .iter()
        .find(|s| {
            s.at >= fault_start
                && s.at <= fault_end
                && (s.breaker == breaker::State::Open || s.opened > samples[0].opened)
        })
        .map(|s| s.at);
    let cached: Vec<&Event> = events.iter().filter(|e| e.group == Group::Cached && e.at >= fault_start).collect();
    let cached_ok = cached.iter().filter(|e| e.ok()).count();
    let cached_rate = if cached.is_empty() { 0.0 } else { cached_ok as f64 / cached.len() as f64 };
    let fresh_all: Vec<&Event> = events.iter().filter(|e| e.group == Group::Fresh).collect();
    let fresh_fault: Vec<&Event> = fresh_all.iter().copied().filter(|e| in_window(e, fault_start, fault_end)).collect();
    let unauthorized = fresh_all.iter().filter(|e| e.status == 401).count();
    let failures: Vec<&&Event> = fresh_all.iter().filter(|e| !e.ok()).collect();
    let proper_503 = failures.iter().filter(|e| e.is(503, "AUTH_SERVICE_UNAVAILABLE") && e.retry_after).count();
    let fresh_after = closed_at.map(|c| fresh_all.iter().filter(|e| e.at > c && e.ok()).count());

    let verdicts = vec![
        verdict(
            "the breaker opens within the fault window",
            opened_at.is_some(),
            match opened_at {
                Some(at) => format!("opened {} ms after the fault", ms(at.saturating_sub(fault_start))),
                None => "never opened during the fault".into(),
            },
        ),
        verdict(
            "cached users keep >= 99.9 % success",
            !cached.is_empty() && cached_rate >= 0.999,
            format!("{cached_ok}/{} ok ({:.3} %) from the fault on", cached.len(), cached_rate * 100.0),
        ),
        verdict(
            "new tokens get 503 AUTH_SERVICE_UNAVAILABLE + Retry-After, never 401",
            unauthorized == 0 && proper_503 == failures.len() && proper_503 > 0,
            format!(
                "{} new tokens during the fault: {:?}; failures {} of which proper 503 {}; 401s {}",
                fresh_fault.len(),
                status_counts(fresh_fault.iter().copied()),
                failures.len(),
                proper_503,
                unauthorized
            ),
        ),
        verdict(
            "recovery closes the breaker and new tokens succeed again",
            closed_at.is_some() && fresh_after.is_some_and(|n| n > 0),
            match closed_at {
                Some(c) => format!(
                    "closed {} ms after the fault was cleared; {} new tokens accepted after that",
                    ms(c.saturating_sub(fault_end)),
                    fresh_after.unwrap_or(0)
                ),
                None => format!("still not closed {} s after the fault was cleared", recovery_bound.as_secs()),
            },
        ),
    ];
    let latency_fresh_max = fresh_fault.iter().map(|e| ms(e.latency)).max().unwrap_or(0);
    Ok(report(
        scenario,
        verdicts,
        json!({
            "faultStartMs": ms(fault_start),
            "faultEndMs": ms(fault_end),
            "breakerErrorThresholdPercent": threshold,
            "authHttpTimeoutMs": 1000,
            "breakerResetTimeoutMs": 2000,
            "breakerWindowMs": 2000,
            "cachedRequests": cached.len(),
            "newTokens": fresh_all.len(),
            "newTokenOutcomesDuringFault": status_counts(fresh_fault.iter().copied()),
            "newTokenMaxLatencyMsDuringFault": latency_fresh_max,
            "breakerOpenings": samples.last().map(|s| s.opened.saturating_sub(samples[0].opened)),
        }),
    ))
}
