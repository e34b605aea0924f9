//! `TestApp::spawn`: the real server on port 0, against the shared throwaway Postgres (a fresh database per
//! test, cloned from a migrated template) and its own GoTrue emulator.

use std::net::SocketAddr;

use gotrue_emulator::{Emulator, EmulatorConfig};
use intellifill::testing::schema as migrate;
use intellifill::testing::schema::{self as provision, OWNER_ROLE, RUNTIME_ROLE};
use intellifill::{AppState, Application};
use intellifill::{Config, ServeArgs};
use serde_json::Value;
use testkit::Shared;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_postgres::types::{FromSqlOwned, ToSql};
use uuid::Uuid;

/// A configuration tweak for [`TestApp::spawn_with`] and its kin: each named `ServeArgs` field set to the value
/// given, as `serve` would read it from the environment (`settings!(rate_limit_ip_per_minute = "2")`).
macro_rules! settings {
    ($($field:ident = $value:expr),+ $(,)?) => {
        move |args: &mut intellifill::ServeArgs| {
            $(args.$field = Some($value.into());)+
        }
    };
}

pub const OWNER_PASSWORD: &str = "owner-test-password";
pub const RUNTIME_PASSWORD: &str = "app-test-password";

pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub emulator: Emulator,
    /// Owner-role connection to this test's database (bypasses nothing: it has its own maintenance policy).
    pub owner: tokio_postgres::Client,
    /// The server's database URL (the runtime role; through PgBouncer in the suite's PgBouncer run).
    pub runtime_url: String,
    /// The runtime role straight to Postgres, for a test's own connection (see [`TestApp::runtime_client`]).
    pub runtime_direct_url: String,
    pub owner_url: String,
    /// This test's database (shared by peers).
    pub db: String,
    /// This test's Redis key prefix (shared by peers).
    pub redis_prefix: String,
    pub state: AppState,
    /// This instance's audit spool directory (removed with the TestApp unless the test chose its own).
    pub _spool: Option<tempfile::TempDir>,
    /// The PgBouncer in front of the database, in the PgBouncer run of the suite.
    pub _bouncer: Option<testkit::PgBouncer>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: Uuid,
    pub email: String,
    pub token: String,
}

fn template_name() -> String {
    format!("intellifill_tmpl_{}", migrate::fingerprint())
}

