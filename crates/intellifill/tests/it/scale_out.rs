//! Three server processes behind a round-robin client, sharing Redis and Postgres through PgBouncer in
//! transaction mode: what one instance learns, every instance knows.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{OWNER_PASSWORD, RUNTIME_PASSWORD, TestApp, column, email};
use intellifill::testing::schema::RUNTIME_ROLE;

/// One `intellifill serve` process.
struct Instance {
    child: Child,
    base: String,
}

impl Instance {
    fn spawn(env: &[(&str, String)]) -> Instance {
        let port = testkit::free_port().expect("port");
        let spool = std::env::temp_dir().join(format!("intellifill-spool-{}", uuid::Uuid::new_v4().simple()));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_intellifill"));
        cmd.arg("serve")
            .env_clear()
            .env("BIND_ADDR", format!("127.0.0.1:{port}"))
            .env("APP_ENV", "test")
            .env("AUDIT_SPOOL_DIR", &spool)
            .env("AUDIT_FLUSH_INTERVAL_MS", "100")
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        Instance { child: cmd.spawn().expect("spawn intellifill serve"), base: format!("http://127.0.0.1:{port}") }
    }

    async fn wait_ready(&self, http: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = http.get(format!("{}/health", self.base)).send().await
                && r.status().is_success()
            {
                return;
            }
            assert!(Instant::now() < deadline, "instance at {} did not come up", self.base);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, then wait for the graceful exit.
    fn terminate(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(status.success(), "instance exited with {status}");
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("instance did not stop after SIGTERM");
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn get(http: &reqwest::Client, base: &str, token: &str, path: &str) -> (u16, Value, String) {
    let r = http.get(format!("{base}{path}")).bearer_auth(token).send().await.expect("request");
    let status = r.status().as_u16();
    let id = r.headers()["x-request-id"].to_str().expect("id").to_owned();
    let body = r.json::<Value>().await.unwrap_or(Value::Null);
    (status, body, id)
}

#[tokio::test]
async fn three_instances_share_revocations_limits_memberships_and_audit() {
    // The database and the auth service, reached by the instances over loopback; the DB through PgBouncer.
    let app = TestApp::spawn().await;
    let shared = testkit::Shared::get().await.expect("shared");
    let bouncer = testkit::PgBouncer::start(
        shared.pg_port(),
        &[(RUNTIME_ROLE, RUNTIME_PASSWORD), (intellifill::testing::schema::OWNER_ROLE, OWNER_PASSWORD)],
        4,
    )
    .await
    .expect("pgbouncer");
    let env = vec![
        ("DATABASE_URL", bouncer.url(RUNTIME_ROLE, RUNTIME_PASSWORD, &app.db)),
        // Debian's PgBouncer 1.18 cannot keep named statements across transactions.
        ("DATABASE_STATEMENTS", "unnamed".to_owned()),
        ("DB_POOL_MAX_SIZE", "4".to_owned()),
        ("SUPABASE_URL", app.emulator.base_url()),
        ("SUPABASE_ANON_KEY", app.emulator.anon_key().to_owned()),
        ("REDIS_URL", shared.redis_url()),
        ("REDIS_KEY_PREFIX", app.redis_prefix.clone()),
        ("REDIS_OP_TIMEOUT_MS", "1000".to_owned()),
        ("RATE_LIMIT_USER_PER_MINUTE", "9".to_owned()),
    ];
    let mut instances: Vec<Instance> = (0..3).map(|_| Instance::spawn(&env)).collect();
    let http = reqwest::Client::new();
    for i in &instances {
        i.wait_ready(&http).await;
    }
    let bases: Vec<String> = instances.iter().map(|i| i.base.clone()).collect();
    let mut request_ids = Vec::new();

    // A rate limit holds in total: 9 per minute for one user, whichever instance answers.
    let counted = app.user(&email("counted")).await;
    let mut ok = 0;
    for n in 0..12 {
        let (s, _, id) = get(&http, &bases[n % 3], &counted.token, "/api/me").await;
        request_ids.push(id);
        assert!(s == 200 || s == 429, "{s}");
        ok += usize::from(s == 200);
    }
    assert_eq!(ok, 9, "the limit holds across the three instances");

    // Logout on one instance: refused on the others within a second.
    let u = app.user(&email("u")).await;
    for base in &bases {
        let (s, _, id) = get(&http, base, &u.token, "/api/me").await;
        request_ids.push(id);
        assert_eq!(s, 200, "cached on every instance first");
    }
    let r = http.post(format!("{}/api/auth/logout", bases[0])).bearer_auth(&u.token).send().await.expect("logout");
    assert_eq!(r.status().as_u16(), 204);
    request_ids.push(r.headers()["x-request-id"].to_str().expect("id").to_owned());
    let logged_out = Instant::now();
    for base in &bases[1..] {
        loop {
            let (s, body, id) = get(&http, base, &u.token, "/api/me").await;
            request_ids.push(id);
            if s == 401 {
                assert_eq!(body["code"], "SESSION_REVOKED");
                break;
            }
            assert!(logged_out.elapsed() < Duration::from_secs(1), "{base} still accepts the token: {body}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // A removed member loses access everywhere at once.
    let (owner, org) = app.owned_org("Scaled").await;
    let member = app.member(org, "MEMBER").await;
    let path = format!("/api/organizations/{org}/knowledge");
    for base in &bases {
        let (s, _, id) = get(&http, base, &member.token, &path).await;
        request_ids.push(id);
        assert_eq!(s, 200);
    }
    let r = http
        .delete(format!("{}/api/organizations/{org}/members/{}", bases[1], member.id))
        .bearer_auth(&owner.token)
        .send()
        .await
        .expect("remove");
    assert_eq!(r.status().as_u16(), 204);
    request_ids.push(r.headers()["x-request-id"].to_str().expect("id").to_owned());
    for base in &bases {
        let (s, body, id) = get(&http, base, &member.token, &path).await;
        request_ids.push(id);
        assert_eq!((s, body["code"].as_str()), (403, Some("NOT_ORG_MEMBER")), "{base}");
    }

    // Each instance's breaker is visible in its own detailed health.
    app.owner.execute("UPDATE users SET role = 'ADMIN' WHERE id = $1", &[&owner.id]).await.expect("promote");
    for base in &bases {
        let (s, body, _) = get(&http, base, &owner.token, "/health/detailed").await;
        assert_eq!(s, 200, "{body}");
        assert_eq!(body["supabase"]["breaker"]["state"], "closed");
        assert_eq!(body["redis"]["connected"], true);
        assert_eq!(body["rateLimiter"]["store"], "redis");
    }

    // Audit rows from every instance are complete once they have stopped (SIGTERM flushes the queues).
    for i in &mut instances {
        i.terminate();
    }
    let stored: Vec<String> =
        column(&app.owner, "SELECT request_id FROM audit_log WHERE request_id = ANY($1)", &[&request_ids]).await;
    let mut missing: Vec<&String> = request_ids.iter().filter(|id| !stored.contains(id)).collect();
    missing.dedup();
    assert!(missing.is_empty(), "audit rows missing for {missing:?}");
    assert_eq!(stored.len(), request_ids.len(), "each request stored exactly once");
    bouncer.stop().await.expect("stop pgbouncer");
}
