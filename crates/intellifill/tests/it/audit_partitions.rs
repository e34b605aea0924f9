//! `audit_log` partitioned by retention class and month (migration 0006), through the real server: rows land
//! in the partition of their class and month, the server creates months ahead (several instances at once),
//! an insert no month covers is kept and moved, retention drops only expired months of the right class and
//! records it, and the runtime role stays append-only and policed.

use std::time::Duration;

use chrono::{DateTime, Datelike, Months, TimeZone, Utc};
use serde_json::{Value, json};
use tokio_postgres::error::SqlState;
use uuid::Uuid;

use crate::helpers::{TestApp, column, scalar};

/// `audit_log_<class>_YYYYMM` of the month `months` from the current one (UTC).
fn month_partition(class: &str, months: i32) -> String {
    let now = Utc::now();
    let first = Utc.with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0).single().expect("month start");
    let month =
        if months >= 0 { first + Months::new(months as u32) } else { first - Months::new(months.unsigned_abs()) };
    format!("audit_log_{class}_{}", month.format("%Y%m"))
}

/// The month partitions of `class` (names), as the owner sees them.
async fn partitions(app: &TestApp, class: &str) -> Vec<String> {
    column(
        &app.owner,
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
          WHERE i.inhparent = $1::text::regclass ORDER BY 1",
        &[&format!("audit_log_{class}")],
    )
    .await
}

