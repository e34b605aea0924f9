//! Tamper evidence through the real server: the sealer seals the rows it wrote, `audit verify` passes a clean
//! trail and names exactly what a database superuser changed; an export verifies offline.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use intellifill::ServeArgs;
use uuid::Uuid;

use crate::helpers::{TestApp, TestUser, scalar};

/// The tests' signing key (a base64 seed) and its public half in a PEM file.
pub struct Keys {
    pub seed: String,
    pub public_pem: PathBuf,
    _dir: tempfile::TempDir,
}

impl Keys {
    pub fn new(n: u8) -> Keys {
        use base64::Engine as _;
        let seed = base64::engine::general_purpose::STANDARD.encode([n; 32]);
        let key = intellifill::testing::parse_signing_key(&seed).expect("seed");
        let dir = tempfile::tempdir().expect("dir");
        let public_pem = dir.path().join("audit-public.pem");
        std::fs::write(&public_pem, intellifill::testing::public_key_pem(&key.verifying_key())).expect("write pem");
        Keys { seed, public_pem, _dir: dir }
    }

    /// Server settings: this key, a seal every second, quick audit batches.
    pub fn apply(&self, args: &mut ServeArgs) {
        args.audit_signing_key = Some(self.seed.clone());
        args.audit_seal_interval_secs = Some("1".into());
        args.audit_flush_interval_ms = Some("100".into());
    }
}

/// Wait until every audit row is sealed (the writer flushed, the sealer ran); returns the digest count.
pub async fn wait_sealed(app: &TestApp) -> i64 {
    app.state.audit.flush().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let unsealed: i64 = scalar(
            &app.owner,
            "SELECT count(*) FROM audit_log WHERE txid >= coalesce((SELECT max(to_xid) FROM audit_digests), 0)::text::xid8",
            &[],
        )
        .await;
        if unsealed == 0 {
            return scalar(&app.owner, "SELECT count(*) FROM audit_digests", &[]).await;
        }
        assert!(tokio::time::Instant::now() < deadline, "{unsealed} audit row(s) still unsealed after 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `intellifill audit <args>` as the database superuser; (exit code, stdout lines).
pub fn audit_cli(app: &TestApp, args: &[&str]) -> (i32, Vec<String>) {
    let shared = futures::executor::block_on(testkit::Shared::get()).expect("shared");
    audit_cli_at(&shared.pg_superuser_url(&app.db), args)
}

/// `intellifill audit <args>` against the database at `url`; (exit code, stdout lines).
pub fn audit_cli_at(url: &str, args: &[&str]) -> (i32, Vec<String>) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_intellifill"))
        .arg("audit")
        .args(args)
        .env_clear()
        .env("DATABASE_MIGRATION_URL", url)
        .output()
        .expect("run audit");
    let stdout = String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).collect::<Vec<_>>();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let code = output.status.code().expect("exit code");
    assert!(code == 0 || code == 1, "audit {args:?} could not run ({code}): {stderr}\n{stdout:?}");
    (code, stdout)
}

pub fn verify(app: &TestApp, keys: &Keys) -> (i32, Vec<String>) {
    audit_cli(app, &["verify", "--public-key", keys.public_pem.to_str().expect("path")])
}

/// Assert a clean verification.
pub fn assert_verifies(app: &TestApp, keys: &Keys) {
    let (code, lines) = verify(app, keys);
    assert_eq!(code, 0, "the trail verifies: {lines:#?}");
    assert!(lines.last().is_some_and(|l| l.contains("0 problem(s)")), "{lines:#?}");
}

/// The findings of a run as (kind, subject): `("MODIFIED", row id)`, `("DIGEST-MISSING", seq)`.
fn findings(lines: &[String]) -> BTreeSet<(String, String)> {
    lines
        .iter()
        .filter(|l| !l.starts_with("summary:") && !l.starts_with("export of"))
        .map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            (words[0].to_owned(), words.get(2).copied().unwrap_or("").trim_end_matches(':').to_owned())
        })
        .collect()
}

/// A few writes and reads through the API.
async fn traffic(app: &TestApp, user: &TestUser, org: Uuid, n: usize) {
    for i in 0..n {
        app.knowledge(user, org, &format!("note {i}"), "content").await;
        let (s, _) = app.get(user, &format!("/api/organizations/{org}/knowledge")).await;
        assert_eq!(s, 200);
    }
}

