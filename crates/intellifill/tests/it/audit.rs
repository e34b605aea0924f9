//! The audit pipeline through the real server: one row per request, PII-free, nothing lost when the
//! database goes away or the process stops, security events and anomalies, the query API (retention: `audit_partitions`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use intellifill::testing::schema as migrate;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, assert_error, column, email, scalar};

/// Send and return (status, request id).
async fn send(request: reqwest::RequestBuilder) -> (u16, String) {
    let response = request.send().await.expect("request");
    let id = response.headers()["x-request-id"].to_str().expect("id").to_owned();
    (response.status().as_u16(), id)
}

/// Audit rows by request id: (action, status, severity, metadata, user id, org id).
type Row = (String, Option<i32>, Option<String>, Value, Option<Uuid>, Option<Uuid>);

async fn rows(client: &tokio_postgres::Client) -> HashMap<String, Vec<Row>> {
    let mut out: HashMap<String, Vec<Row>> = HashMap::new();
    for r in client
        .query(
            "SELECT coalesce(request_id, ''), action, status, severity, metadata, user_id, organization_id FROM audit_log",
            &[],
        )
        .await
        .expect("audit rows")
    {
        out.entry(r.get(0)).or_default().push((r.get(1), r.get(2), r.get(3), r.get(4), r.get(5), r.get(6)));
    }
    out
}

#[tokio::test]
async fn every_request_shape_makes_exactly_one_row_and_excluded_paths_none() {
    let (app, a, org_a) = TestApp::with_org("Audit A").await;
    let (_, org_b) = app.owned_org("Audit B").await;
    let k = app.knowledge(&a, org_a, "doc", "text").await;
    let kid = k["id"].as_str().expect("id").to_owned();
    let h = &app.http;
    let base = |p: &str| app.url(p);
    let requests = vec![
        ("me.read", 200, h.get(base("/api/me")).bearer_auth(&a.token)),
        ("knowledge.list", 200, h.get(base(&format!("/api/organizations/{org_a}/knowledge"))).bearer_auth(&a.token)),
        (
            "knowledge.create",
            201,
            h.post(base(&format!("/api/organizations/{org_a}/knowledge")))
                .bearer_auth(&a.token)
                .json(&json!({"title": "t", "content": "c"})),
        ),
        (
            "knowledge.update",
            200,
            h.patch(base(&format!("/api/organizations/{org_a}/knowledge/{kid}")))
                .bearer_auth(&a.token)
                .json(&json!({"title": "t2"})),
        ),
        (
            "knowledge.search",
            200,
            h.get(base(&format!("/api/organizations/{org_a}/knowledge/search?q=t2"))).bearer_auth(&a.token),
        ),
        (
            "knowledge.delete",
            204,
            h.delete(base(&format!("/api/organizations/{org_a}/knowledge/{kid}"))).bearer_auth(&a.token),
        ),
        ("me.read", 401, h.get(base("/api/me"))),
        ("knowledge.list", 403, h.get(base(&format!("/api/organizations/{org_b}/knowledge"))).bearer_auth(&a.token)),
        (
            "knowledge.read",
            400,
            h.get(base(&format!("/api/organizations/{org_a}/knowledge/not-a-uuid"))).bearer_auth(&a.token),
        ),
        (
            "knowledge.create",
            400,
            h.post(base(&format!("/api/organizations/{org_a}/knowledge")))
                .bearer_auth(&a.token)
                .header("content-type", "application/json")
                .body("{not json"),
        ),
        ("http.unmatched", 404, h.get(base("/api/nothing-here")).bearer_auth(&a.token)),
        ("http.unmatched", 404, h.get(base("/nowhere"))),
    ];
    let mut expected = Vec::new();
    for (action, status, request) in requests {
        let (got, id) = send(request).await;
        assert_eq!(got, status, "{action}");
        expected.push((id, action, status));
    }
    let mut excluded = Vec::new();
    for path in ["/health", "/health/ready", "/metrics"] {
        excluded.push(send(h.get(base(path))).await.1);
    }
    app.state.audit.flush().await;
    let stored = rows(&app.owner).await;
    for (id, action, status) in &expected {
        let found = stored.get(id).unwrap_or_else(|| panic!("no audit row for {action} {status}"));
        assert_eq!(found.len(), 1, "exactly one row for {action}");
        assert_eq!(found[0].0, *action);
        assert_eq!(found[0].1, Some(*status as i32));
    }
    for id in &excluded {
        assert!(!stored.contains_key(id), "excluded paths are not audited");
    }
    // User and organization come from the auth layer and the org context.
    let create = &stored[&expected[2].0][0];
    assert_eq!((create.4, create.5), (Some(a.id), Some(org_a)));
    assert_eq!(stored[&expected[6].0][0].4, None, "a failed authentication has no user");
    // The cross-tenant attempt is a security event on its own row, recorded against the organization probed.
    let cross = &stored[&expected[7].0][0];
    assert_eq!(cross.2.as_deref(), Some("high"));
    assert_eq!(cross.3["security"]["event"], "cross_tenant_attempt");
    assert_eq!((cross.4, cross.5), (Some(a.id), Some(org_b)));
    assert!(app.state.audit.stats().get(&app.state.audit.stats().dropped) == 0);
}