/// Poll (every 100 ms, at most 20 s) until `class` has the partition `months` ahead.
async fn wait_for_partition(app: &TestApp, class: &str, months: i32) {
    let wanted = month_partition(class, months);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !partitions(app, class).await.contains(&wanted) {
        assert!(tokio::time::Instant::now() < deadline, "{wanted} was not created");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One row through `audit_append` as the runtime role (the writer's way in), created at `at`.
async fn append(app: &TestApp, action: &str, method: &str, at: DateTime<Utc>) -> Uuid {
    let id = Uuid::now_v7();
    let db = app.runtime_client().await;
    let sql = format!(
        "SELECT audit_append(ARRAY['{id}']::uuid[], ARRAY['{}']::timestamptz[], '{{NULL}}', '{{NULL}}', ARRAY['{action}'],
                '{{NULL}}', '{{NULL}}', '{{NULL}}', ARRAY['{method}'], '{{NULL}}', '{{200}}', '{{1}}', '{{NULL}}',
                '{{NULL}}', '{{NULL}}', ARRAY['{{}}']::jsonb[])",
        at.to_rfc3339()
    );
    db.simple_query(&sql).await.expect("audit_append");
    id
}

/// The partition holding row `id`.
async fn partition_of(app: &TestApp, id: Uuid) -> String {
    scalar(&app.owner, "SELECT tableoid::regclass::text FROM audit_log WHERE id = $1", &[&id]).await
}

/// `intellifill audit retention ARGS` against the app's database.
fn retention(app: &TestApp, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_intellifill"))
        .args(["audit", "retention"])
        .args(args)
        .env_clear()
        .env("DATABASE_MIGRATION_URL", &app.owner_url)
        .output()
        .expect("run")
}

#[tokio::test]
async fn request_rows_land_in_the_partition_of_their_class_and_month() {
    let (app, owner, org) = TestApp::with_org("Partitioned").await;
    let (s, _) = app.get(&owner, "/api/me").await;
    assert_eq!(s, 200);
    app.knowledge(&owner, org, "a note", "text").await;
    let (s, _) = app.get(&owner, &format!("/api/organizations/{org}/audit")).await;
    assert_eq!(s, 200);
    app.state.audit.flush().await;
    let placed: Vec<String> = column(
        &app.owner,
        "SELECT action || ' ' || retention_class || ' ' || tableoid::regclass::text FROM audit_log
          WHERE user_id = $1 AND action IN ('me.read', 'knowledge.create', 'audit.list') ORDER BY action",
        &[&owner.id],
    )
    .await;
    assert_eq!(
        placed,
        [
            format!("audit.list security {}", month_partition("security", 0)),
            format!("knowledge.create write {}", month_partition("write", 0)),
            format!("me.read read {}", month_partition("read", 0)),
        ]
    );
    // A security outcome (a cross-tenant attempt: severity, `metadata.security`) is kept as long as the
    // security class, whatever its method.
    let (_, other_org) = app.owned_org("Someone else's").await;
    let (s, _) = app.get(&owner, &format!("/api/organizations/{other_org}/knowledge")).await;
    assert!(s == 403 || s == 404, "{s}");
    app.state.audit.flush().await;
    let classes: Vec<String> = column(
        &app.owner,
        "SELECT retention_class || ' ' || coalesce(severity, '-') FROM audit_log
          WHERE user_id = $1 AND metadata ? 'security'",
        &[&owner.id],
    )
    .await;
    assert!(!classes.is_empty() && classes.iter().all(|c| c.starts_with("security ")), "{classes:?}");
}

#[tokio::test]
async fn two_instances_starting_together_create_the_months_ahead_once() {
    let db = crate::helpers::fresh_database().await;
    let emulator =
        gotrue_emulator::Emulator::start(Default::default(), ([127, 0, 0, 1], 0).into()).await.expect("emulator");
    let ahead = |a: &mut intellifill::ServeArgs| a.audit_partitions_ahead_months = Some("7".into());
    let (first, second) =
        tokio::join!(TestApp::spawn_on(db.clone(), emulator.clone(), ahead), TestApp::spawn_on(db, emulator, ahead));
    for class in ["security", "write", "read"] {
        wait_for_partition(&first, class, 7).await;
        let names = partitions(&second, class).await;
        for months in 0..=7 {
            assert!(names.contains(&month_partition(class, months)), "{class} +{months} in {names:?}");
        }
        assert!(names.contains(&format!("audit_log_{class}_default")));
    }
    // Racing calls (what N instances do at each interval) all succeed, and each month is made once.
    let clients = [first.runtime_client().await, first.runtime_client().await, second.runtime_client().await];
    let runs = futures::future::join_all(
        clients.iter().map(|c| c.simple_query("SELECT created FROM audit_partitions_ensure(10)")),
    )
    .await;
    let mut created = 0;
    for run in runs {
        let messages = run.expect("maintenance succeeds under concurrency");
        for m in messages {
            if let tokio_postgres::SimpleQueryMessage::Row(row) = m {
                created += row.get(0).expect("created").parse::<i32>().expect("number");
            }
        }
    }
    assert_eq!(created, 3 * 3, "months 8, 9 and 10 of three classes, made once each");
    for class in ["security", "write", "read"] {
        assert!(partitions(&first, class).await.contains(&month_partition(class, 10)));
    }
}

#[tokio::test]
async fn an_insert_no_month_covers_is_kept_in_default_then_moved_into_its_month() {
    let app = TestApp::spawn().await;
    wait_for_partition(&app, "read", 3).await;
    let long_ago = Utc::now() - chrono::TimeDelta::days(600);
    let id = append(&app, "knowledge.read", "GET", long_ago).await;
    assert_eq!(partition_of(&app, id).await, "audit_log_read_default");
    let db = app.runtime_client().await;
    db.simple_query("SELECT audit_partitions_ensure(3)").await.expect("maintenance");
    let month = format!("audit_log_read_{}", long_ago.format("%Y%m"));
    assert_eq!(partition_of(&app, id).await, month);
    let waiting: i64 = scalar(&app.owner, "SELECT count(*) FROM audit_log_read_default", &[]).await;
    assert_eq!(waiting, 0);
    // Replays are idempotent on the event: the same row again adds nothing.
    append_again(&app, id, long_ago).await;
    let copies: i64 = scalar(&app.owner, "SELECT count(*) FROM audit_log WHERE id = $1", &[&id]).await;
    assert_eq!(copies, 1);
}

async fn append_again(app: &TestApp, id: Uuid, at: DateTime<Utc>) {
    let db = app.runtime_client().await;
    let sql = format!(
        "SELECT audit_append(ARRAY['{id}']::uuid[], ARRAY['{}']::timestamptz[], '{{NULL}}', '{{NULL}}',
                ARRAY['knowledge.read'], '{{NULL}}', '{{NULL}}', '{{NULL}}', ARRAY['GET'], '{{NULL}}', '{{200}}', '{{1}}',
                '{{NULL}}', '{{NULL}}', '{{NULL}}', ARRAY['{{}}']::jsonb[])",
        at.to_rfc3339()
    );
    db.simple_query(&sql).await.expect("replay");
}

#[tokio::test]
async fn retention_drops_only_expired_months_of_each_class_and_records_them() {
    let app = TestApp::spawn().await;
    wait_for_partition(&app, "read", 3).await;
    let old = Utc::now() - chrono::TimeDelta::days(500);
    let recent = Utc::now() - chrono::TimeDelta::days(100);
    let old_read = append(&app, "knowledge.read", "GET", old).await;
    let old_write = append(&app, "knowledge.create", "POST", old).await;
    let old_security = append(&app, "auth.session", "GET", old).await;
    let recent_read = append(&app, "knowledge.read", "GET", recent).await;
    app.runtime_client().await.simple_query("SELECT audit_partitions_ensure(3)").await.expect("maintenance");
    let old_read_month = partition_of(&app, old_read).await;
    assert_eq!(old_read_month, format!("audit_log_read_{}", old.format("%Y%m")));

    // A dry run reports and removes nothing.
    let dry = retention(&app, &["--read-days", "400", "--dry-run"]);
    assert!(dry.status.success(), "{}", String::from_utf8_lossy(&dry.stderr));
    let text = String::from_utf8_lossy(&dry.stdout);
    assert!(text.contains(&format!("read: would remove {old_read_month} (1 row(s)")), "{text}");
    assert!(partitions(&app, "read").await.contains(&old_read_month));

    let run = retention(&app, &["--read-days", "400"]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let text = String::from_utf8_lossy(&run.stdout);
    assert!(text.contains(&format!("read: dropped {old_read_month} (1 row(s)")), "{text}");
    assert!(text.contains("write (kept 1096 days): 0 partition(s)"), "{text}");
    let left: Vec<Uuid> = column(&app.owner, "SELECT id FROM audit_log ORDER BY created_at", &[]).await;
    assert!(!left.contains(&old_read), "the expired read row is gone");
    for kept in [old_write, old_security, recent_read] {
        assert!(left.contains(&kept), "{kept} was kept");
    }
    assert!(!partitions(&app, "read").await.contains(&old_read_month));
    let expected_cutoff = {
        let c = Utc::now() - chrono::TimeDelta::days(400);
        Utc.with_ymd_and_hms(c.year(), c.month(), 1, 0, 0, 0).single().expect("month")
    };
    let log = app
        .owner
        .query("SELECT class, cutoff, rows, partitions, disposition FROM audit_retention_log", &[])
        .await
        .expect("log");
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].get::<_, String>(0), "read");
    assert_eq!(log[0].get::<_, DateTime<Utc>>(1), expected_cutoff);
    assert_eq!(log[0].get::<_, i64>(2), 1);
    assert_eq!(log[0].get::<_, Vec<String>>(3), std::slice::from_ref(&old_read_month));
    assert_eq!(log[0].get::<_, String>(4), "dropped");

    // A late replay of an expired read event is kept (never refused), in the DEFAULT partition, which the
    // next run empties of expired rows and records; a second run finds nothing else.
    let late = append(&app, "knowledge.read", "GET", old).await;
    assert_eq!(partition_of(&app, late).await, "audit_log_read_default");
    app.runtime_client().await.simple_query("SELECT audit_partitions_ensure(3)").await.expect("maintenance");
    assert_eq!(partition_of(&app, late).await, "audit_log_read_default", "an expired month is not re-created");
    let again = retention(&app, &["--read-days", "400"]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("read: dropped audit_log_read_default (1 row(s)"));
    let logged: i64 = scalar(&app.owner, "SELECT count(*) FROM audit_retention_log", &[]).await;
    assert_eq!(logged, 2);

    // --keep-detached moves the expired write month to audit_archive for archiving, and says so in the log.
    let detach = retention(&app, &["--read-days", "400", "--write-days", "400", "--keep-detached"]);
    assert!(detach.status.success(), "{}", String::from_utf8_lossy(&detach.stderr));
    let write_month = format!("audit_log_write_{}", old.format("%Y%m"));
    let archived: Vec<String> = column(
        &app.owner,
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'audit_archive' AND c.relkind = 'r'",
        &[],
    )
    .await;
    assert_eq!(archived, std::slice::from_ref(&write_month));
    let archived_rows: i64 =
        scalar(&app.owner, &format!("SELECT count(*) FROM audit_archive.{write_month}"), &[]).await;
    assert_eq!(archived_rows, 1);
    let disposition: String =
        scalar(&app.owner, "SELECT disposition FROM audit_retention_log WHERE class = 'write'", &[]).await;
    assert_eq!(disposition, "detached");

    // Too short a retention is refused before anything is touched.
    let bad = retention(&app, &["--security-days", "7"]);
    assert!(!bad.status.success());
}