/// The audit rows with the digest that lists each: (id, created_at, seq).
async fn sealed_rows(su: &tokio_postgres::Client) -> Vec<(Uuid, chrono::DateTime<chrono::Utc>, i64)> {
    su.query(
        "SELECT a.id, a.created_at, d.seq FROM audit_log a JOIN audit_digests d
           ON a.txid::text::bigint >= d.from_xid AND a.txid::text::bigint < d.to_xid ORDER BY a.created_at",
        &[],
    )
    .await
    .expect("rows")
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

#[tokio::test]
async fn verify_names_exactly_what_a_superuser_changed() {
    let keys = Keys::new(7);
    let (mut app, owner, org) = TestApp::with_org_using(|a| keys.apply(a), "Sealed").await;
    let mut digests = 0;
    for _ in 0..4 {
        traffic(&app, &owner, org, 3).await;
        let now = wait_sealed(&app).await;
        assert!(now > digests, "each wave is sealed in a digest of its own");
        digests = now;
    }
    app.stop().await.expect("stop");
    assert_verifies(&app, &keys);

    let shared = testkit::Shared::get().await.expect("shared");
    let su = shared.superuser_client(&app.db).await.expect("superuser");
    let rows = sealed_rows(&su).await;
    let (missing, forged) = (2i64, 3i64);
    let usable: Vec<_> = rows.iter().filter(|r| r.2 != missing).collect();
    assert!(usable.len() >= 8, "enough rows outside the removed digest: {}", usable.len());
    let (modified, deleted, d, e, g, h) =
        (usable[0].0, usable[1].0, usable[2].0, usable[usable.len() - 1].0, usable[3].0, usable[usable.len() - 2].0);
    let forged_row = Uuid::new_v4();
    su.batch_execute(&format!(
        "UPDATE audit_log SET status = 599 WHERE id = '{modified}';
         DELETE FROM audit_log WHERE id = '{deleted}';
         INSERT INTO audit_log (id, organization_id, action, method, path, status, created_at)
             VALUES ('{forged_row}', '{org}', 'knowledge.delete', 'DELETE', '/api/organizations/{org}/knowledge/x', 204,
                     now() - interval '1 hour');
         UPDATE audit_log SET created_at = CASE id WHEN '{d}' THEN (SELECT created_at FROM audit_log WHERE id = '{e}')
                                                    ELSE (SELECT created_at FROM audit_log WHERE id = '{d}') END
          WHERE id IN ('{d}', '{e}');
         UPDATE audit_log SET id = '00000000-0000-0000-0000-000000000001' WHERE id = '{g}';
         UPDATE audit_log SET id = '{g}' WHERE id = '{h}';
         UPDATE audit_log SET id = '{h}' WHERE id = '00000000-0000-0000-0000-000000000001';
         DELETE FROM audit_digests WHERE seq = {missing};
         UPDATE audit_digests SET signature = (SELECT signature FROM audit_digests WHERE seq = 1) WHERE seq = {forged};"
    ))
    .await
    .expect("tamper");

    let (code, lines) = verify(&app, &keys);
    assert_eq!(code, 1, "{lines:#?}");
    let expected: BTreeSet<(String, String)> = [
        ("MODIFIED", modified.to_string()),
        ("DELETED", deleted.to_string()),
        ("INSERTED", forged_row.to_string()),
        ("REORDERED", d.to_string()),
        ("REORDERED", e.to_string()),
        ("REORDERED", g.to_string()),
        ("REORDERED", h.to_string()),
        ("DIGEST-MISSING", missing.to_string()),
        ("DIGEST-FORGED", forged.to_string()),
    ]
    .into_iter()
    .map(|(k, s)| (k.to_owned(), s))
    .collect();
    assert_eq!(findings(&lines), expected, "{lines:#?}");
    assert!(lines.last().is_some_and(|l| l.contains("9 problem(s)") && l.contains("does NOT verify")), "{lines:#?}");

    // Scoped to the organization and a time range, only the rows in it are read; the digests are still checked.
    let from = chrono::Utc::now() - chrono::TimeDelta::minutes(30);
    let (code, scoped) = audit_cli(
        &app,
        &[
            "verify",
            "--public-key",
            keys.public_pem.to_str().expect("path"),
            "--org",
            &org.to_string(),
            "--from",
            &from.to_rfc3339(),
        ],
    );
    assert_eq!(code, 1);
    let scoped = findings(&scoped);
    assert!(
        !scoped.contains(&("INSERTED".to_owned(), forged_row.to_string())),
        "the forged row is an hour old: {scoped:?}"
    );
    assert!(scoped.contains(&("DIGEST-FORGED".to_owned(), forged.to_string())), "{scoped:?}");
}

#[tokio::test]
async fn the_runtime_role_can_append_digests_but_never_change_or_remove_one() {
    let keys = Keys::new(8);
    let (app, owner, org) = TestApp::with_org_using(|a| keys.apply(a), "Append only").await;
    traffic(&app, &owner, org, 1).await;
    assert!(wait_sealed(&app).await >= 1);
    let runtime = intellifill::testing::schema::connect(&app.runtime_url).await.expect("runtime");
    for sql in ["UPDATE audit_digests SET key_id = 'x'", "DELETE FROM audit_digests", "TRUNCATE audit_digests"] {
        let e = runtime.simple_query(sql).await.expect_err(sql);
        assert_eq!(e.code(), Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE), "{sql}: {e}");
    }
    let e = runtime.simple_query("UPDATE audit_log SET txid = '1'").await.expect_err("rows are append-only");
    assert_eq!(e.code(), Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE));
    assert_verifies(&app, &keys);
}