#[tokio::test]
async fn detailed_health_is_audited_while_liveness_and_readiness_are_not() {
    let (app, admin) = TestApp::with_user().await;
    app.owner.execute("UPDATE users SET role = 'ADMIN' WHERE id = $1", &[&admin.id]).await.expect("promote");
    let (status, detailed) = send(app.http.get(app.url("/health/detailed")).bearer_auth(&admin.token)).await;
    assert_eq!(status, 200);
    let (_, live) = send(app.http.get(app.url("/health"))).await;
    let (_, ready) = send(app.http.get(app.url("/health/ready"))).await;
    let (_, refused) = send(app.http.get(app.url("/health/detailed"))).await;
    app.state.audit.flush().await;
    let stored = rows(&app.owner).await;
    let row = &stored.get(&detailed).expect("a platform admin's /health/detailed has a row")[0];
    assert_eq!((row.0.as_str(), row.1, row.4), ("health.detailed", Some(200), Some(admin.id)));
    assert_eq!(stored.get(&refused).expect("a refused /health/detailed has a row")[0].1, Some(401));
    assert!(!stored.contains_key(&live) && !stored.contains_key(&ready), "liveness and readiness are not audited");
}

#[tokio::test]
async fn excluded_paths_match_the_full_path_only() {
    let (app, u) = TestApp::with_user_using(|a| a.audit_exclude_paths = Some("/api/me".into())).await;
    let (_, me) = send(app.http.get(app.url("/api/me")).bearer_auth(&u.token)).await;
    let (_, meh) = send(app.http.get(app.url("/api/meh")).bearer_auth(&u.token)).await;
    app.state.audit.flush().await;
    let stored = rows(&app.owner).await;
    assert!(!stored.contains_key(&me));
    assert!(stored.contains_key(&meh), "/api/meh is not under /api/me");

    let (app, u, org) =
        TestApp::with_org_using(|a| a.audit_exclude_paths = Some("/api/organizations/*".into()), "X").await;
    let (_, under) = send(app.http.get(app.url(&format!("/api/organizations/{org}"))).bearer_auth(&u.token)).await;
    let (_, me) = send(app.http.get(app.url("/api/me")).bearer_auth(&u.token)).await;
    app.state.audit.flush().await;
    let stored = rows(&app.owner).await;
    assert!(!stored.contains_key(&under), "a subtree entry excludes the paths under it");
    assert!(stored.contains_key(&me), "and nothing else");
}

