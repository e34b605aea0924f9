//! A write and its audit row commit together: the row is written in the request's own transaction, pipelined
//! before `COMMIT`, so the change and its row both commit or neither does (reads, refused and failed requests
//! keep the asynchronous path). Through the real server, and through a real `intellifill serve` process killed
//! with SIGKILL under load.

use std::collections::HashSet;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, column, email, scalar};

/// Send and return (status, request id, body).
async fn send(request: reqwest::RequestBuilder) -> (u16, String, Value) {
    let response = request.send().await.expect("request");
    let id = response.headers()["x-request-id"].to_str().expect("id").to_owned();
    let status = response.status().as_u16();
    (status, id, response.json::<Value>().await.unwrap_or(Value::Null))
}

/// Whether the audit row of request `request_id` was committed by the same transaction as the row of `table`
/// with id `id` (the same `xmin`), and the audit row's (status, entity id).
async fn same_transaction(
    app: &TestApp,
    request_id: &str,
    table: &str,
    id: Uuid,
) -> (bool, Option<i32>, Option<String>) {
    let row = app
        .owner
        .query_one(
            &format!(
                "SELECT a.xmin::text = t.xmin::text, a.status, a.entity_id
                   FROM audit_log a, {table} t WHERE a.request_id = $1 AND t.id = $2"
            ),
            &[&request_id, &id],
        )
        .await
        .unwrap_or_else(|e| panic!("the audit row of {request_id} and {table} {id}: {e}"));
    (row.get(0), row.get(1), row.get(2))
}

async fn rows_of(app: &TestApp, request_id: &str) -> i64 {
    scalar(&app.owner, "SELECT count(*) FROM audit_log WHERE request_id = $1", &[&request_id]).await
}

fn uuid_of(body: &Value) -> Uuid {
    body["id"].as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no id in {body}"))
}

#[tokio::test]
async fn a_committed_write_has_its_row_in_the_same_transaction_and_a_read_waits_for_the_writer() {
    // A minute between the writer's batches: whatever is in the table right after a response was not queued.
    let app = TestApp::spawn_with(|a| a.audit_flush_interval_ms = Some("60000".into())).await;
    let owner = app.user(&email("owner")).await;
    let h = &app.http;

    let (s, org_req, org) =
        send(h.post(app.url("/api/organizations")).bearer_auth(&owner.token).json(&json!({"name": "Atomic"}))).await;
    assert_eq!(s, 201, "{org}");
    let org = uuid_of(&org);
    let (same, status, entity) = same_transaction(&app, &org_req, "organizations", org).await;
    assert!(same, "the organization and its audit row commit together");
    assert_eq!((status, entity), (Some(201), Some(org.to_string())));

    let knowledge = format!("/api/organizations/{org}/knowledge");
    let body = json!({"title": "call jane@example.org", "content": "her card 4111 1111 1111 1111"});
    let (s, created_req, created) = send(h.post(app.url(&knowledge)).bearer_auth(&owner.token).json(&body)).await;
    assert_eq!(s, 201, "{created}");
    let kid = uuid_of(&created);
    let (same, status, entity) = same_transaction(&app, &created_req, "knowledge_sources", kid).await;
    assert!(same, "the knowledge row and its audit row commit together");
    assert_eq!((status, entity), (Some(201), Some(kid.to_string())));
    // Sanitized as on the asynchronous path.
    let meta: Value = scalar(&app.owner, "SELECT metadata FROM audit_log WHERE request_id = $1", &[&created_req]).await;
    let text = meta.to_string();
    assert!(meta["body"]["title"].as_str().is_some_and(|t| t.contains("[EMAIL]")), "{meta}");
    assert!(!text.contains("jane@example.org") && !text.contains("4111 1111"), "{meta}");
    assert_eq!(meta["route"], "/api/organizations/{orgId}/knowledge");

    let (s, updated_req, _) =
        send(h.patch(app.url(&format!("{knowledge}/{kid}"))).bearer_auth(&owner.token).json(&json!({"title": "t2"})))
            .await;
    assert_eq!(s, 200);
    assert_eq!(
        same_transaction(&app, &updated_req, "knowledge_sources", kid).await,
        (true, Some(200), Some(kid.to_string()))
    );

    let invite = json!({"email": email("invitee"), "role": "MEMBER"});
    let invitations = format!("/api/organizations/{org}/invitations");
    let (s, invite_req, invitation) = send(h.post(app.url(&invitations)).bearer_auth(&owner.token).json(&invite)).await;
    assert_eq!(s, 201, "{invitation}");
    let iid = uuid_of(&invitation);
    assert!(same_transaction(&app, &invite_req, "organization_invitations", iid).await.0);

    let member = app.member(org, "VIEWER").await;
    let (s, role_req, _) = send(
        h.patch(app.url(&format!("/api/organizations/{org}/members/{}", member.id)))
            .bearer_auth(&owner.token)
            .json(&json!({"role": "MEMBER"})),
    )
    .await;
    assert_eq!(s, 200);
    let membership: Uuid = scalar(
        &app.owner,
        "SELECT id FROM organization_memberships WHERE organization_id = $1 AND user_id = $2",
        &[&org, &member.id],
    )
    .await;
    assert!(same_transaction(&app, &role_req, "organization_memberships", membership).await.0);

    let (s, deleted_req, _) = send(h.delete(app.url(&format!("{knowledge}/{kid}"))).bearer_auth(&owner.token)).await;
    assert_eq!(s, 204);
    let deleted: (Option<i32>, Option<String>) = {
        let r = app
            .owner
            .query_one("SELECT status, entity_id FROM audit_log WHERE request_id = $1", &[&deleted_req])
            .await
            .expect("the delete's row, without waiting for the writer");
        (r.get(0), r.get(1))
    };
    assert_eq!(deleted, (Some(204), Some(kid.to_string())));

    // A read is queued for the writer: not in the table until its batch is written.
    let (s, read_req, _) = send(h.get(app.url(&knowledge)).bearer_auth(&owner.token)).await;
    assert_eq!(s, 200);
    assert_eq!(rows_of(&app, &read_req).await, 0, "a read's row waits for the writer's batch");
    app.state.audit.flush().await;
    assert_eq!(rows_of(&app, &read_req).await, 1);
    // And the writes are not recorded a second time by the asynchronous path.
    for id in [&org_req, &created_req, &updated_req, &invite_req, &role_req, &deleted_req] {
        assert_eq!(rows_of(&app, id).await, 1, "request {id}");
    }
    let in_tx = app.state.audit.stats();
    assert_eq!(in_tx.get(&in_tx.dropped), 0);
}

