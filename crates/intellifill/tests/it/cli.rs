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
    let db = shared.create_database(None, Some(intellifill::testing::schema::OWNER_ROLE)).await.expect("empty db");
    let url = shared.pg_url(intellifill::testing::schema::OWNER_ROLE, Some(crate::helpers::OWNER_PASSWORD), &db);
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
    let latest = intellifill::testing::schema::latest_version();
    let expected = format!(
        "schema at version {latest} ({} migration(s) applied now)",
        intellifill::testing::schema::MIGRATIONS.len()
    );
    assert!(String::from_utf8_lossy(&first.stdout).contains(&expected));
    let second = run();
    assert!(second.status.success());
    assert!(String::from_utf8_lossy(&second.stdout).contains("(0 migration(s) applied now)"));
}

/// `intellifill dev` with `args`, on free ports, in a new data directory (returned); stdout piped.
fn spawn_dev(args: &[&str], stderr: std::process::Stdio) -> (std::path::PathBuf, tokio::process::Child) {
    let dir = std::env::temp_dir().join(format!("intellifill-dev-{}", uuid::Uuid::new_v4().simple()));
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_intellifill"))
        .args(["dev", "--port", "0", "--auth-port", "0", "--db-port", "0", "--redis-port", "0"])
        .args(args)
        .arg("--data-dir")
        .arg(&dir)
        .stdout(std::process::Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .expect("spawn dev");
    (dir, child)
}

/// The main job, as a newcomer runs it: `intellifill dev` starts everything, prints working curl lines, and
/// Ctrl-C stops everything cleanly.
#[tokio::test]
async fn dev_mode_serves_the_demo_and_stops_cleanly_on_ctrl_c() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let (dir, mut child) = spawn_dev(&[], std::process::Stdio::null());
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
    // The demo page at the root, with the vendored supabase-js and its configuration.
    let base = me_url.trim_end_matches("/api/me");
    let page = http.get(format!("{base}/")).send().await.expect("demo page");
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"].to_str().expect("ascii").starts_with("text/html"));
    assert!(page.headers()["content-security-policy"].to_str().expect("ascii").contains("script-src 'self'"));
    assert!(page.text().await.expect("html").contains("IntelliFill dev demo"));
    let js = http.get(format!("{base}/supabase.js")).send().await.expect("supabase.js").text().await.expect("js");
    assert!(js.starts_with("var supabase="), "the UMD build");
    let config: serde_json::Value =
        http.get(format!("{base}/dev-config.json")).send().await.expect("config").json().await.expect("json");
    assert_eq!(config["api"], base);
    assert_eq!(config["demoUsers"][0], "alice@acme.test");

    let pid = child.id().expect("pid").to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().expect("kill").success());
    let status =
        tokio::time::timeout(std::time::Duration::from_secs(30), child.wait()).await.expect("exits").expect("wait");
    assert!(status.success(), "dev exited with {status}");
    let leftover_pid = walk(&dir).into_iter().any(|p| p.ends_with("postmaster.pid"));
    assert!(!leftover_pid, "Postgres was not stopped");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `intellifill dev --env`: stdout is nothing but `KEY="value"` lines, and they are enough for a frontend to