#[tokio::test]
async fn personal_data_and_secrets_never_reach_the_table() {
    let (app, u, org) = TestApp::with_org("PII Org").await;
    let secrets = [
        "hunter2-password",
        "sk_live_secret_token_value",
        "jane.doe@example.org",
        "+44 20 7946 0958",
        "4111 1111 1111 1111",
        "GB82 WEST 1234 5698 7654 32",
        "123-45-6789",
        "Jane Q. Doe",
        "221B Baker Street",
        "1984-03-02",
        "X1234567",
    ];
    let body = json!({
        "title": "Customer note",
        "content": format!("Call {} or mail {}; card {}; IBAN {}", secrets[3], secrets[2], secrets[4], secrets[5]),
        "password": secrets[0],
        "apiToken": secrets[1],
        "ssn": secrets[6],
        "customer": {"fullName": secrets[7], "address": secrets[8], "dateOfBirth": secrets[9], "passport": secrets[10]},
    });
    let (status, id) =
        send(app.http.post(app.url(&format!("/api/organizations/{org}/knowledge"))).bearer_auth(&u.token).json(&body))
            .await;
    assert_eq!(status, 400, "unknown fields are refused, and the attempt is audited");
    let (status, id2) = send(
        app.http
            .post(app.url(&format!("/api/organizations/{org}/knowledge")))
            .bearer_auth(&u.token)
            .json(&json!({"title": "ok", "content": body["content"]})),
    )
    .await;
    assert_eq!(status, 201);
    let (_, id3) = send(
        app.http
            .post(app.url(&format!("/api/organizations/{org}/knowledge")))
            .bearer_auth(&u.token)
            .header("content-type", "text/plain")
            .body(format!("password={}", secrets[0])),
    )
    .await;
    // Query strings and user agents are free text too (sanitized by the writer, off the request path).
    let (s, _) = send(
        app.http
            .get(app.url(&format!("/api/organizations/{org}/knowledge/search")))
            .query(&[("q", secrets[2])])
            .header("user-agent", format!("crawler/1.0 (+{})", secrets[2]))
            .bearer_auth(&u.token),
    )
    .await;
    assert_eq!(s, 200);
    app.state.audit.flush().await;
    let all: Vec<String> = column(&app.owner, "SELECT row_to_json(a)::text FROM audit_log a", &[]).await;
    let text = all.join("\n");
    for s in secrets {
        assert!(!text.contains(s), "{s:?} reached the audit table: {text}");
    }
    assert!(!text.contains("jane.doe%40example.org"), "the URL-encoded e-mail of the query reached the table");
    assert!(text.contains("crawler/1.0"), "the harmless part of the user agent is kept");
    let stored = rows(&app.owner).await;
    let first = &stored[&id][0].3["body"];
    assert!(first["_dropped"].as_array().is_some_and(|d| !d.is_empty()), "secrets are dropped: {first}");
    assert_eq!(stored[&id2][0].3["body"]["title"], "ok", "harmless fields are kept");
    let plain = &stored[&id3][0].3["body"];
    assert_eq!(plain["contentType"], "text/plain");
    assert!(plain["size"].as_u64().is_some_and(|n| n > 0), "non-JSON bodies: size and type only: {plain}");
}

#[tokio::test]
async fn a_database_outage_spools_events_and_the_replay_stores_each_exactly_once() {
    let (pg, runtime_url, owner_url) = crate::helpers::own_cluster("audit_outage").await;
    let emulator = gotrue_emulator::Emulator::start(Default::default(), ([127, 0, 0, 1], 0).into()).await.expect("emu");
    let app = TestApp::spawn_with_urls(
        "audit_outage".into(),
        runtime_url,
        owner_url.clone(),
        emulator,
        settings!(audit_flush_interval_ms = "100", db_pool_wait_timeout_ms = "500", db_connect_timeout_ms = "500"),
    )
    .await;
    let u = app.user(&email("u")).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let (s, id) = send(app.http.get(app.url("/api/me")).bearer_auth(&u.token)).await;
        assert_eq!(s, 200);
        ids.push(id);
    }
    pg.stop().await.expect("stop postgres");
    for i in 0..8 {
        let started = Instant::now();
        let request = if i % 2 == 0 {
            app.http.get(app.url("/api/me")).bearer_auth(&u.token)
        } else {
            app.http.get(app.url("/api/me"))
        };
        let (s, id) = send(request).await;
        assert!(started.elapsed() < Duration::from_secs(3), "no request hangs while the database is down");
        assert_eq!(s, if i % 2 == 0 { 503 } else { 401 });
        ids.push(id);
    }
    app.state.audit.flush().await;
    assert!(app.state.audit.spool_pending() >= 8, "events wait on disk, not in memory");
    pg.restart().await.expect("restart postgres");
    let owner = migrate::connect(&owner_url).await.expect("owner again");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        app.state.audit.flush().await;
        if app.state.audit.spool_pending() == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the spool was not replayed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stored = rows(&owner).await;
    for id in &ids {
        assert_eq!(stored.get(id).map(Vec::len), Some(1), "request {id} stored exactly once");
    }
    let stats = app.state.audit.stats();
    assert!(stats.get(&stats.replayed) >= 8);
    assert_eq!(stats.get(&stats.dropped), 0);
    drop(app);
    pg.stop().await.expect("stop");
}

