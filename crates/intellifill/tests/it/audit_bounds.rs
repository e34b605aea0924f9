//! The bounds of the audit path through the real server: what is kept of a body, the in-memory backlog
//! (bytes and events) and the admission control in front of it, the disk spool's bound, and a stop during a
//! flood that loses nothing queued.

use serde_json::Value;

use crate::helpers::{TestApp, scalar};
use crate::observability::{metrics, sample};

/// Send and return (status, request id, body).
async fn send(request: reqwest::RequestBuilder) -> (u16, String, Value) {
    let response = request.send().await.expect("request");
    let id = response.headers()["x-request-id"].to_str().expect("id").to_owned();
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (status, id, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The stored row of a request: (method, path, status, ip, metadata).
async fn row(app: &TestApp, request_id: &str) -> (String, String, i32, Option<String>, Value) {
    let r = app
        .owner
        .query_one(
            "SELECT method, path, status, host(ip), metadata FROM audit_log WHERE request_id = $1",
            &[&request_id],
        )
        .await
        .unwrap_or_else(|e| panic!("one row for {request_id}: {e}"));
    (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))
}

#[tokio::test]
async fn an_oversized_body_keeps_its_first_complete_members_marked_with_its_size() {
    let (app, u, org) = TestApp::with_org_using(|a| a.audit_max_body_bytes = Some("1024".into()), "Bounded").await;
    // Members in this order: the title fits, the content is cut in the middle.
    let content = format!("{} call +44 20 7946 0958 {}", "a".repeat(900), "z".repeat(4000));
    let body = serde_json::json!({ "content": content }).to_string().replacen('{', r#"{"title":"kept title","#, 1);
    let (status, id, _) = send(
        app.http
            .post(app.url(&format!("/api/organizations/{org}/knowledge")))
            .bearer_auth(&u.token)
            .header("content-type", "application/json")
            .body(body.clone()),
    )
    .await;
    assert_eq!(status, 201, "the handler saw the whole body");
    let stored: String =
        scalar(&app.owner, "SELECT content FROM knowledge_sources WHERE title = 'kept title'", &[]).await;
    assert_eq!(stored, content, "only the audit row is cut, never the request");
    app.state.audit.flush().await;
    let (_, _, _, _, meta) = row(&app, &id).await;
    assert_eq!(meta["bodyTruncated"], true, "{meta}");
    assert_eq!(meta["bodyBytes"], body.len(), "the original size: {meta}");
    assert_eq!(meta["body"]["title"], "kept title", "{meta}");
    assert!(meta["body"].get("content").is_none(), "the member cut in the middle is left out whole: {meta}");
    assert!(!meta.to_string().contains("7946"), "nothing of the cut member survives: {meta}");
    assert!(meta.to_string().len() < 2048, "the row is bounded by the kept prefix: {meta}");

    // A body within the bound is kept whole and not marked.
    let (status, id, _) = send(
        app.http
            .post(app.url(&format!("/api/organizations/{org}/knowledge")))
            .bearer_auth(&u.token)
            .json(&serde_json::json!({"title": "small", "content": "fits"})),
    )
    .await;
    assert_eq!(status, 201);
    app.state.audit.flush().await;
    let (_, _, _, _, meta) = row(&app, &id).await;
    assert!(meta.get("bodyTruncated").is_none(), "{meta}");
    assert_eq!(meta["body"]["content"], "fits");
}

#[tokio::test]
async fn bodies_of_unauthenticated_and_unmatched_requests_are_not_kept_but_their_metadata_is() {
    let (app, u, org) = TestApp::with_org("Strangers").await;
    let body = r#"{"title":"sent by anybody","content":"payload that nobody used"}"#;
    let requests = [
        // No token: refused before the handler, so before any body is used.
        (app.http.post(app.url(&format!("/api/organizations/{org}/knowledge"))), 401, "unauthenticated"),
        // A forged token: never authenticated either.
        (
            app.http.post(app.url(&format!("/api/organizations/{org}/knowledge"))).bearer_auth("not.a.token"),
            401,
            "unauthenticated",
        ),
        // No route, even with a valid token.
        (app.http.post(app.url("/api/nowhere")).bearer_auth(&u.token), 404, "unmatched"),
        (app.http.put(app.url("/nothing/here")), 404, "unmatched"),
    ];
    let mut sent = Vec::new();
    for (request, expected, reason) in requests {
        let (status, id, _) = send(request.header("content-type", "application/json").body(body)).await;
        assert_eq!(status, expected, "{reason}");
        sent.push((id, expected, reason));
    }
    app.state.audit.flush().await;
    for (id, status, reason) in sent {
        let (method, path, stored_status, ip, meta) = row(&app, &id).await;
        assert_eq!(meta["bodyOmitted"], reason, "{meta}");
        assert_eq!(meta["bodyBytes"], body.len(), "{meta}");
        assert_eq!(meta["contentType"], "application/json", "{meta}");
        assert!(meta.get("body").is_none(), "{meta}");
        assert!(!meta.to_string().contains("nobody used"), "{meta}");
        assert!(["POST", "PUT"].contains(&method.as_str()));
        assert!(path.starts_with('/'), "{path}");
        assert_eq!(stored_status, i32::from(status));
        assert_eq!(ip.as_deref(), Some("127.0.0.1"));
    }
}

/// A second owner connection holding `ACCESS EXCLUSIVE` on `audit_log` until it is dropped or rolled back:
/// every audit insert waits behind it (a database that hangs for the writer only).
async fn lock_audit_log(app: &TestApp) -> tokio_postgres::Client {
    let locker = intellifill::testing::schema::connect(&app.owner_url).await.expect("owner connection");
    locker.batch_execute("BEGIN; LOCK TABLE audit_log IN ACCESS EXCLUSIVE MODE").await.expect("lock");
    locker
}

/// PATCH a knowledge source that does not exist with `title` and `content`: a write that fails (404) after its
/// handler ran, so its event, body included, takes the asynchronous path (the row of a write that commits is
/// written in the write's own transaction, which an audit table that cannot be written holds up or fails).
fn failed_write(app: &TestApp, token: &str, org: uuid::Uuid, title: &str, content: &str) -> reqwest::RequestBuilder {
    app.http
        .patch(app.url(&format!("/api/organizations/{org}/knowledge/{}", uuid::Uuid::new_v4())))
        .bearer_auth(token)
        .json(&serde_json::json!({"title": title, "content": content}))
}

/// Whether a knowledge source titled `title` exists.
async fn exists(app: &TestApp, title: &str) -> bool {
    scalar::<i64>(&app.owner, "SELECT count(*) FROM knowledge_sources WHERE title = $1", &[&title]).await > 0
}

/// POST a knowledge source titled `title` with `content`.
fn create(app: &TestApp, token: &str, org: uuid::Uuid, title: &str, content: &str) -> reqwest::RequestBuilder {
    app.http
        .post(app.url(&format!("/api/organizations/{org}/knowledge")))
        .bearer_auth(token)
        .json(&serde_json::json!({"title": title, "content": content}))
}

#[tokio::test]
async fn a_full_backlog_refuses_requests_before_their_handler_and_admitted_events_are_all_kept() {
    let (app, u, org) = TestApp::with_org_using(
        |a| {
            a.audit_max_body_bytes = Some("4096".into());
            a.audit_queue_max_bytes = Some("98304".into());
            // Each event is written at once, so the first insert is stuck behind the lock with the rest queued.
            a.audit_batch_size = Some("1".into());
        },
        "Backlog",
    )
    .await;
    let locker = lock_audit_log(&app).await;
    let content = "lorem ipsum dolor sit amet ".repeat(150);
    let (mut admitted, mut refused) = (Vec::new(), Vec::new());
    for i in 0..200 {
        let title = format!("flood {i}");
        let (status, id, body) = send(failed_write(&app, &u.token, org, &title, &content)).await;
        match status {
            404 => admitted.push(id),
            503 => {
                assert_eq!(body["code"], "AUDIT_UNAVAILABLE", "{body}");
                assert_eq!(body["requestId"], id.as_str());
                refused.push(title);
                if refused.len() == 3 {
                    break;
                }
            }
            other => panic!("unexpected {other}: {body}"),
        }
        assert!(app.state.audit.queue_bytes() <= 98304, "the bound holds: {}", app.state.audit.queue_bytes());
    }
    assert_eq!(refused.len(), 3, "the byte bound refused requests ({} admitted)", admitted.len());
    assert!(admitted.len() > 5 && admitted.len() < 30, "about 90 KiB of 4 KiB events: {}", admitted.len());
    // Refused before the handler: a create refused now writes nothing.
    let response = create(&app, &u.token, org, "with retry-after", &content).send().await.expect("request");
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    assert!(!exists(&app, "with retry-after").await, "a refused request's handler did not run");
    // Excluded paths are not audited, so not refused: the counter is readable while refusing.
    let text = metrics(&app).await;
    assert!(sample(&text, r#"audit_requests_refused_total{reason="queue_full"}"#).unwrap_or(0.0) >= 4.0, "{text}");
    assert!(sample(&text, "audit_queue_bytes").unwrap_or(0.0) > 0.0);

    // The database answers again: every admitted event is stored, and requests are admitted again.
    locker.batch_execute("ROLLBACK").await.expect("unlock");
    app.state.audit.flush().await;
    let (status, id, _) = send(create(&app, &u.token, org, "after", "x")).await;
    assert_eq!(status, 201);
    admitted.push(id);
    app.state.audit.flush().await;
    let ids: Vec<&str> = admitted.iter().map(String::as_str).collect();
    let stored: i64 =
        scalar(&app.owner, "SELECT count(DISTINCT request_id) FROM audit_log WHERE request_id = ANY($1)", &[&ids])
            .await;
    assert_eq!(stored as usize, admitted.len(), "every admitted request has its row");
    assert_eq!(app.state.audit.stats().get(&app.state.audit.stats().dropped), 0);
}

#[tokio::test]
async fn clients_trickling_their_bodies_hold_no_room_for_them() {
    let (app, u, org) =
        TestApp::with_org_using(settings!(audit_max_body_bytes = "4096", audit_queue_max_bytes = "98304"), "Trickle")
            .await;
    // 40 writes whose heads announce 4 KiB bodies that never come: with room for their bodies held, 40 x 4 KiB
    // would be more than the bound, and every other request would be refused.
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut slow = Vec::new();
    for _ in 0..40 {
        use tokio::io::AsyncWriteExt;
        let mut stream = tokio::net::TcpStream::connect(&addr).await.expect("connect");
        let head = format!(
            "POST /api/organizations/{org}/knowledge HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: 4000\r\n\r\n{{\"title\":",
            u.token
        );
        stream.write_all(head.as_bytes()).await.expect("head");
        slow.push(stream);
    }
    // Each is admitted for its head only (a share of a few hundred bytes).
    crate::helpers::wait_until(std::time::Duration::from_secs(10), || app.state.audit.queue_bytes() >= 40 * 600).await;
    assert!(app.state.audit.queue_bytes() < 40 * 4096, "no body room held: {}", app.state.audit.queue_bytes());
    let content = "a body that arrives at once ".repeat(100);
    let (status, _, body) = send(create(&app, &u.token, org, "served", &content)).await;
    assert_eq!(status, 201, "{body}");
    drop(slow);
}

#[tokio::test]
async fn a_request_cut_off_by_the_timeout_still_has_its_row_marked_abandoned() {
    let (app, u, org) = TestApp::with_org_using(|a| a.request_timeout_ms = Some("300".into()), "Slow").await;
    // The handler's insert waits behind this lock until the whole-request timeout drops the request.
    let locker = intellifill::testing::schema::connect(&app.owner_url).await.expect("owner connection");
    locker.batch_execute("BEGIN; LOCK TABLE knowledge_sources IN ACCESS EXCLUSIVE MODE").await.expect("lock");
    let (status, id, body) = send(create(&app, &u.token, org, "never answered", "x")).await;
    assert_eq!(status, 408, "{body}");
    locker.batch_execute("ROLLBACK").await.expect("unlock");
    app.state.audit.flush().await;
    let r = app
        .owner
        .query_one("SELECT action, status, user_id, metadata FROM audit_log WHERE request_id = $1", &[&id])
        .await
        .expect("a row for the abandoned request");
    assert_eq!(r.get::<_, String>(0), "knowledge.create");
    assert_eq!(r.get::<_, Option<i32>>(1), None, "no response was produced below the timeout");
    assert_eq!(r.get::<_, Option<uuid::Uuid>>(2), Some(u.id));
    let meta: Value = r.get(3);
    assert_eq!(meta["abandoned"], true, "{meta}");
    assert_eq!(meta["body"]["title"], "never answered", "{meta}");
}

/// Bytes of the spool's segment files.
fn spool_dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .expect("spool dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".jsonl"))
        .map(|e| e.metadata().expect("metadata").len())
        .sum()
}

const AUDIT_APPEND: &str = "audit_append(uuid[], timestamptz[], uuid[], uuid[], text[], text[], text[], text[], \
    text[], text[], integer[], integer[], inet[], text[], text[], jsonb[])";

#[tokio::test]
async fn the_spool_never_grows_past_its_bound_the_writer_holds_and_requests_are_refused() {
    let (app, u, org) = TestApp::with_org_using(
        settings!(
            audit_spool_max_bytes = "65536",
            audit_max_body_bytes = "2048",
            // Memory holds several times what the spool does, so the spool is full before memory is, however
            // fast the writer spools (the refusals say `spool_full`); the limits let the requests through.
            audit_queue_max_bytes = "1048576",
            rate_limit_user_per_minute = "100000",
            rate_limit_ip_per_minute = "100000",
            audit_flush_interval_ms = "50",
            audit_batch_size = "10"
        ),
        "Spooled",
    )
    .await;
    let dir = app._spool.as_ref().expect("the app's spool").path().to_owned();
    // Every audit insert now fails at once: events go to the spool.
    app.owner
        .batch_execute(&format!("REVOKE EXECUTE ON FUNCTION {AUDIT_APPEND} FROM intellifill_app"))
        .await
        .expect("revoke");
    let content = "the quick brown fox jumps over the lazy dog ".repeat(40);
    let (mut admitted, mut refused) = (Vec::new(), Vec::new());
    for i in 0..2000 {
        let title = format!("spooled {i}");
        let (status, id, body) = send(failed_write(&app, &u.token, org, &title, &content)).await;
        assert!(spool_dir_bytes(&dir) <= 65536, "the spool went past its bound: {}", spool_dir_bytes(&dir));
        match status {
            404 => admitted.push(id),
            503 => {
                assert_eq!(body["code"], "AUDIT_UNAVAILABLE", "{body}");
                refused.push(title);
                if refused.len() == 5 {
                    break;
                }
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(refused.len(), 5, "requests were refused once the spool and memory were full");
    assert!(spool_dir_bytes(&dir) > 65536 / 2, "the spool was filled: {}", spool_dir_bytes(&dir));
    let text = metrics(&app).await;
    assert!(sample(&text, "audit_spool_full_total").unwrap_or(0.0) >= 1.0, "{text}");
    assert!(sample(&text, r#"audit_requests_refused_total{reason="spool_full"}"#).unwrap_or(0.0) >= 5.0, "{text}");
    assert!(
        sample(&text, "audit_spool_bytes").unwrap_or(0.0) <= 65536.0
            && sample(&text, "audit_spool_bytes").unwrap_or(0.0) > 0.0
    );
    let (status, _, _) = send(create(&app, &u.token, org, "refused create", &content)).await;
    assert_eq!(status, 503);
    assert!(!exists(&app, "refused create").await, "refused requests were not served");

    // Inserts work again: replay empties the spool, the held events follow, nothing admitted is missing.
    app.owner
        .batch_execute(&format!("GRANT EXECUTE ON FUNCTION {AUDIT_APPEND} TO intellifill_app"))
        .await
        .expect("grant");
    let ids: Vec<&str> = admitted.iter().map(String::as_str).collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        app.state.audit.flush().await;
        let stored: i64 =
            scalar(&app.owner, "SELECT count(DISTINCT request_id) FROM audit_log WHERE request_id = ANY($1)", &[&ids])
                .await;
        if stored as usize == ids.len() && app.state.audit.spool_pending() == 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{stored} of {} rows after the database came back", ids.len());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(app.state.audit.stats().get(&app.state.audit.stats().dropped), 0);
    let (status, _, _) = send(create(&app, &u.token, org, "admitted again", "x")).await;
    assert_eq!(status, 201);
}

/// `(event id, request id)` of every record in the spool's segment files.
fn spooled_records(dir: &std::path::Path) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("spool dir").filter_map(Result::ok) {
        if !entry.file_name().to_string_lossy().ends_with(".jsonl") {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).expect("segment");
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let record: Value = serde_json::from_str(line).expect("a complete record");
            let id = record["id"].as_str().expect("id").to_owned();
            out.push((id, record["requestId"].as_str().map(str::to_owned)));
        }
    }
    out
}

#[tokio::test]
async fn a_stop_during_a_flood_keeps_every_admitted_event_and_ends_within_the_grace_period() {
    const GRACE_MS: u64 = 1500;
    let (mut app, u, org) = TestApp::with_org_using(
        |a| {
            a.shutdown_grace_ms = Some(GRACE_MS.to_string());
            // The per-ip limit answers before the audit step (429s are not audited): out of the way here.
            a.rate_limit_enabled = Some("false".into());
            a.audit_batch_size = Some("50".into());
            a.audit_flush_interval_ms = Some("100".into());
        },
        "Flooded",
    )
    .await;
    let dir = app._spool.as_ref().expect("the app's spool").path().to_owned();
    // The database hangs for the writer (longer than the grace period): whatever is queued at the stop can
    // only reach the spool.
    let locker = lock_audit_log(&app).await;
    let running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let served_so_far = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut clients = Vec::new();
    for c in 0..6 {
        let (http, base, token, running) = (app.http.clone(), app.base.clone(), u.token.clone(), running.clone());
        let served_so_far = served_so_far.clone();
        clients.push(tokio::spawn(async move {
            let mut answered = Vec::new();
            let mut i = 0;
            while running.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let request = if i % 2 == 0 {
                    http.get(format!("{base}/api/me")).bearer_auth(&token)
                } else {
                    // A failed write: its event is queued (a committed one's would wait behind the lock).
                    http.patch(format!("{base}/api/organizations/{org}/knowledge/{}", uuid::Uuid::new_v4()))
                        .bearer_auth(&token)
                        .json(&serde_json::json!({"title": format!("c{c} r{i}"), "content": "flood"}))
                };
                // After the stop, connections are refused: the client gives up.
                let Ok(response) = request.send().await else { break };
                let id = response.headers()["x-request-id"].to_str().expect("id").to_owned();
                let status = response.status().as_u16();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                if body["code"] != "AUDIT_UNAVAILABLE" {
                    served_so_far.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                answered.push((status, id, body["code"].as_str().map(str::to_owned)));
            }
            answered
        }));
    }
    // The stop comes once the flood is under way (at least 60 requests served), however slow the machine.
    let load = served_so_far.clone();
    crate::helpers::wait_until(std::time::Duration::from_secs(30), move || {
        load.load(std::sync::atomic::Ordering::Relaxed) >= 60
    })
    .await;
    assert!(app.state.audit.queue_depth() > 0, "events are waiting for the writer when the stop comes");
    let started = std::time::Instant::now();
    app.stop().await.expect("graceful stop");
    let took = started.elapsed();
    running.store(false, std::sync::atomic::Ordering::Relaxed);
    let mut answered = Vec::new();
    for client in clients {
        answered.extend(client.await.expect("client"));
    }
    // Within the grace period, plus the writing of the in-memory rest to the local spool.
    assert!(took < std::time::Duration::from_millis(GRACE_MS + 3000), "the stop took {took:?}");

    locker.batch_execute("ROLLBACK").await.expect("unlock");
    let spooled = spooled_records(&dir);
    let in_table: Vec<(uuid::Uuid, Option<String>)> = app
        .owner
        .query("SELECT id, request_id FROM audit_log", &[])
        .await
        .expect("rows")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let mut event_ids: std::collections::HashSet<String> = spooled.iter().map(|(id, _)| id.clone()).collect();
    event_ids.extend(in_table.iter().map(|(id, _)| id.to_string()));
    let request_ids: std::collections::HashSet<&str> = spooled
        .iter()
        .filter_map(|(_, r)| r.as_deref())
        .chain(in_table.iter().filter_map(|(_, r)| r.as_deref()))
        .collect();
    let stats = app.state.audit.stats();
    assert_eq!(stats.get(&stats.dropped), 0, "nothing was lost");
    assert_eq!(event_ids.len() as u64, stats.get(&stats.captured), "every admitted event is in the table or the spool");
    assert!(!spooled.is_empty(), "the rest went to the spool");
    let served: Vec<&(u16, String, Option<String>)> =
        answered.iter().filter(|(_, _, code)| code.as_deref() != Some("AUDIT_UNAVAILABLE")).collect();
    assert!(served.len() > 50, "a flood: {} requests served", served.len());
    for (status, id, _) in &served {
        assert!(request_ids.contains(id.as_str()), "served request {id} ({status}) has no event");
    }
    for (_, id, _) in answered.iter().filter(|(_, _, code)| code.as_deref() == Some("AUDIT_UNAVAILABLE")) {
        assert!(!request_ids.contains(id.as_str()), "a refused request {id} has an event");
    }
}