#[tokio::test]
async fn the_runtime_role_stays_append_only_on_every_partition_and_cannot_run_retention() {
    let app = TestApp::spawn().await;
    wait_for_partition(&app, "read", 1).await;
    let db = app.runtime_client().await;
    let current = month_partition("read", 0);
    let statements = [
        "UPDATE audit_log SET action = 'x'".to_owned(),
        "DELETE FROM audit_log".to_owned(),
        "TRUNCATE audit_log".to_owned(),
        format!("SELECT count(*) FROM {current}"),
        format!("DELETE FROM {current}"),
        format!("TRUNCATE {current}"),
        "DELETE FROM audit_log_read_default".to_owned(),
        "DROP TABLE audit_log_read_default".to_owned(),
        format!("ALTER TABLE audit_log_read DETACH PARTITION {current}"),
        "SELECT * FROM audit_retention_apply('read', 30, false, false)".to_owned(),
        "SELECT audit_partition_create('read', now())".to_owned(),
        "INSERT INTO audit_retention_log (class, cutoff, rows, partitions) VALUES ('read', now(), 0, '{}')".to_owned(),
    ];
    for sql in &statements {
        let err = db.simple_query(sql).await.expect_err(sql);
        assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{sql}: {err}");
    }
    // Still FORCE row-level security on the partitioned table, and no policy opens a partition.
    let forced: bool = scalar(
        &app.owner,
        "SELECT relrowsecurity AND relforcerowsecurity FROM pg_class WHERE relname = 'audit_log'",
        &[],
    )
    .await;
    assert!(forced);
    let partition_grants: i64 = scalar(
        &app.owner,
        "SELECT count(*) FROM information_schema.role_table_grants
          WHERE grantee = 'intellifill_app' AND table_name LIKE 'audit\\_log\\_%'",
        &[],
    )
    .await;
    assert_eq!(partition_grants, 0);
}