/// sign in at the auth service and call the API.
#[tokio::test]
async fn dev_env_prints_only_the_variables_a_frontend_needs() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let (dir, mut child) =
        spawn_dev(&["--env", "--cors-origin", "http://localhost:4321"], std::process::Stdio::piped());
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let logs = tokio::spawn(async move {
        let mut n = 0;
        while let Ok(Some(_)) = stderr.next_line().await {
            n += 1;
        }
        n
    });
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut vars = std::collections::HashMap::new();
    let collect = async {
        while let Some(line) = lines.next_line().await.expect("read") {
            let (key, value) = line.split_once('=').unwrap_or_else(|| panic!("not KEY=value: {line:?}"));
            assert!(key.chars().all(|c| c.is_ascii_uppercase() || c == '_'), "{line:?}");
            assert!(value.len() >= 2 && value.starts_with('"') && value.ends_with('"'), "{line:?}");
            vars.insert(key.to_owned(), value.trim_matches('"').to_owned());
            if key == "DEMO_ORG_ACME_ID" {
                break;
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(90), collect).await.expect("dev mode became ready");
    let var = |k: &str| vars.get(k).unwrap_or_else(|| panic!("{k} missing: {vars:?}")).clone();
    for k in ["SUPABASE_SERVICE_ROLE_KEY", "DATABASE_URL", "MAILBOX_URL", "DEMO_PAGE_URL"] {
        assert!(!var(k).is_empty(), "{k}");
    }
    assert_eq!(var("NEXT_PUBLIC_SUPABASE_URL"), var("SUPABASE_URL"));
    assert_eq!(var("VITE_SUPABASE_ANON_KEY"), var("SUPABASE_ANON_KEY"));
    assert_eq!(var("MAILBOX_URL"), format!("{}/__emulator/mailbox", var("SUPABASE_URL")));
    let http = reqwest::Client::new();
    // Sign in the way supabase-js does, with the printed URL, key and demo user.
    let email = var("DEMO_USERS").split(',').next().expect("a demo user").to_owned();
    let session: serde_json::Value = http
        .post(format!("{}/auth/v1/token?grant_type=password", var("SUPABASE_URL")))
        .header("apikey", var("SUPABASE_ANON_KEY"))
        .json(&serde_json::json!({ "email": email, "password": var("DEMO_PASSWORD") }))
        .send()
        .await
        .expect("sign in")
        .json()
        .await
        .expect("session");
    let token = session["access_token"].as_str().unwrap_or_else(|| panic!("{session}"));
    let api = var("INTELLIFILL_API_URL");
    let me = http.get(format!("{api}/api/me")).bearer_auth(token).header("origin", "http://localhost:4321");
    let me = me.send().await.expect("me");
    assert_eq!(me.status(), 200);
    assert_eq!(
        me.headers().get("access-control-allow-origin").expect("CORS for --cors-origin"),
        "http://localhost:4321"
    );
    let me: serde_json::Value = me.json().await.expect("json");
    assert_eq!(me["email"], email.as_str());
    let acme = format!("{api}/api/organizations/{}/knowledge", var("DEMO_ORG_ACME_ID"));
    assert_eq!(http.get(&acme).bearer_auth(token).send().await.expect("knowledge").status(), 200);
    // Both key forms, under the Supabase CLI's names as well: the legacy JWT anon key signs in just the same.
    assert!(var("PUBLISHABLE_KEY").starts_with("sb_publishable_") && var("SECRET_KEY").starts_with("sb_secret_"));
    assert_eq!(var("PUBLISHABLE_KEY"), var("SUPABASE_ANON_KEY"));
    assert_eq!(var("SECRET_KEY"), var("SUPABASE_SERVICE_ROLE_KEY"));
    assert_eq!(var("NEXT_PUBLIC_SUPABASE_PUBLISHABLE_KEY"), var("PUBLISHABLE_KEY"));
    assert!(var("ANON_KEY").starts_with("eyJ") && var("SERVICE_ROLE_KEY").starts_with("eyJ"));
    let legacy = http
        .post(format!("{}/auth/v1/token?grant_type=password", var("SUPABASE_URL")))
        .header("apikey", var("ANON_KEY"))
        .json(&serde_json::json!({ "email": email, "password": var("DEMO_PASSWORD") }))
        .send()
        .await
        .expect("sign in with the legacy key");
    assert_eq!(legacy.status(), 200);
    // Sign-up as dev mode runs it: no session until the emailed link is followed; the email is in the mailbox.
    let newcomer = format!("new-{}@example.test", uuid::Uuid::new_v4().simple());
    let signup: serde_json::Value = http
        .post(format!("{}/auth/v1/signup", var("SUPABASE_URL")))
        .header("apikey", var("PUBLISHABLE_KEY"))
        .json(&serde_json::json!({ "email": newcomer, "password": "a long enough password" }))
        .send()
        .await
        .expect("sign up")
        .json()
        .await
        .expect("json");
    assert!(signup.get("access_token").is_none() && signup["confirmation_sent_at"].is_string(), "{signup}");
    let mailbox: serde_json::Value = http
        .get(var("MAILBOX_URL"))
        .query(&[("to", &newcomer)])
        .send()
        .await
        .expect("mailbox")
        .json()
        .await
        .expect("json");
    assert!(mailbox["messages"][0]["link"].as_str().is_some_and(|l| l.contains("/verify")), "{mailbox}");
    // The database URL works too.
    let (db, connection) = tokio_postgres::connect(&var("DATABASE_URL"), tokio_postgres::NoTls).await.expect("db");
    tokio::spawn(connection);
    db.simple_query("SELECT 1").await.expect("query");

    let pid = child.id().expect("pid").to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().expect("kill").success());
    let status =
        tokio::time::timeout(std::time::Duration::from_secs(30), child.wait()).await.expect("exits").expect("wait");
    assert!(status.success(), "dev exited with {status}");
    assert!(lines.next_line().await.expect("read").is_none(), "nothing else on stdout");
    assert!(logs.await.expect("logs") > 0, "the progress lines went to stderr");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A port already taken stops `dev` before anything starts, naming the flag that moves it.
#[test]
fn dev_names_the_flag_of_a_taken_port() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    let dir = tempfile::tempdir().expect("dir");
    for (flag, env) in [("--auth-port", "DEV_AUTH_PORT"), ("--db-port", "DEV_DB_PORT"), ("--port", "DEV_PORT")] {
        let mut args = vec!["dev", "--port", "0", "--auth-port", "0", "--db-port", "0", "--redis-port", "0"];
        let at = args.iter().position(|a| *a == flag).expect("flag") + 1;
        args[at] = &port;
        let output = Command::new(env!("CARGO_BIN_EXE_intellifill"))
            .args(&args)
            .arg("--data-dir")
            .arg(dir.path().join("dev"))
            .output()
            .expect("run dev");
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(&format!("port {port}")) && stderr.contains(flag) && stderr.contains(env), "{stderr}");
        assert!(!dir.path().join("dev").exists(), "nothing was started");
    }
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