/// A fresh, migrated database on the shared cluster; returns its name.
pub async fn fresh_database() -> String {
    let shared = Shared::get().await.expect("shared servers");
    let template = template_name();
    shared
        .once(&template, || async {
            let su = shared.pg_superuser_url("postgres");
            provision::ensure_roles(&su, OWNER_PASSWORD, RUNTIME_PASSWORD).await?;
            provision::ensure_database(&su, &template).await?;
            let mut owner = migrate::connect(&shared.pg_url(OWNER_ROLE, Some(OWNER_PASSWORD), &template)).await?;
            migrate::run(&mut owner).await?;
            drop(owner);
            // CREATE DATABASE ... TEMPLATE needs the template to have no sessions left.
            let admin = shared.superuser_client("postgres").await?;
            admin
                .execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                    &[&template],
                )
                .await?;
            Ok(())
        })
        .await
        .expect("template database");
    let mut last = None;
    for _ in 0..50 {
        match shared.create_database(Some(&template), Some(OWNER_ROLE)).await {
            Ok(name) => return name,
            Err(e) => {
                last = Some(e);
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
    panic!("cannot create a test database: {:#}", last.expect("an error"));
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        TestApp::spawn_with(|_| {}).await
    }

    /// Spawn with configuration tweaks (the arguments are what `serve` would read from the environment).
    pub async fn spawn_with(customize: impl FnOnce(&mut ServeArgs)) -> TestApp {
        let db = fresh_database().await;
        let emulator =
            Emulator::start(EmulatorConfig::default(), SocketAddr::from(([127, 0, 0, 1], 0))).await.expect("emulator");
        TestApp::spawn_on(db, emulator, customize).await
    }

    /// Spawn against an existing database and emulator (several instances, restarts).
    ///
    /// With `TEST_DB_VIA_PGBOUNCER=1` the server's runtime connections go through a PgBouncer in transaction
    /// pooling mode (the owner connection of the test stays direct, as migrations do): `scripts/test` runs
    /// the whole suite a second time that way.
    pub async fn spawn_on(db: String, emulator: Emulator, customize: impl FnOnce(&mut ServeArgs)) -> TestApp {
        let shared = Shared::get().await.expect("shared servers");
        let owner_url = shared.pg_url(OWNER_ROLE, Some(OWNER_PASSWORD), &db);
        if std::env::var("TEST_DB_VIA_PGBOUNCER").is_ok_and(|v| v == "1") {
            let bouncer = testkit::PgBouncer::start(shared.pg_port(), &[(RUNTIME_ROLE, RUNTIME_PASSWORD)], 8)
                .await
                .expect("pgbouncer");
            let runtime_url = bouncer.url(RUNTIME_ROLE, RUNTIME_PASSWORD, &db);
            // Debian's PgBouncer (1.18) does not track named statements in transaction mode, and its port is
            // not the one `auto` recognises: name it, as an operator would.
            let customize = |args: &mut ServeArgs| {
                args.database_statements = Some("unnamed".into());
                customize(args);
            };
            let direct_url = shared.pg_url(RUNTIME_ROLE, Some(RUNTIME_PASSWORD), &db);
            let mut app = TestApp::spawn_with_urls(db, runtime_url, owner_url, emulator, customize).await;
            app.runtime_direct_url = direct_url;
            app._bouncer = Some(bouncer);
            return app;
        }
        let runtime_url = shared.pg_url(RUNTIME_ROLE, Some(RUNTIME_PASSWORD), &db);
        TestApp::spawn_with_urls(db, runtime_url, owner_url, emulator, customize).await
    }

    /// Spawn against any database (a cluster of the test's own, which it may stop and restart).
    pub async fn spawn_with_urls(
        db: String,
        runtime_url: String,
        owner_url: String,
        emulator: Emulator,
        customize: impl FnOnce(&mut ServeArgs),
    ) -> TestApp {
        if let Ok(filter) = std::env::var("TEST_LOG") {
            intellifill::testing::init_tracing(intellifill::testing::LogFormat::Pretty, &filter);
        }
        let shared = Shared::get().await.expect("shared servers");
        let mut args = ServeArgs {
            redis_url: Some(shared.redis_url()),
            redis_key_prefix: Some(shared.redis_prefix()),
            // Generous: a loaded CI machine must not flip the stores over by accident.
            redis_op_timeout_ms: Some("1000".into()),
            bind_addr: Some("127.0.0.1:0".into()),
            app_env: Some("test".into()),
            database_url: Some(runtime_url.clone()),
            db_pool_max_size: Some("8".into()),
            supabase_url: Some(emulator.base_url()),
            supabase_anon_key: Some(emulator.anon_key().to_owned()),
            auth_http_timeout_ms: Some("2000".into()),
            shutdown_grace_ms: Some("5000".into()),
            ..ServeArgs::default()
        };
        let spool = tempfile::tempdir().expect("spool dir");
        args.audit_spool_dir = Some(spool.path().display().to_string());
        customize(&mut args);
        let redis_prefix = args.redis_key_prefix.clone().unwrap_or_default();
        let config = Config::from_args(&args).expect("test configuration");
        let app = Application::build(config).await.expect("application builds");
        let addr = app.local_addr();
        let state = app.state();
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until_stopped(async {
            let _ = rx.await;
        }));
        let owner = migrate::connect(&owner_url).await.expect("owner connection");
        TestApp {
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
            emulator,
            owner,
            runtime_direct_url: runtime_url.clone(),
            runtime_url,
            owner_url,
            db,
            redis_prefix,
            state,
            _spool: Some(spool),
            _bouncer: None,
            shutdown: Some(tx),
            server: Some(server),
        }
    }

    /// Another instance of the server: same database, auth service and Redis (prefix), own process state.
    pub async fn peer(&self, customize: impl FnOnce(&mut ServeArgs)) -> TestApp {
        let prefix = self.redis_prefix.clone();
        TestApp::spawn_on(self.db.clone(), self.emulator.clone(), move |args| {
            args.redis_key_prefix = Some(prefix);
            customize(args);
        })
        .await
    }

    /// A connection of the test's own as the runtime role, straight to Postgres: what it checks is the
    /// database's roles, grants and policies. tokio-postgres prepares every `query`/`execute` as a named
    /// statement in a round trip of its own, which a transaction-mode PgBouncer without prepared-statement
    /// tracking (Debian's 1.18) may hand to another server connection outside an explicit transaction.
    pub async fn runtime_client(&self) -> tokio_postgres::Client {
        let (client, conn) =
            tokio_postgres::connect(&self.runtime_direct_url, tokio_postgres::NoTls).await.expect("runtime connection");
        tokio::spawn(conn);
        client
    }

    /// Graceful stop; returns what `run_until_stopped` returned.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.server.take() {
            Some(handle) => handle.await.expect("server task"),
            None => Ok(()),
        }
    }

    /// `DATABASE_STATEMENTS` for a server process a test starts itself on `runtime_url`: `unnamed` behind the
    /// PgBouncer of the suite's second run (it keeps no named statements), else the default.
    pub fn statements(&self) -> &'static str {
        if self._bouncer.is_some() { "unnamed" } else { "auto" }
    }

    /// `intellifill serve` as a child process against this app's database (as the runtime role, in the
    /// suite's statement mode), auth emulator and `spool`, with JSON logs and no stdin: the caller adds its
    /// address, log level, output and settings.
    pub fn serve_command(&self, spool: &std::path::Path) -> std::process::Command {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_intellifill"));
        cmd.arg("serve")
            .env_clear()
            .env("APP_ENV", "test")
            .env("DATABASE_URL", &self.runtime_url)
            .env("DATABASE_STATEMENTS", self.statements())
            .env("SUPABASE_URL", self.emulator.base_url())
            .env("SUPABASE_ANON_KEY", self.emulator.anon_key())
            .env("AUDIT_SPOOL_DIR", spool)
            .env("LOG_FORMAT", "json")
            .stdin(std::process::Stdio::null());
        cmd
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A signed-up auth user with a provisioned `users` row and a fresh access token.
    pub async fn user(&self, email: &str) -> TestUser {
        let user = self.auth_only_user(email).await;
        self.owner
            .execute("INSERT INTO users (id, email) VALUES ($1, $2)", &[&user.id, &user.email])
            .await
            .expect("users row");
        user
    }

    /// An auth user without a `users` row.
    pub async fn auth_only_user(&self, email: &str) -> TestUser {
        let created = self.emulator.create_user(email, "password123").expect("emulator user");
        let session = self.emulator.sign_in(email, "password123").expect("sign in");
        TestUser { id: created.id, email: email.to_owned(), token: session.access_token }
    }

    /// Another session of `user` (a new sign-in at the auth service, on its clock).
    pub fn sign_in_again(&self, user: &TestUser) -> TestUser {
        let session = self.emulator.sign_in(&user.email, "password123").expect("sign in");
        TestUser { token: session.access_token, ..user.clone() }
    }

    /// `GET /api/me` as `user` every 10 ms until it is refused with 401 `code`; returns how long that took.
    /// Panics with the last answer when `limit` passed first.
    pub async fn refused_within(&self, user: &TestUser, code: &str, limit: std::time::Duration) -> std::time::Duration {
        let started = tokio::time::Instant::now();
        loop {
            let (s, body) = self.get(user, "/api/me").await;
            if s == 401 {
                assert_eq!(body["code"], code, "{body}");
                return started.elapsed();
            }
            assert!(started.elapsed() < limit, "{} still answers {s} after {limit:?}: {body}", self.base);
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// `POST path` as `user`, which must answer 201 (`what` names the step in the failure); returns the body.
    async fn created(&self, user: &TestUser, path: &str, body: Value, what: &str) -> Value {
        let (status, body) = self.post(user, path, body).await;
        assert_eq!(status, 201, "{what}: {body}");
        body
    }

    /// Create an organization through the API; returns its id.
    pub async fn org(&self, owner: &TestUser, name: &str) -> Uuid {
        let body = self.created(owner, "/api/organizations", serde_json::json!({ "name": name }), "create org").await;
        body["id"].as_str().and_then(|s| s.parse().ok()).expect("org id")
    }

    /// `inviter` invites `user` to `org` with `role` through the API; returns the invitation's id.
    pub async fn invite(&self, inviter: &TestUser, org: Uuid, email: &str, role: &str) -> Uuid {
        let path = format!("/api/organizations/{org}/invitations");
        let body = self.created(inviter, &path, serde_json::json!({"email": email, "role": role}), "invite").await;
        body["id"].as_str().and_then(|s| s.parse().ok()).expect("invitation id")
    }

    /// `user` accepts the invitation `id` through the API; returns the organization it answers.
    pub async fn accept(&self, user: &TestUser, id: Uuid) -> Value {
        let (status, body) = self.post(user, &format!("/api/invitations/{id}/accept"), serde_json::json!({})).await;
        assert_eq!(status, 200, "accept: {body}");
        body
    }

    /// Joining the way users do: `inviter` invites `user` with `role`, `user` accepts.
    pub async fn join(&self, inviter: &TestUser, org: Uuid, user: &TestUser, role: &str) {
        let id = self.invite(inviter, org, &user.email, role).await;
        self.accept(user, id).await;
    }

    /// Add `user` to `org` with `role` directly in the database, through the owner connection (the runtime
    /// role cannot insert memberships: users join by accepting an invitation, see [`TestApp::join`]). For
    /// tests about what a member can do, not about how they joined.
    pub async fn add_member(&self, org: Uuid, user: &TestUser, role: &str) {
        self.owner
            .execute(
                "INSERT INTO organization_memberships (user_id, organization_id, role, status, joined_at)
                 VALUES ($1, $2, $3, 'ACTIVE', now())",
                &[&user.id, &org, &role],
            )
            .await
            .expect("membership");
    }

    /// A server that deactivates a user after two cross-tenant attempts in five minutes.
    pub async fn with_auto_lock() -> TestApp {
        TestApp::spawn_with(settings!(security_auto_lock = "true", anomaly_cross_tenant_per_5_minutes = "2")).await
    }

    /// A server and one provisioned user.
    pub async fn with_user() -> (TestApp, TestUser) {
        TestApp::with_user_using(|_| {}).await
    }

    /// [`TestApp::with_user`] with configuration tweaks (as [`TestApp::spawn_with`]).
    pub async fn with_user_using(customize: impl FnOnce(&mut ServeArgs)) -> (TestApp, TestUser) {
        let app = TestApp::spawn_with(customize).await;
        let user = app.user(&email("u")).await;
        (app, user)
    }

    /// A server with one organization, created through the API by its OWNER: `(app, owner, org)`.
    pub async fn with_org(name: &str) -> (TestApp, TestUser, Uuid) {
        TestApp::with_org_using(|_| {}, name).await
    }

    /// [`TestApp::with_org`] with configuration tweaks (as [`TestApp::spawn_with`]).
    pub async fn with_org_using(customize: impl FnOnce(&mut ServeArgs), name: &str) -> (TestApp, TestUser, Uuid) {
        let app = TestApp::spawn_with(customize).await;
        let (owner, org) = app.owned_org(name).await;
        (app, owner, org)
    }

    /// A new user who creates the organization `name` through the API, and so is its OWNER.
    pub async fn owned_org(&self, name: &str) -> (TestUser, Uuid) {
        let owner = self.user(&email("owner")).await;
        let org = self.org(&owner, name).await;
        (owner, org)
    }

    /// A new user, an active member of `org` with `role` (written directly in the database).
    pub async fn member(&self, org: Uuid, role: &str) -> TestUser {
        let user = self.user(&email(&role.to_lowercase())).await;
        self.add_member(org, &user, role).await;
        user
    }

    /// `user` creates a knowledge source in `org` through the API; returns it.
    pub async fn knowledge(&self, user: &TestUser, org: Uuid, title: &str, content: &str) -> Value {
        let path = format!("/api/organizations/{org}/knowledge");
        self.created(user, &path, serde_json::json!({"title": title, "content": content}), "create knowledge").await
    }

    /// `GET path` as `user` every 100 ms until it answers `status`; returns that body. Panics with `what` when
    /// `timeout` has passed first.
    pub async fn get_until(
        &self,
        user: &TestUser,
        path: &str,
        status: u16,
        timeout: std::time::Duration,
        what: &str,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let (s, body) = self.get(user, path).await;
            if s == status {
                return body;
            }
            assert!(tokio::time::Instant::now() < deadline, "{what}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> (u16, Value) {
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        let body =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        (status, body)
    }

    pub async fn get(&self, user: &TestUser, path: &str) -> (u16, Value) {
        self.send(self.http.get(self.url(path)).bearer_auth(&user.token)).await
    }

    pub async fn post(&self, user: &TestUser, path: &str, body: Value) -> (u16, Value) {
        self.send(self.http.post(self.url(path)).bearer_auth(&user.token).json(&body)).await
    }

    pub async fn patch(&self, user: &TestUser, path: &str, body: Value) -> (u16, Value) {
        self.send(self.http.patch(self.url(path)).bearer_auth(&user.token).json(&body)).await
    }

    pub async fn delete(&self, user: &TestUser, path: &str) -> (u16, Value) {
        self.send(self.http.delete(self.url(path)).bearer_auth(&user.token)).await
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Assert the standard error body and return it.
#[track_caller]
pub fn assert_error(status: u16, body: &Value, expected_status: u16, code: &str) {
    assert_eq!(status, expected_status, "unexpected status, body: {body}");
    assert_eq!(body["code"], code, "unexpected code, body: {body}");
    assert!(body["error"].is_string(), "error field missing: {body}");
    assert!(body["message"].is_string(), "message field missing: {body}");
    assert!(body["requestId"].as_str().is_some_and(|s| !s.is_empty()), "requestId missing: {body}");
}

/// [`assert_error`], with the body naming `field` as the one at fault.
#[track_caller]
pub fn assert_field_error(status: u16, body: &Value, expected_status: u16, code: &str, field: &str) {
    assert_error(status, body, expected_status, code);
    assert_eq!(body["field"], field, "unexpected field, body: {body}");
}

/// The first column of the one row `sql` returns.
pub async fn scalar<T: FromSqlOwned>(db: &tokio_postgres::Client, sql: &str, params: &[&(dyn ToSql + Sync)]) -> T {
    db.query_one(sql, params).await.unwrap_or_else(|e| panic!("{sql}: {e}")).get(0)
}

/// The first column of every row `sql` returns.
pub async fn column<T: FromSqlOwned>(db: &tokio_postgres::Client, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Vec<T> {
    db.query(sql, params).await.unwrap_or_else(|e| panic!("{sql}: {e}")).iter().map(|r| r.get(0)).collect()
}

/// A Redis URL on a free port, where nothing answers.
pub fn dead_redis_url() -> String {
    format!("redis://127.0.0.1:{}", testkit::free_port().expect("port"))
}

/// Unique e-mail for a test.
pub fn email(name: &str) -> String {
    format!("{name}-{}@example.test", Uuid::new_v4().simple())
}

/// A cluster of this test's own (it is stopped and restarted), migrated, with the two roles.
pub async fn own_cluster(name: &str) -> (testkit::PgCluster, String, String) {
    let pg = testkit::PgCluster::start(None).await.expect("cluster");
    let su = pg.superuser_url("postgres");
    provision::ensure_roles(&su, OWNER_PASSWORD, RUNTIME_PASSWORD).await.expect("roles");
    provision::ensure_database(&su, name).await.expect("database");
    let owner_url = pg.url(provision::OWNER_ROLE, Some(OWNER_PASSWORD), name);
    let mut owner = migrate::connect(&owner_url).await.expect("owner");
    migrate::run(&mut owner).await.expect("migrate");
    let runtime_url = pg.url(provision::RUNTIME_ROLE, Some(RUNTIME_PASSWORD), name);
    (pg, runtime_url, owner_url)
}

/// Poll `done` every 20 ms until it holds; panics after `timeout`.
pub async fn wait_until(timeout: std::time::Duration, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "condition not reached within {timeout:?}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Polls `app` as `user` until it refuses the token with 401 `SESSION_REVOKED`, failing if it still accepts it a
/// second after `since` (a revocation published on another instance).
pub async fn until_revoked(app: &TestApp, user: &TestUser, since: std::time::Instant) {
    loop {
        let (s, body) = app.get(user, "/api/me").await;
        if s == 401 {
            assert_eq!(body["code"], "SESSION_REVOKED");
            return;
        }
        assert!(since.elapsed() < std::time::Duration::from_secs(1), "still accepted after 1 s: {body}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A new MEMBER of `org` reads its knowledge, `owner` removes them, and their next read is refused.
pub async fn member_removal_revokes_access(app: &TestApp, owner: &TestUser, org: Uuid) {
    let gone = app.member(org, "MEMBER").await;
    let path = format!("/api/organizations/{org}/knowledge");
    assert_eq!(app.get(&gone, &path).await.0, 200);
    let (s, _) = app.delete(owner, &format!("/api/organizations/{org}/members/{}", gone.id)).await;
    assert_eq!(s, 204);
    let (s, b) = app.get(&gone, &path).await;
    assert_error(s, &b, 403, "NOT_ORG_MEMBER");
}
