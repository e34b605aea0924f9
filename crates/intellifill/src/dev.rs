//! `intellifill dev`: the whole product on one machine with nothing but the system binaries.
//!
//! Starts a throwaway Postgres cluster (under `.dev/`, wiped at each start), creates the owner and runtime
//! roles, applies the migrations, starts Redis (when installed) and the GoTrue emulator on loopback, seeds two organizations with their
//! users and knowledge, starts the server as the runtime role, and prints `curl` lines with valid tokens.
//! Ctrl-C stops the server (draining requests), the emulator and the cluster. Also `intellifill emulator`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use gotrue_emulator::{Emulator, EmulatorConfig, Signing};
use testkit::{PgCluster, RedisServer};

use crate::config::{Config, ServeArgs};
use crate::db::migrate;
use crate::db::provision::{self, OWNER_ROLE, RUNTIME_ROLE};
use crate::startup::{Application, shutdown_signal};

#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// Port of the API server.
    #[arg(long, env = "DEV_PORT", default_value_t = 8080)]
    pub port: u16,
    /// Folder of the throwaway cluster (wiped at each start).
    #[arg(long, env = "DEV_DATA_DIR", default_value = ".dev")]
    pub data_dir: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct EmulatorArgs {
    /// Address to listen on.
    #[arg(long, env = "EMULATOR_BIND", default_value = "127.0.0.1:54321")]
    pub bind: SocketAddr,
    /// Sign tokens with this HS256 secret (legacy projects) instead of a generated ES256 key.
    #[arg(long, env = "EMULATOR_HS256_SECRET", hide_env_values = true)]
    pub hs256_secret: Option<String>,
    /// The anon / publishable key (generated when absent).
    #[arg(long, env = "EMULATOR_ANON_KEY", hide_env_values = true)]
    pub anon_key: Option<String>,
    /// The service-role / secret key (generated when absent).
    #[arg(long, env = "EMULATOR_SERVICE_ROLE_KEY", hide_env_values = true)]
    pub service_role_key: Option<String>,
    /// Access token lifetime.
    #[arg(long, env = "EMULATOR_TOKEN_TTL_SECONDS", default_value_t = 3600)]
    pub token_ttl_seconds: u64,
}

impl EmulatorArgs {
    fn config(&self) -> EmulatorConfig {
        let mut cfg = EmulatorConfig::default();
        if let Some(secret) = &self.hs256_secret {
            cfg.signing = Signing::Hs256 { secret: secret.clone() };
        }
        if let Some(k) = &self.anon_key {
            cfg.anon_key = k.clone();
        }
        if let Some(k) = &self.service_role_key {
            cfg.service_role_key = k.clone();
        }
        cfg.access_token_ttl = Duration::from_secs(self.token_ttl_seconds);
        cfg
    }
}

pub async fn run_emulator(args: EmulatorArgs) -> anyhow::Result<()> {
    let emulator = Emulator::start(args.config(), args.bind).await?;
    println!("GoTrue emulator listening");
    println!("  SUPABASE_URL={}", emulator.base_url());
    println!("  SUPABASE_ANON_KEY={}", emulator.anon_key());
    println!("  service role key: {}", emulator.service_role_key());
    println!("  faults: POST {}/__emulator/faults  (DELETE to clear)", emulator.base_url());
    shutdown_signal().await;
    emulator.shutdown().await;
    Ok(())
}