#[tokio::test]
async fn an_export_verifies_offline_and_a_changed_or_missing_line_does_not() {
    let keys = Keys::new(9);
    let (mut app, owner, org) = TestApp::with_org_using(|a| keys.apply(a), "Exported").await;
    let (other_owner, other) = app.owned_org("Other").await;
    traffic(&app, &owner, org, 3).await;
    traffic(&app, &other_owner, other, 2).await;
    wait_sealed(&app).await;
    app.stop().await.expect("stop");
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("export.jsonl");
    let from = (chrono::Utc::now() - chrono::TimeDelta::hours(1)).to_rfc3339();
    let to = (chrono::Utc::now() + chrono::TimeDelta::hours(1)).to_rfc3339();
    let (code, _) = audit_cli(
        &app,
        &["export", "--org", &org.to_string(), "--from", &from, "--to", &to, "--out", file.to_str().expect("path")],
    );
    assert_eq!(code, 0);
    let text = std::fs::read_to_string(&file).expect("export");
    let rows: Vec<&str> = text.lines().filter(|l| l.contains(r#""type":"row""#)).collect();
    let in_db: i64 = scalar(&app.owner, "SELECT count(*) FROM audit_log WHERE organization_id = $1", &[&org]).await;
    assert_eq!(rows.len() as i64, in_db, "every row of the organization, and only those");
    assert!(!text.contains(&other.to_string()), "another organization's id never appears in the export");

    let check = |path: &std::path::Path| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_intellifill"))
            .args(["audit", "verify", "--file", path.to_str().expect("path"), "--public-key"])
            .arg(&keys.public_pem)
            .env_clear()
            .output()
            .expect("verify file");
        let lines: Vec<String> = String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).collect();
        (output.status.code().expect("code"), lines)
    };
    let (code, lines) = check(&file);
    assert_eq!(code, 0, "{lines:#?}");
    assert!(lines.last().is_some_and(|l| l.contains(&format!("{in_db} match their seal"))), "{lines:#?}");

    let victim: serde_json::Value = serde_json::from_str(rows[1]).expect("row line");
    let id = victim["row"]["id"].as_str().expect("id").to_owned();
    let changed = text.replace(rows[1], &rows[1].replace(r#""status":"#, r#""status":1"#));
    let changed_file = dir.path().join("changed.jsonl");
    std::fs::write(&changed_file, changed).expect("write");
    let (code, lines) = check(&changed_file);
    assert_eq!(code, 1);
    assert_eq!(findings(&lines), BTreeSet::from([("MODIFIED".to_owned(), id.clone())]), "{lines:#?}");

    let cut = text.replace(&format!("{}\n", rows[1]), "");
    let cut_file = dir.path().join("cut.jsonl");
    std::fs::write(&cut_file, cut).expect("write");
    let (code, lines) = check(&cut_file);
    assert_eq!(code, 1);
    let found = findings(&lines);
    assert!(found.contains(&("DELETED".to_owned(), id)), "{lines:#?}");
    assert!(found.iter().any(|(k, _)| k == "EXPORT-TRUNCATED:"), "the end line's count no longer matches: {lines:#?}");
}

#[tokio::test]
async fn a_truncated_month_is_deleted_rows_unless_the_retention_log_records_its_drop() {
    let keys = Keys::new(10);
    let (mut app, owner, org) = TestApp::with_org_using(|a| keys.apply(a), "Truncated").await;
    traffic(&app, &owner, org, 3).await;
    wait_sealed(&app).await;
    app.stop().await.expect("stop");
    assert_verifies(&app, &keys);

    let shared = testkit::Shared::get().await.expect("shared");
    let su = shared.superuser_client(&app.db).await.expect("superuser");
    let month: String = su
        .query_one("SELECT 'audit_log_read_' || to_char(now() AT TIME ZONE 'UTC', 'YYYYMM')", &[])
        .await
        .expect("partition name")
        .get(0);
    let gone: BTreeSet<(String, String)> = su
        .query(&format!("SELECT id FROM {month} WHERE txid < (SELECT max(to_xid) FROM audit_digests)::text::xid8"), &[])
        .await
        .expect("the month's rows")
        .iter()
        .map(|r| ("DELETED".to_owned(), r.get::<_, Uuid>(0).to_string()))
        .collect();
    assert!(gone.len() >= 3, "sealed reads of this month are there to lose: {gone:?}");
    su.batch_execute(&format!("TRUNCATE {month}")).await.expect("truncate");

    let (code, lines) = verify(&app, &keys);
    assert_eq!(code, 1, "{lines:#?}");
    assert_eq!(findings(&lines), gone, "every sealed row of the month, and nothing else: {lines:#?}");

    // The same rows removed by policy: a retention drop of the class covering the month is recorded.
    su.batch_execute(&format!(
        "INSERT INTO audit_retention_log (class, cutoff, rows, partitions)
         VALUES ('read', date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' + interval '1 month',
                 {}, ARRAY['{month}'])",
        gone.len()
    ))
    .await
    .expect("record the drop");
    let (code, lines) = verify(&app, &keys);
    assert_eq!(code, 0, "rows expired by retention are not problems: {lines:#?}");
    let summary = lines.last().expect("summary");
    let n = gone.len();
    assert!(summary.contains(&format!("{n} (read {n}) expired by retention")), "{summary}");
}