#[tokio::test]
async fn the_org_audit_pages_across_months_newest_first_and_hides_other_orgs() {
    let (app, owner, org) = TestApp::with_org("Months A").await;
    let (other, other_org) = app.owned_org("Months B").await;
    let now = Utc::now();
    let mut mine = Vec::new();
    for (i, days) in [0i64, 35, 70, 400].into_iter().enumerate() {
        for (who, o) in [(&owner, org), (&other, other_org)] {
            let id: Uuid = scalar(
                &app.owner,
                "INSERT INTO audit_log (user_id, organization_id, action, method, created_at, retention_class)
                 VALUES ($1, $2, 'knowledge.read', 'GET', $3, 'read') RETURNING id",
                &[&who.id, &o, &(now - chrono::TimeDelta::days(days) - chrono::TimeDelta::seconds(i as i64))],
            )
            .await;
            if o == org {
                mine.push(id);
            }
        }
    }
    app.runtime_client().await.simple_query("SELECT audit_partitions_ensure(3)").await.expect("maintenance");
    let months: i64 =
        scalar(&app.owner, "SELECT count(DISTINCT tableoid) FROM audit_log WHERE id = ANY($1)", &[&mine]).await;
    assert_eq!(months, 4, "four months, four partitions");
    // Follow the cursor two rows at a time: every row of this org's, newest first, none of the other org's.
    let mut seen = Vec::new();
    let mut path = format!("/api/organizations/{org}/audit?action=knowledge.read&limit=2");
    loop {
        let (s, body) = app.get(&owner, &path).await;
        assert_eq!(s, 200, "{body}");
        for entry in body["data"].as_array().expect("data") {
            assert_eq!(entry["organizationId"], json!(org));
            seen.push(entry["id"].as_str().and_then(|s| s.parse::<Uuid>().ok()).expect("id"));
        }
        match body["nextCursor"].as_str() {
            Some(cursor) => {
                path = format!("/api/organizations/{org}/audit?action=knowledge.read&limit=2&cursor={cursor}")
            }
            None => break,
        }
    }
    assert_eq!(seen, mine);
    // A window selects the months it covers, `to` exclusive.
    let from = (now - chrono::TimeDelta::days(80)).to_rfc3339();
    let to = (now - chrono::TimeDelta::days(20)).to_rfc3339();
    let request = app
        .http
        .get(app.url(&format!("/api/organizations/{org}/audit")))
        .query(&[("action", "knowledge.read"), ("from", from.as_str()), ("to", to.as_str())])
        .bearer_auth(&owner.token);
    let (s, body): (u16, Value) = app.send(request).await;
    assert_eq!(s, 200, "{body}");
    let ids: Vec<&str> = body["data"].as_array().expect("data").iter().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(ids, [mine[1].to_string(), mine[2].to_string()]);
    // The other org's owner sees the other org's rows only.
    let (s, body) = app.get(&other, &format!("/api/organizations/{org}/audit")).await;
    assert!(s == 403 || s == 404, "{s} {body}");
}