#[tokio::test]
async fn stopping_with_a_full_queue_loses_nothing() {
    let (mut app, u) = TestApp::with_user_using(settings!(
        audit_queue_capacity = "4",
        audit_batch_size = "1000",
        audit_flush_interval_ms = "600000"
    ))
    .await;
    let requests = (0..40).map(|_| send(app.http.get(app.url("/api/me")).bearer_auth(&u.token)));
    let answered = futures::future::join_all(requests).await;
    app.stop().await.expect("graceful stop");
    let stored = rows(&app.owner).await;
    // The queue (4) and the overflow (4 more) hold 8 events: past them requests are refused, unserved.
    let served: Vec<&String> = answered.iter().filter(|(status, _)| *status == 200).map(|(_, id)| id).collect();
    assert!(served.len() > 4, "the overflow took events past the queue: {} served", served.len());
    assert!(answered.iter().all(|(status, _)| [200, 503].contains(status)), "{answered:?}");
    for id in served {
        assert_eq!(stored.get(id).map(Vec::len), Some(1), "request {id} stored exactly once");
    }
    for (_, id) in answered.iter().filter(|(status, _)| *status == 503) {
        assert!(!stored.contains_key(id), "a refused request has no row: it was not served");
    }
}

#[tokio::test]
async fn a_restart_replays_what_the_previous_run_left_in_the_spool() {
    let spool = tempfile::tempdir().expect("dir");
    let dir = spool.path().display().to_string();
    let db = crate::helpers::fresh_database().await;
    let emulator = gotrue_emulator::Emulator::start(Default::default(), ([127, 0, 0, 1], 0).into()).await.expect("emu");
    // Events of a "crashed" run, written straight into the spool.
    {
        let spool = intellifill::testing::Spool::open(spool.path()).expect("open");
        let events: Vec<_> =
            (0..3).map(|i| intellifill::testing::AuditEvent::new(format!("test.crashed{i}"))).collect();
        spool.append(&events).expect("append");
    }
    let app = TestApp::spawn_on(db, emulator, move |a| a.audit_spool_dir = Some(dir)).await;
    app.state.audit.flush().await;
    let n: i64 = scalar(&app.owner, "SELECT count(*) FROM audit_log WHERE action LIKE 'test.crashed%'", &[]).await;
    assert_eq!(n, 3);
    assert_eq!(app.state.audit.spool_pending(), 0);
}