/// `intellifill serve` as a child process, against a fresh database and the given emulator, with JSON logs
/// on stderr (every line kept); `env` adds or overrides variables.
struct Served {
    child: tokio::process::Child,
    /// `http://<addr>` once the server logged `listening`; `None` when it exited first.
    base: Option<String>,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    reader: tokio::task::JoinHandle<()>,
    _spool: tempfile::TempDir,
}

impl Served {
    async fn start(emulator: &gotrue_emulator::Emulator, env: &[(&str, &str)]) -> Served {
        use intellifill::testing::schema::RUNTIME_ROLE;
        use tokio::io::{AsyncBufReadExt, BufReader};

        let db = crate::helpers::fresh_database().await;
        let shared = testkit::Shared::get().await.expect("shared");
        let spool = tempfile::tempdir().expect("spool dir");
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_intellifill"));
        command
            .arg("serve")
            .env_clear()
            .env("APP_ENV", "test")
            .env("BIND_ADDR", "127.0.0.1:0")
            .env("DATABASE_URL", shared.pg_url(RUNTIME_ROLE, Some(crate::helpers::RUNTIME_PASSWORD), &db))
            .env("SUPABASE_URL", emulator.base_url())
            .env("SUPABASE_ANON_KEY", emulator.anon_key())
            .env("AUTH_HTTP_TIMEOUT_MS", "2000")
            .env("AUDIT_SPOOL_DIR", spool.path())
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("spawn serve");
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = tokio::sync::oneshot::channel::<String>();
        let kept = lines.clone();
        let reader = tokio::spawn(async move {
            let mut addr_tx = Some(addr_tx);
            while let Ok(Some(line)) = stderr.next_line().await {
                let parsed: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                if parsed["message"] == "listening"
                    && let (Some(tx), Some(addr)) = (addr_tx.take(), parsed["addr"].as_str())
                {
                    let _ = tx.send(addr.to_owned());
                }
                kept.lock().expect("lines").push(line);
            }
        });
        let base = tokio::time::timeout(std::time::Duration::from_secs(60), addr_rx)
            .await
            .expect("serve neither listened nor exited within 60 s")
            .ok()
            .map(|addr| format!("http://{addr}"));
        Served { child, base, lines, reader, _spool: spool }
    }

    /// Stop with SIGINT (graceful), wait for the exit; returns the exit status and every stderr line.
    async fn stop(self) -> (std::process::ExitStatus, Vec<String>) {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill").args(["-INT", &pid.to_string()]).status();
        }
        self.wait().await
    }

    /// Wait for the process to end by itself.
    async fn wait(mut self) -> (std::process::ExitStatus, Vec<String>) {
        let status = tokio::time::timeout(std::time::Duration::from_secs(30), self.child.wait())
            .await
            .expect("serve exits")
            .expect("wait");
        let _ = self.reader.await;
        let lines = self.lines.lock().expect("lines").clone();
        (status, lines)
    }
}

/// The JSON log lines at `level`.
fn at_level(lines: &[String], level: &str) -> Vec<serde_json::Value> {
    lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["level"] == level)
        .collect()
}