struct DemoUser {
    email: &'static str,
    token: String,
}

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let dir = std::path::absolute(&args.data_dir)?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .map_err(|e| anyhow::anyhow!("cannot wipe the dev folder {}: {e}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir)?;

    println!("[dev] starting a throwaway Postgres cluster in {} ...", dir.display());
    let pg = PgCluster::start(Some(&dir)).await?;
    let owner_password = uuid::Uuid::new_v4().simple().to_string();
    let runtime_password = uuid::Uuid::new_v4().simple().to_string();
    let su = pg.superuser_url("postgres");
    provision::ensure_roles(&su, &owner_password, &runtime_password).await?;
    provision::ensure_database(&su, "intellifill").await?;
    let owner_url = pg.url(OWNER_ROLE, Some(&owner_password), "intellifill");
    let mut owner = migrate::connect(&owner_url).await?;
    migrate::run(&mut owner).await?;

    println!("[dev] starting Redis (shared token cache, revocations) ...");
    let redis = match RedisServer::start().await {
        Ok(r) => Some(r),
        Err(e) => {
            println!(
                "[dev] no Redis ({e:#}); install it with `apt-get install redis-server`. Going on with in-process state only."
            );
            None
        }
    };

    println!("[dev] starting the auth emulator ...");
    let emulator = Emulator::start(EmulatorConfig::default(), SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let (users, acme) = seed(&owner, &emulator).await?;

    let args = ServeArgs {
        bind_addr: Some(format!("127.0.0.1:{}", args.port)),
        app_env: Some("development".into()),
        database_url: Some(pg.url(RUNTIME_ROLE, Some(&runtime_password), "intellifill")),
        supabase_url: Some(emulator.base_url()),
        supabase_anon_key: Some(emulator.anon_key().to_owned()),
        shutdown_grace_ms: Some("5000".into()),
        redis_url: redis.as_ref().map(RedisServer::url),
        audit_spool_dir: Some(dir.join("audit-spool").display().to_string()),
        ..ServeArgs::default()
    };
    let config = Config::from_args(&args)?;
    let app = Application::build(config).await?;
    let base = format!("http://{}", app.local_addr());
    print_banner(&base, &users, acme);

    let served = app.run_until_stopped(shutdown_signal()).await;
    println!("[dev] stopping the emulator and Postgres ...");
    emulator.shutdown().await;
    if let Some(r) = &redis {
        r.stop().await?;
    }
    pg.stop().await?;
    served
}

/// Two organizations, three users, a few knowledge sources; returns the users' tokens and Acme's id.
async fn seed(owner: &tokio_postgres::Client, emulator: &Emulator) -> anyhow::Result<(Vec<DemoUser>, uuid::Uuid)> {
    let acme: uuid::Uuid = owner
        .query_one("INSERT INTO organizations (name, slug) VALUES ('Acme Corp', 'acme') RETURNING id", &[])
        .await?
        .get(0);
    let globex: uuid::Uuid = owner
        .query_one("INSERT INTO organizations (name, slug) VALUES ('Globex', 'globex') RETURNING id", &[])
        .await?
        .get(0);
    let people =
        [("alice@acme.test", acme, "OWNER"), ("carol@acme.test", acme, "MEMBER"), ("bob@globex.test", globex, "OWNER")];
    let mut users = Vec::new();
    for (email, org, role) in people {
        let password = "password123";
        let user = emulator.create_user(email, password)?;
        owner
            .execute("INSERT INTO users (id, email, organization_id) VALUES ($1, $2, $3)", &[&user.id, &email, &org])
            .await?;
        owner
            .execute(
                "INSERT INTO organization_memberships (user_id, organization_id, role, status, joined_at)
                 VALUES ($1, $2, $3, 'ACTIVE', now())",
                &[&user.id, &org, &role],
            )
            .await?;
        let session = emulator.sign_in(email, password)?;
        users.push(DemoUser { email, token: session.access_token });
    }
    for (org, title, content) in [
        (acme, "Onboarding checklist", "Collect the W-9 form, the signed NDA and the bank details."),
        (acme, "Invoice template", "Every invoice needs a PO number, the VAT id and payment terms."),
        (globex, "Globex secret plan", "Only Globex members can ever read this row."),
    ] {
        owner
            .execute(
                "INSERT INTO knowledge_sources (organization_id, title, content) VALUES ($1, $2, $3)",
                &[&org, &title, &content],
            )
            .await?;
    }
    Ok((users, acme))
}

fn print_banner(base: &str, users: &[DemoUser], acme: uuid::Uuid) {
    println!();
    println!("IntelliFill API (dev) is ready at {base}  (Ctrl-C stops everything)");
    println!("Demo users (password: password123):");
    for u in users {
        println!("  {}", u.email);
    }
    let alice = &users[0].token;
    let carol = &users[1].token;
    let bob = &users[2].token;
    println!();
    println!("# who am I (alice, OWNER of Acme)");
    println!("curl -s {base}/api/me -H 'Authorization: Bearer {alice}'");
    println!("# Acme's knowledge");
    println!("curl -s {base}/api/organizations/{acme}/knowledge -H 'Authorization: Bearer {alice}'");
    println!("# add a knowledge source");
    println!(
        "curl -s -X POST {base}/api/organizations/{acme}/knowledge -H 'Authorization: Bearer {alice}' -H 'Content-Type: application/json' -d '{{\"title\":\"Hello\",\"content\":\"first note\"}}'"
    );
    println!("# full-text search");
    println!("curl -s '{base}/api/organizations/{acme}/knowledge/search?q=invoice' -H 'Authorization: Bearer {alice}'");
    println!("# bob (Globex) trying to read Acme: 403 NOT_ORG_MEMBER");
    println!("curl -s {base}/api/organizations/{acme}/knowledge -H 'Authorization: Bearer {bob}'");
    println!("# the token's session, then log carol out everywhere (her token is refused from now on)");
    println!("curl -s {base}/api/auth/session -H 'Authorization: Bearer {carol}'");
    println!(
        "curl -s -X POST '{base}/api/auth/logout?scope=global' -H 'Authorization: Bearer {carol}' -w '%{{http_code}}\\n'"
    );
    println!("# OpenAPI document");
    println!("curl -s {base}/api/docs/openapi.json");
    println!();
}