#[tokio::test]
async fn a_write_whose_transaction_rolls_back_keeps_no_row_of_it_and_its_failure_is_recorded() {
    let (app, owner, org) = TestApp::with_org("Rolled back").await;
    // At COMMIT: a deferred check on the knowledge row (the INSERT and the audit row before it succeed).
    app.owner
        .batch_execute(
            "CREATE FUNCTION refuse_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN RAISE EXCEPTION 'refused at commit'; END $$;
             CREATE CONSTRAINT TRIGGER refuse_at_commit AFTER INSERT ON knowledge_sources
               DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.title = 'refused at commit')
               EXECUTE FUNCTION refuse_at_commit();
             CREATE FUNCTION refuse_row() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN RAISE EXCEPTION 'audit row refused'; END $$;
             CREATE TRIGGER refuse_row BEFORE INSERT ON audit_log FOR EACH ROW
               WHEN (NEW.status = 201 AND NEW.metadata->'body'->>'title' = 'row refused')
               EXECUTE FUNCTION refuse_row();",
        )
        .await
        .expect("triggers");
    let knowledge = app.url(&format!("/api/organizations/{org}/knowledge"));
    for title in ["refused at commit", "row refused"] {
        let body = json!({"title": title, "content": "x"});
        let (s, request_id, answer) = send(app.http.post(&knowledge).bearer_auth(&owner.token).json(&body)).await;
        assert!(s >= 500, "{title}: {s} {answer}");
        let kept: i64 = scalar(&app.owner, "SELECT count(*) FROM knowledge_sources WHERE title = $1", &[&title]).await;
        assert_eq!(kept, 0, "{title}: the write did not commit");
        app.state.audit.flush().await;
        // One row, the asynchronous path's: the status answered, not the 201 of the row that rolled back.
        let statuses: Vec<Option<i32>> =
            column(&app.owner, "SELECT status FROM audit_log WHERE request_id = $1", &[&request_id]).await;
        assert_eq!(statuses, vec![Some(i32::from(s))], "{title}");
    }
    // The connection that failed is usable again, or gone: later writes commit with their rows.
    let created = app.knowledge(&owner, org, "fine", "x").await;
    let kid = uuid_of(&created);
    let n: i64 = scalar(&app.owner, "SELECT count(*) FROM audit_log WHERE entity_id = $1", &[&kid.to_string()]).await;
    assert_eq!(n, 1);
}

/// One `intellifill serve` process on the test's database.
struct Server {
    child: std::process::Child,
    base: String,
    _spool: tempfile::TempDir,
}

