//! The cheap variants of the pool-starvation and slow-database chaos scenarios (`loadtest chaos
//! pool-starvation` runs the full one under load): a table lock held by the owner makes every read of the
//! table wait, as a long migration or a runaway query would.

use std::time::{Duration, Instant};

use crate::helpers::{TestApp, TestUser, assert_error, wait_until};

/// Hold `LOCK TABLE knowledge_sources` on the owner's connection until [`release`].
async fn lock_knowledge(app: &TestApp) {
    app.owner.batch_execute("BEGIN; LOCK TABLE knowledge_sources IN ACCESS EXCLUSIVE MODE").await.expect("lock");
}

async fn release(app: &TestApp) {
    app.owner.batch_execute("COMMIT").await.expect("unlock");
}

/// A server with `customize` applied, a user, and the path of their organization's knowledge list, with the
/// table of that list locked (see [`lock_knowledge`]).
async fn locked_app(customize: impl FnOnce(&mut intellifill::ServeArgs)) -> (TestApp, TestUser, String) {
    let (app, u, org) = TestApp::with_org_using(customize, "Locked out").await;
    lock_knowledge(&app).await;
    (app, u, format!("/api/organizations/{org}/knowledge"))
}

/// `GET path` as `user`: status, `Retry-After`, body, and how long it took.
async fn timed_get(app: &TestApp, user: &TestUser, path: &str) -> (u16, Option<String>, serde_json::Value, Duration) {
    let started = Instant::now();
    let response = app.http.get(app.url(path)).bearer_auth(&user.token).send().await.expect("request");
    let status = response.status().as_u16();
    let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = response.json().await.unwrap_or(serde_json::Value::Null);
    (status, retry_after, body, started.elapsed())
}

#[tokio::test]
async fn a_starved_pool_sheds_with_503_while_health_and_metrics_answer() {
    let (app, u, list) = locked_app(settings!(db_pool_max_size = "2", db_pool_wait_timeout_ms = "300")).await;
    // Two requests take both pooled connections and wait for the lock.
    let held: Vec<_> = (0..2)
        .map(|_| {
            let (http, url, token) = (app.http.clone(), app.url(&list), u.token.clone());
            tokio::spawn(async move { http.get(url).bearer_auth(token).send().await.map(|r| r.status().as_u16()) })
        })
        .collect();
    let db = app.state.db.clone();
    wait_until(Duration::from_secs(5), move || db.pool_status().active == 2).await;

    let (status, retry_after, body, took) = timed_get(&app, &u, &list).await;
    assert_error(status, &body, 503, "DATABASE_UNAVAILABLE");
    assert!(retry_after.is_some_and(|s| s.parse::<u64>().is_ok_and(|s| s >= 1)), "503 carries Retry-After");
    assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(3), "shed at the wait bound: {took:?}");

    let started = Instant::now();
    assert_eq!(app.send(app.http.get(app.url("/health"))).await.0, 200);
    let metrics = app.http.get(app.url("/metrics")).send().await.expect("metrics");
    assert_eq!(metrics.status().as_u16(), 200);
    let text = metrics.text().await.expect("metrics text");
    assert!(started.elapsed() < Duration::from_secs(1), "health and metrics need no pooled connection");
    let timeouts = text
        .lines()
        .find(|l| l.starts_with("db_pool_acquire_timeouts_total"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
    assert!(timeouts.is_some_and(|n| n >= 1.0), "the shed request is counted: {timeouts:?}");
    assert!(text.lines().any(|l| l.starts_with("db_pool_connections{state=\"active\"} 2")), "{text}");

    release(&app).await;
    for request in held {
        assert_eq!(request.await.expect("task").expect("response"), 200, "waiting requests finish once unlocked");
    }
    assert_eq!(app.get(&u, &list).await.0, 200);
}

#[tokio::test]
async fn a_statement_past_the_timeout_is_cancelled_with_503_and_the_connection_reused() {
    let (app, u, list) = locked_app(settings!(db_pool_max_size = "1", db_statement_timeout_ms = "300")).await;
    let (status, retry_after, body, took) = timed_get(&app, &u, &list).await;
    assert_error(status, &body, 503, "DATABASE_UNAVAILABLE");
    assert!(retry_after.is_some(), "503 carries Retry-After");
    assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(5), "cancelled at the bound: {took:?}");
    release(&app).await;
    // The one pooled connection was rolled back and serves the next request.
    assert_eq!(app.get(&u, &list).await.0, 200);
}

#[tokio::test]
async fn a_request_past_its_deadline_is_408_and_its_transaction_rolled_back() {
    let (app, u, list) = locked_app(settings!(db_pool_max_size = "1", request_timeout_ms = "300")).await;
    let (status, _, body, took) = timed_get(&app, &u, &list).await;
    assert_error(status, &body, 408, "REQUEST_TIMEOUT");
    assert!(body["requestId"].is_string(), "{body}");
    assert!(took < Duration::from_secs(3), "answered at the deadline: {took:?}");
    release(&app).await;
    // The abandoned transaction is rolled back and its connection goes back to the pool.
    let db = app.state.db.clone();
    wait_until(Duration::from_secs(5), move || db.pool_status().active == 0).await;
    let (status, body) = app.get(&u, &list).await;
    assert_eq!(status, 200, "{body}");
}
