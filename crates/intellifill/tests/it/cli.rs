//! The binary itself: configuration errors are reported all at once, without secrets.

use std::process::Command;

#[test]
fn serve_reports_every_bad_variable_and_no_secret() {
    let output = Command::new(env!("CARGO_BIN_EXE_intellifill"))
        .arg("serve")
        .env_clear()
        .env("DATABASE_URL", "postgres://app:hunter2@127.0.0.1:1/db?sslmode=bogus")
        .env("DB_POOL_MAX_SIZE", "-3")
        .env("AUTH_AUTO_PROVISION", "perhaps")
        .output()
        .expect("run binary");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    for var in ["DATABASE_URL", "DB_POOL_MAX_SIZE", "SUPABASE_URL", "SUPABASE_ANON_KEY", "AUTH_AUTO_PROVISION"] {
        assert!(stderr.contains(var), "{var} not reported: {stderr}");
    }
    assert!(!stderr.contains("hunter2"), "secret leaked: {stderr}");
}

#[test]
fn migrate_needs_its_url() {
    let output = Command::new(env!("CARGO_BIN_EXE_intellifill")).arg("migrate").env_clear().output().expect("run");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("DATABASE_MIGRATION_URL"));
}

#[tokio::test]
async fn migrate_applies_every_migration_exactly_once() {
    crate::helpers::fresh_database().await; // makes sure the roles exist
    let shared = testkit::Shared::get().await.expect("shared");
    let db = shared.create_database(None, Some(intellifill::db::provision::OWNER_ROLE)).await.expect("empty db");
    let url = shared.pg_url(intellifill::db::provision::OWNER_ROLE, Some(crate::helpers::OWNER_PASSWORD), &db);
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_intellifill"))
            .arg("migrate")
            .env_clear()
            .env("DATABASE_MIGRATION_URL", &url)
            .output()
            .expect("run migrate")
    };
    let first = run();
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let latest = intellifill::db::migrate::latest_version();
    let expected =
        format!("schema at version {latest} ({} migration(s) applied now)", intellifill::db::migrate::MIGRATIONS.len());
    assert!(String::from_utf8_lossy(&first.stdout).contains(&expected));
    let second = run();
    assert!(second.status.success());
    assert!(String::from_utf8_lossy(&second.stdout).contains("(0 migration(s) applied now)"));
}

/// The main job, as a newcomer runs it: `intellifill dev` starts everything, prints working curl lines, and
/// Ctrl-C stops everything cleanly.
#[tokio::test]
async fn dev_mode_serves_the_demo_and_stops_cleanly_on_ctrl_c() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let dir = std::env::temp_dir().join(format!("intellifill-dev-{}", uuid::Uuid::new_v4().simple()));
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_intellifill"))
        .args(["dev", "--port", "0", "--data-dir"])
        .arg(&dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn dev");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut curls = Vec::new();
    let collect = async {
        while let Some(line) = lines.next_line().await.expect("read") {
            if line.starts_with("curl ") {
                curls.push(line);
            }
            if curls.len() >= 6 {
                break;
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(90), collect).await.expect("dev mode became ready");
    // `curl -s <url> -H 'Authorization: Bearer <token>'`
    let parse = |line: &str| {
        let url = line.split_whitespace().nth(2).expect("url").trim_matches('\'').to_owned();
        let token = line.split("Bearer ").nth(1).map(|t| t.trim_end_matches('\'').to_owned());
        (url, token)
    };
    let http = reqwest::Client::new();
    let (me_url, alice) = parse(&curls[0]);
    let me: serde_json::Value =
        http.get(&me_url).bearer_auth(alice.expect("token")).send().await.expect("me").json().await.expect("json");
    assert_eq!(me["email"], "alice@acme.test");
    let (acme_url, _) = parse(&curls[1]);
    let (_, bob) = parse(&curls[4]);
    let response = http.get(&acme_url).bearer_auth(bob.expect("token")).send().await.expect("cross-tenant");
    assert_eq!(response.status().as_u16(), 403);

    let pid = child.id().expect("pid").to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().expect("kill").success());
    let status =
        tokio::time::timeout(std::time::Duration::from_secs(30), child.wait()).await.expect("exits").expect("wait");
    assert!(status.success(), "dev exited with {status}");
    let leftover_pid = walk(&dir).into_iter().any(|p| p.ends_with("postmaster.pid"));
    assert!(!leftover_pid, "Postgres was not stopped");
    let _ = std::fs::remove_dir_all(&dir);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