impl Server {
    async fn start(app: &TestApp, env: &[(&str, &str)]) -> Server {
        let port = testkit::free_port().expect("port");
        let spool = tempfile::tempdir().expect("spool");
        let mut cmd = app.serve_command(spool.path());
        cmd.env("BIND_ADDR", format!("127.0.0.1:{port}"))
            .env("RATE_LIMIT_ENABLED", "false")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut server = Server {
            child: cmd.spawn().expect("spawn intellifill serve"),
            base: format!("http://127.0.0.1:{port}"),
            _spool: spool,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !app.http.get(format!("{}/health", server.base)).send().await.is_ok_and(|r| r.status().is_success()) {
            assert!(server.child.try_wait().expect("child").is_none(), "the server exited");
            assert!(std::time::Instant::now() < deadline, "the server did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        server
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the clients saw answered.
#[derive(Default)]
struct Seen {
    created: Vec<Uuid>,
    deleted: Vec<Uuid>,
    reads: Vec<String>,
}

#[tokio::test]
async fn sigkill_under_load_leaves_no_committed_write_without_its_row() {
    let (app, owner, org) = TestApp::with_org("Killed").await;
    let writers: Vec<_> = [owner.clone(), app.member(org, "MEMBER").await, app.member(org, "ADMIN").await].into();
    const BATCH: usize = 50;
    let batch = BATCH.to_string();
    // The default flush interval; batches of 50, so the writer is busy between them.
    let server = Server::start(&app, &[("AUDIT_FLUSH_INTERVAL_MS", "500"), ("AUDIT_BATCH_SIZE", &batch)]).await;
    let base = server.base.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(std::sync::Mutex::new(Seen::default()));
    let mut clients = Vec::new();
    // Three writers creating and deleting (every other one created is deleted), three readers listing.
    for (i, user) in writers.iter().chain(writers.iter()).enumerate() {
        let (http, base, stop, seen, token) =
            (reqwest::Client::new(), base.clone(), stop.clone(), seen.clone(), user.token.clone());
        let writes = i < writers.len();
        clients.push(tokio::spawn(async move {
            let knowledge = format!("{base}/api/organizations/{org}/knowledge");
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                if writes {
                    let body = json!({"title": format!("w{i}-{n}"), "content": "load"});
                    let Ok(r) = http.post(&knowledge).bearer_auth(&token).json(&body).send().await else { break };
                    if r.status() != 201 {
                        continue;
                    }
                    let Ok(created) = r.json::<Value>().await else { break };
                    let id = uuid_of(&created);
                    seen.lock().expect("seen").created.push(id);
                    if n.is_multiple_of(2) {
                        let Ok(r) = http.delete(format!("{knowledge}/{id}")).bearer_auth(&token).send().await else {
                            break;
                        };
                        if r.status() == 204 {
                            seen.lock().expect("seen").deleted.push(id);
                        }
                    }
                } else {
                    let Ok(r) = http.get(&knowledge).bearer_auth(&token).send().await else { break };
                    if r.status() == 200 {
                        let id = r.headers()["x-request-id"].to_str().expect("id").to_owned();
                        seen.lock().expect("seen").reads.push(id);
                    }
                }
            }
        }));
    }
    // Kill it mid-load, once there is load worth killing.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while seen.lock().expect("seen").created.len() < 300 {
        assert!(std::time::Instant::now() < deadline, "the load did not get going");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut server = server;
    server.child.kill().expect("SIGKILL");
    let _ = server.child.wait();
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.await;
    }

    // What the database holds: knowledge rows of the organization, and the audit rows by entity.
    let present: HashSet<Uuid> =
        column(&app.owner, "SELECT id FROM knowledge_sources WHERE organization_id = $1", &[&org])
            .await
            .into_iter()
            .collect();
    let db = &app.owner;
    let audited = |action: &'static str| async move {
        column::<String>(
            db,
            "SELECT entity_id FROM audit_log WHERE organization_id = $1 AND action = $2 AND status BETWEEN 200 AND 299",
            &[&org, &action],
        )
        .await
        .into_iter()
        .map(|id| id.parse::<Uuid>().expect("entity id"))
        .collect::<HashSet<Uuid>>()
    };
    let (created_rows, deleted_rows) = (audited("knowledge.create").await, audited("knowledge.delete").await);
    let seen = std::mem::take(&mut *seen.lock().expect("seen"));
    // Every knowledge row that committed has its create row; every one created (it has a create row) and gone
    // was deleted by a delete that committed, which has its row.
    let creates_without_row: Vec<&Uuid> = present.iter().filter(|id| !created_rows.contains(id)).collect();
    let deletes_without_row: Vec<&Uuid> =
        created_rows.iter().filter(|id| !present.contains(id) && !deleted_rows.contains(id)).collect();
    assert!(creates_without_row.is_empty(), "committed creates without their audit row: {creates_without_row:?}");
    assert!(deletes_without_row.is_empty(), "committed deletes without their audit row: {deletes_without_row:?}");
    assert!(seen.created.iter().all(|id| created_rows.contains(id)), "an answered create has its row");
    assert!(seen.deleted.iter().all(|id| deleted_rows.contains(id)), "an answered delete has its row");
    // No row claims a write that did not commit: a created entity is present or was deleted.
    assert!(deleted_rows.iter().all(|id| !present.contains(id)), "a delete row for a row still there");

    // Reads lost with the process: at most what was in memory, the queue and overflow and one batch.
    let reads: Vec<&str> = seen.reads.iter().map(String::as_str).collect();
    let recorded: i64 =
        scalar(&app.owner, "SELECT count(*) FROM audit_log WHERE request_id = ANY($1)", &[&reads]).await;
    let lost = reads.len() as i64 - recorded;
    eprintln!(
        "[audit_atomic] SIGKILL: {} creates and {} deletes answered, {} knowledge rows left, 0 writes without their \
         row; reads answered {}, recorded {recorded}, lost {lost}",
        seen.created.len(),
        seen.deleted.len(),
        present.len(),
        reads.len(),
    );
    assert!(lost >= 0 && lost <= 2 * 10_000 + BATCH as i64, "lost {lost} reads");
}