/// A wrong `SUPABASE_ANON_KEY`, as an operator sees it outside production (`AUTH_STARTUP_KEY_CHECK=warn`): the
/// server starts and says so, every valid user gets 503 AUTH_SERVICE_MISCONFIGURED, and the log has one ERROR
/// line naming the variable, however many requests hit it.
#[tokio::test]
async fn serve_with_a_refused_api_key_says_so_once_and_answers_503() {
    let emulator =
        gotrue_emulator::Emulator::start(Default::default(), ([127, 0, 0, 1], 0).into()).await.expect("emulator");
    emulator.create_user("ada@example.com", "password123").expect("user");
    let token = emulator.sign_in("ada@example.com", "password123").expect("sign in").access_token;
    let served = Served::start(&emulator, &[("SUPABASE_ANON_KEY", "sb_publishable_not_this_projects")]).await;
    let base = served.base.clone().expect("serve started");
    let http = reqwest::Client::new();
    for _ in 0..5 {
        let response = http.get(format!("{base}/api/me")).bearer_auth(&token).send().await.expect("request");
        assert_eq!(response.status().as_u16(), 503);
        let body: serde_json::Value = response.json().await.expect("json");
        assert_eq!(body["code"], "AUTH_SERVICE_MISCONFIGURED", "{body}");
    }
    let ready = http.get(format!("{base}/health/ready")).send().await.expect("ready");
    assert_eq!(ready.status().as_u16(), 503);
    let metrics = http.get(format!("{base}/metrics")).send().await.expect("metrics").text().await.expect("text");
    let refused = metrics.lines().find(|l| l.starts_with("auth_upstream_key_rejected_total ")).expect("counter");
    assert_eq!(refused, "auth_upstream_key_rejected_total 7", "the start-up check, five requests, one readiness check");

    let (status, lines) = served.stop().await;
    assert!(status.success(), "{status}");
    assert_eq!(emulator.stats().settings, 1, "the key was checked at start");
    assert!(
        at_level(&lines, "WARN").iter().any(|l| l["message"].as_str().is_some_and(|m| m.contains("starting although"))),
        "{lines:#?}"
    );
    let errors = at_level(&lines, "ERROR");
    assert_eq!(errors.len(), 1, "one ERROR line per minute, not one per request: {errors:#?}");
    assert!(errors[0]["message"].as_str().is_some_and(|m| m.contains("SUPABASE_ANON_KEY")), "{}", errors[0]);
    assert_eq!(errors[0]["gateway_message"], "Invalid API key");
    let per_request =
        at_level(&lines, "WARN").into_iter().filter(|l| l["code"] == "AUTH_SERVICE_MISCONFIGURED").count();
    assert_eq!(per_request, 5, "each refused request is a WARN line");
    assert!(!lines.iter().any(|l| l.contains("sb_publishable_not_this_projects")), "the key itself is never logged");
}

/// `APP_ENV=production`: a key the auth service refuses stops `serve` before it listens; the right key, or an
/// auth service that cannot be reached at start (a warning), does not.
#[tokio::test]
async fn production_refuses_to_start_with_a_refused_api_key_but_not_with_an_unreachable_auth_service() {
    let emulator =
        gotrue_emulator::Emulator::start(Default::default(), ([127, 0, 0, 1], 0).into()).await.expect("emulator");
    let production = [
        ("APP_ENV", "production"),
        ("METRICS_BEARER_TOKEN", "scrape-token"),
        ("AUDIT_SIGNING_KEY", "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc="),
    ];

    let wrong = [&production[..], &[("SUPABASE_ANON_KEY", "sb_publishable_not_this_projects")]].concat();
    let served = Served::start(&emulator, &wrong).await;
    assert!(served.base.is_none(), "serve listened with a refused key");
    let (status, lines) = served.wait().await;
    assert!(!status.success());
    let said = lines.join("\n");
    assert!(said.contains("refuses SUPABASE_ANON_KEY") && said.contains("AUTH_STARTUP_KEY_CHECK"), "{said}");
    assert!(!said.contains("sb_publishable_not_this_projects"), "the key itself is never printed");
    assert_eq!(emulator.stats().settings, 1);

    let served = Served::start(&emulator, &production).await;
    assert!(served.base.is_some(), "the right key starts");
    let (_, lines) = served.stop().await;
    assert!(at_level(&lines, "INFO").iter().any(|l| l["message"] == "the auth service accepts SUPABASE_ANON_KEY"));

    let dead = format!("http://127.0.0.1:{}", testkit::free_port().expect("port"));
    let unreachable = [&production[..], &[("SUPABASE_URL", dead.as_str())]].concat();
    let served = Served::start(&emulator, &unreachable).await;
    assert!(served.base.is_some(), "an unreachable auth service at start is no reason not to start");
    let (_, lines) = served.stop().await;
    let warned = at_level(&lines, "WARN");
    assert!(warned.iter().any(|l| l["message"].as_str().is_some_and(|m| m.contains("cannot be reached at start"))));
    assert!(at_level(&lines, "ERROR").is_empty(), "{lines:#?}");
}