async fn wait_for_rows(app: &TestApp, sql: &str, at_least: i64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        app.state.audit.flush().await;
        let n: i64 = scalar(&app.owner, sql, &[]).await;
        if n >= at_least || Instant::now() > deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn forged_tokens_and_search_bursts_are_security_events() {
    let (app, u, org) = TestApp::with_org_using(|a| a.anomaly_searches_per_minute = Some("3".into()), "Bursty").await;
    let forged = format!("{}AAAA", &u.token[..u.token.len() - 4]);
    let (s, id) = send(app.http.get(app.url("/api/me")).bearer_auth(&forged)).await;
    assert_eq!(s, 401);
    for _ in 0..6 {
        let (s, _) = send(
            app.http.get(app.url(&format!("/api/organizations/{org}/knowledge/search?q=x"))).bearer_auth(&u.token),
        )
        .await;
        assert_eq!(s, 200);
    }
    let n = wait_for_rows(&app, "SELECT count(*) FROM audit_log WHERE action = 'security.anomaly'", 1).await;
    assert_eq!(n, 1, "reported once per window, however many searches cross it");
    let row = app
        .owner
        .query_one("SELECT user_id, severity, metadata FROM audit_log WHERE action = 'security.anomaly'", &[])
        .await
        .expect("anomaly");
    assert_eq!(row.get::<_, Option<Uuid>>(0), Some(u.id));
    assert_eq!(row.get::<_, Option<String>>(1).as_deref(), Some("high"));
    let meta: Value = row.get(2);
    assert_eq!(meta["security"]["details"]["kind"], "search_burst");
    let stored = rows(&app.owner).await;
    assert_eq!(stored[&id][0].3["security"]["event"], "forged_token");
}

#[tokio::test]
async fn repeated_cross_tenant_attempts_lock_the_user_out_when_auto_lock_is_on() {
    let app = TestApp::with_auto_lock().await;
    let (victim, other_org) = app.owned_org("Victim Org").await;
    let attacker = app.user(&email("attacker")).await;
    assert_eq!(app.get(&attacker, "/api/me").await.0, 200);
    for _ in 0..3 {
        let (s, b) = app.get(&attacker, &format!("/api/organizations/{other_org}/knowledge")).await;
        assert_error(s, &b, 403, "NOT_ORG_MEMBER");
    }
    let b = app.get_until(&attacker, "/api/me", 403, Duration::from_secs(10), "the attacker was not locked out").await;
    assert_eq!(b["code"], "ACCOUNT_DEACTIVATED");
    assert_eq!(app.get(&victim, "/api/me").await.0, 200, "nobody else is affected");
}

#[tokio::test]
async fn org_admins_read_their_log_and_platform_admins_read_all() {
    let (app, owner, org) = TestApp::with_org("Logged").await;
    let (outsider, other_org) = app.owned_org("Elsewhere").await;
    let member = app.member(org, "MEMBER").await;
    for i in 0..3 {
        app.knowledge(&owner, org, &format!("k{i}"), "c").await;
    }
    app.knowledge(&outsider, other_org, "theirs", "c").await;
    app.state.audit.flush().await;

    let path = format!("/api/organizations/{org}/audit");
    let (s, b) = app.get(&owner, &path).await;
    assert_eq!(s, 200, "{b}");
    let data = b["data"].as_array().expect("data");
    assert!(data.iter().all(|e| e["organizationId"] == org.to_string()), "{b}");
    assert!(data.iter().filter(|e| e["action"] == "knowledge.create").count() >= 3);

    let (s, b) = app.get(&owner, &format!("{path}?action=knowledge.create&limit=2")).await;
    assert_eq!(s, 200);
    assert_eq!(b["data"].as_array().map(Vec::len), Some(2));
    let cursor = b["nextCursor"].as_str().expect("more");
    let (_, b2) = app.get(&owner, &format!("{path}?action=knowledge.create&limit=2&cursor={cursor}")).await;
    assert_eq!(b2["data"].as_array().map(Vec::len), Some(1));
    let (_, b3) = app.get(&owner, &format!("{path}?action=knowledge.*&userId={}", member.id)).await;
    assert_eq!(b3["data"].as_array().map(Vec::len), Some(0));

    let (s, b) = app.get(&member, &path).await;
    assert_error(s, &b, 403, "ADMIN_REQUIRED");
    let (s, b) = app.get(&outsider, &path).await;
    assert_error(s, &b, 403, "NOT_ORG_MEMBER");
    let (s, b) = app.get(&owner, &format!("{path}?from=yesterday")).await;
    assert_eq!(s, 400, "{b}");
    let (s, b) = app.get(&owner, &format!("{path}?action=DROP%20TABLE")).await;
    assert_error(s, &b, 400, "VALIDATION_ERROR");

    let (s, b) = app.get(&owner, "/api/admin/audit").await;
    assert_error(s, &b, 403, "FORBIDDEN");
    app.owner.execute("UPDATE users SET role = 'ADMIN' WHERE id = $1", &[&owner.id]).await.expect("promote");
    let (s, b) = app.get(&owner, "/api/admin/audit?action=knowledge.create&limit=100").await;
    assert_eq!(s, 200, "{b}");
    let orgs: std::collections::HashSet<String> = b["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|e| e["organizationId"].as_str().map(str::to_owned))
        .collect();
    assert!(orgs.contains(&org.to_string()) && orgs.contains(&other_org.to_string()), "{orgs:?}");
}

#[tokio::test]
async fn the_probed_organization_sees_a_cross_tenant_attempt_in_its_audit_log() {
    let (app, attacker, own_org) = TestApp::with_org("Prober").await;
    let (victim, target) = app.owned_org("Probed").await;
    let (_, bystander_org) = app.owned_org("Bystander").await;
    let probe = app.http.get(app.url(&format!("/api/organizations/{target}/knowledge"))).bearer_auth(&attacker.token);
    let (status, probe_id) = send(probe).await;
    assert_eq!(status, 403);
    app.state.audit.flush().await;

    // The target's OWNER finds it through the API, marked as what it is, with who did it.
    let (s, b) = app.get(&victim, &format!("/api/organizations/{target}/audit?userId={}", attacker.id)).await;
    assert_eq!(s, 200, "{b}");
    let data = b["data"].as_array().expect("data");
    let row = data.iter().find(|e| e["requestId"] == probe_id.as_str()).unwrap_or_else(|| panic!("no row: {b}"));
    assert_eq!(row["organizationId"], target.to_string());
    assert_eq!(row["userId"], attacker.id.to_string());
    assert_eq!((row["status"].as_i64(), row["severity"].as_str()), (Some(403), Some("high")));
    assert_eq!(row["metadata"]["security"]["event"], "cross_tenant_attempt", "{row}");

    // The prober's own organization does not see it (it happened elsewhere), nor does a third one.
    let (s, b) = app.get(&attacker, &format!("/api/organizations/{own_org}/audit")).await;
    assert_eq!(s, 200, "{b}");
    assert!(b["data"].as_array().expect("data").iter().all(|e| e["requestId"] != probe_id.as_str()), "{b}");
    let bystander = app.member(bystander_org, "ADMIN").await;
    let (s, b) = app.get(&bystander, &format!("/api/organizations/{bystander_org}/audit")).await;
    assert_eq!(s, 200, "{b}");
    assert!(b["data"].as_array().expect("data").iter().all(|e| e["requestId"] != probe_id.as_str()), "{b}");

    // A member short of the route's role is on its own organization's log too.
    let viewer = app.member(target, "VIEWER").await;
    let (s, _) = app
        .post(&viewer, &format!("/api/organizations/{target}/knowledge"), json!({"title": "t", "content": "c"}))
        .await;
    assert_eq!(s, 403);
    app.state.audit.flush().await;
    let (_, b) = app.get(&victim, &format!("/api/organizations/{target}/audit?userId={}", viewer.id)).await;
    let refused = b["data"].as_array().expect("data");
    assert!(refused.iter().any(|e| e["action"] == "knowledge.create" && e["status"] == 403), "{b}");
}

#[tokio::test]
async fn a_client_cannot_choose_or_collide_the_request_id_of_its_rows() {
    let app = TestApp::spawn().await;
    let a = app.user(&email("a")).await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let request = app.http.get(app.url("/api/me")).bearer_auth(&a.token).header("x-request-id", "client-chosen-1");
        let (status, id) = send(request).await;
        assert_eq!(status, 200);
        assert_ne!(id, "client-chosen-1");
        ids.push(id);
    }
    assert_ne!(ids[0], ids[1], "every request has its own id");
    app.state.audit.flush().await;
    let stored = rows(&app.owner).await;
    assert!(!stored.contains_key("client-chosen-1"), "no row is keyed by the client's id");
    for id in &ids {
        let found = stored.get(id).expect("a row under the server's id");
        assert_eq!(found[0].3["clientRequestId"], "client-chosen-1", "the client's id is kept beside it");
    }
}
