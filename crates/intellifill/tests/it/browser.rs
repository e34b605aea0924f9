//! The dev demo page in a real browser: headless Chromium (the system's `chromium`) driven by
//! `tests/browser/demo.spec.mjs` (playwright-core, installed by `scripts/setup`). The page is served from an
//! origin of its own, so every API call the browser makes is a CORS call the server must allow; the auth
//! emulator wants sign-ups confirmed by email, as dev mode runs it. Screenshots of each step go to
//! `<target dir>/browser-screenshots/` (`$CARGO_TARGET_DIR` when set, else the workspace's `target/`).
//!
//! Without node, playwright-core or Chromium the test fails when `CI=true` and otherwise passes after saying
//! on stderr what is missing and how to install it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gotrue_emulator::{Emulator, EmulatorConfig};

use crate::helpers::*;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("workspace root")
}

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace().join("target"));
    target.join("browser-screenshots")
}

/// Node, the spec's npm package and Chromium, or why the test cannot run.
fn tools() -> Result<(PathBuf, PathBuf), String> {
    let chromium = PathBuf::from(std::env::var("CHROMIUM_BIN").unwrap_or_else(|_| "/usr/bin/chromium".into()));
    if !chromium.exists() {
        return Err(format!(
            "no Chromium at {} (install it: scripts/setup as root, or apt-get install chromium; \
                            CHROMIUM_BIN names another)",
            chromium.display()
        ));
    }
    let node = std::process::Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        return Err("no node on PATH (install Node.js 20 or later)".into());
    }
    let dir = workspace().join("tests/browser");
    if !dir.join("node_modules/playwright-core/package.json").exists() {
        return Err(format!("playwright-core is not installed (run scripts/setup, or npm ci in {})", dir.display()));
    }
    Ok((dir.join("demo.spec.mjs"), chromium))
}

#[tokio::test]
async fn the_demo_page_works_in_headless_chromium_from_another_origin() {
    let (spec, chromium) = match tools() {
        Ok(found) => found,
        Err(why) if std::env::var("CI").is_ok_and(|v| v == "true") => panic!("the browser test cannot run: {why}"),
        Err(why) => {
            eprintln!("SKIPPED the browser test: {why}");
            return;
        }
    };

    // The page's own origin, known before the server starts so its CORS list can name it.
    let page_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("page listener");
    let page_origin = format!("http://{}", page_listener.local_addr().expect("addr"));

    let mut cfg = EmulatorConfig::default();
    cfg.signup.autoconfirm = false;
    cfg.mail.max_frequency = Duration::ZERO;
    let emulator = Emulator::start(cfg, SocketAddr::from(([127, 0, 0, 1], 0))).await.expect("emulator");
    let origins = format!("http://localhost:5173,{page_origin}");
    let app = TestApp::spawn_on(fresh_database().await, emulator, |a| a.cors_allowed_origins = Some(origins)).await;
    let (acme_owner, acme) = app.owned_org("Acme Corp").await;
    app.knowledge(&acme_owner, acme, "Acme only", "Nobody outside Acme reads this.").await;

    let demo = intellifill::testing::demo_routes(intellifill::testing::DemoConfig {
        api: app.base.clone(),
        auth: app.emulator.base_url(),
        anon_key: app.emulator.anon_key().to_owned(),
        acme_id: acme,
        demo_users: vec![acme_owner.email.clone()],
    });
    let page_server = tokio::spawn(async move { axum::serve(page_listener, demo).await });

    let shots = screenshot_dir();
    let _ = std::fs::remove_dir_all(&shots);
    let new_user = email("browser");
    let started = Instant::now();
    let run = tokio::process::Command::new("node")
        .arg(&spec)
        .env("DEMO_URL", format!("{page_origin}/"))
        .env("DEMO_EMAIL", &new_user)
        .env("DEMO_PASSWORD", "correct horse battery")
        .env("SCREENSHOT_DIR", &shots)
        .env("CHROMIUM_BIN", &chromium)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("the browser run did not finish in 180 s")
        .expect("run node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("browser run took {:?}; screenshots in {}\n{stdout}{stderr}", started.elapsed(), shots.display());
    assert!(output.status.success(), "the browser run failed:\n{stdout}\n{stderr}");
    page_server.abort();

    // What the browser did, seen from the other side.
    for step in ["email-confirmed", "signed-in", "knowledge-searched", "foreign-organization-refused", "signed-out"] {
        assert!(stdout.lines().any(|l| l.starts_with("ok ") && l.ends_with(step)), "step {step} not reported");
    }
    for call in [format!("GET {}/api/me", app.base), format!("POST {}/api/organizations", app.base)] {
        assert!(stdout.contains(&call), "{call} was not a cross-origin call of the page: {stdout}");
    }
    let pngs = std::fs::read_dir(&shots).expect("screenshot dir").filter(|e| e.is_ok()).count();
    assert!(pngs >= 10, "{pngs} screenshots in {}", shots.display());
    let confirmation = app.emulator.mailbox_for(&new_user);
    assert!(!confirmation.is_empty(), "no confirmation email was sent");
    // Provisioned on its first API call, with the confirmed address.
    let id: uuid::Uuid = scalar(&app.owner, "SELECT id FROM users WHERE email = $1", &[&new_user]).await;
    let user = app.emulator.user(id).expect("the signed-up user");
    assert!(user.email_confirmed_at.is_some(), "the email was not confirmed");
    let (title, org_name): (String, String) = {
        let row = app
            .owner
            .query_one(
                "SELECT k.title, o.name FROM knowledge_sources k JOIN organizations o ON o.id = k.organization_id
                  WHERE k.created_by = $1",
                &[&user.id],
            )
            .await
            .expect("the knowledge the browser created");
        (row.get(0), row.get(1))
    };
    assert_eq!((title.as_str(), org_name.as_str()), ("Shipping policy", "Browser Test Co"));
}
