//! `intellifill dev`: the whole product on one machine with nothing but the system binaries.
//!
//! Starts a throwaway Postgres cluster (under `.dev/`, wiped at each start), creates the owner and runtime
//! roles, applies the migrations, starts Redis (when installed) and the GoTrue emulator on loopback (sign-ups
//! confirmed through its mailbox), seeds two organizations with their users and knowledge, starts the server as
//! the runtime role (CORS open to `--cors-origin`), and prints what a frontend needs (URLs, both key forms,
//! database URL, demo users, mailbox; `--env`: only those, as variables) and `curl` lines with valid tokens.
//! Fixed default ports (API 8080, auth 54321, Postgres 54322, Redis 54380), each checked free before anything
//! starts.
//! Ctrl-C stops the server (draining requests), the emulator and the cluster. Also `intellifill emulator`.

pub(crate) mod demo;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use gotrue_emulator::{ApiKeys, Emulator, EmulatorConfig, Signing};
use testkit::{PgCluster, RedisServer};

use crate::config::{Config, ServeArgs};
use crate::db::migrate;
use crate::db::provision::{self, OWNER_ROLE, RUNTIME_ROLE};
use crate::startup::{Application, shutdown_signal};

/// The fixed default ports: the auth emulator and Postgres where the Supabase CLI puts its API and database
/// (54321, 54322), so a frontend's existing `.env` works; Redis next to them.
pub(crate) const DEFAULT_API_PORT: u16 = 8080;
pub(crate) const DEFAULT_AUTH_PORT: u16 = 54321;
pub(crate) const DEFAULT_DB_PORT: u16 = 54322;
pub(crate) const DEFAULT_REDIS_PORT: u16 = 54380;

#[derive(Debug, clap::Args)]
pub(crate) struct DevArgs {
    /// Port of the API server (0: any free port).
    #[arg(long, env = "DEV_PORT", default_value_t = DEFAULT_API_PORT)]
    pub port: u16,
    /// Port of the auth emulator, the frontend's SUPABASE_URL (0: any free port).
    #[arg(long, env = "DEV_AUTH_PORT", default_value_t = DEFAULT_AUTH_PORT)]
    pub auth_port: u16,
    /// Port of the throwaway Postgres (0: any free port).
    #[arg(long, env = "DEV_DB_PORT", default_value_t = DEFAULT_DB_PORT)]
    pub db_port: u16,
    /// Port of Redis (0: any free port).
    #[arg(long, env = "DEV_REDIS_PORT", default_value_t = DEFAULT_REDIS_PORT)]
    pub redis_port: u16,
    /// Origins of the frontend allowed to call the API (CORS), comma-separated.
    #[arg(
        long = "cors-origin",
        env = "DEV_CORS_ORIGINS",
        value_delimiter = ',',
        default_value = "http://localhost:3000,http://localhost:5173"
    )]
    pub cors_origins: Vec<String>,
    /// Print only the frontend's variables (`KEY="value"` lines, for `>> .env.local`) on stdout; every other
    /// line goes to stderr.
    #[arg(long)]
    pub env: bool,
    /// Folder of the throwaway cluster (wiped at each start).
    #[arg(long, env = "DEV_DATA_DIR", default_value = ".dev")]
    pub data_dir: PathBuf,
}

impl DevArgs {
    /// Each fixed port free, checked before anything starts, so a taken one is named with the flag that moves it.
    fn check_ports(&self) -> anyhow::Result<()> {
        let ports = [
            (self.port, "--port", "DEV_PORT", "the API"),
            (self.auth_port, "--auth-port", "DEV_AUTH_PORT", "the auth emulator"),
            (self.db_port, "--db-port", "DEV_DB_PORT", "Postgres"),
            (self.redis_port, "--redis-port", "DEV_REDIS_PORT", "Redis"),
        ];
        for (i, (port, flag, env, what)) in ports.iter().enumerate() {
            if *port == 0 {
                continue;
            }
            if let Some((_, other, _, _)) = ports[..i].iter().find(|(p, ..)| p == port) {
                anyhow::bail!("{flag} and {other} are both {port}: each service needs its own port");
            }
            if let Err(e) = std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, *port)) {
                anyhow::bail!(
                    "port {port} for {what} is not free ({e}); stop what uses it or pick another port with \
                     {flag} <port> (or {env}=<port>; 0 picks any free port)"
                );
            }
        }
        for origin in &self.cors_origins {
            crate::config::parse_origin(origin).map_err(|e| anyhow::anyhow!("--cors-origin: {e}"))?;
        }
        Ok(())
    }
}

#[derive(Debug, clap::Args)]
pub(crate) struct EmulatorArgs {
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

pub(crate) async fn run_emulator(args: EmulatorArgs) -> anyhow::Result<()> {
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

/// The auth emulator as dev mode runs it: sign-up needs the email confirmed (the link in the mailbox), as a
/// Supabase project with confirmations on, so a frontend's sign-up flow is the real one; no pause between two
/// emails (GoTrue's 60 s would stall a developer trying things); links with no `redirect_to` lead to the demo
/// page (when the API port is fixed).
fn emulator_config(api_port: u16) -> EmulatorConfig {
    let mut cfg = EmulatorConfig::default();
    cfg.signup.autoconfirm = false;
    cfg.mail.max_frequency = Duration::ZERO;
    if api_port != 0 {
        cfg.mail.site_url = format!("http://127.0.0.1:{api_port}/");
    }
    cfg
}

/// The password of every demo user.
pub(crate) const DEMO_PASSWORD: &str = "password123";

struct DemoUser {
    email: &'static str,
    token: String,
}

pub(crate) async fn run(args: DevArgs) -> anyhow::Result<()> {
    args.check_ports()?;
    let dir = std::path::absolute(&args.data_dir)?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .map_err(|e| anyhow::anyhow!("cannot wipe the dev folder {}: {e}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir)?;

    // Progress on stderr: stdout is the banner, or with --env the variables alone.
    eprintln!("[dev] starting a throwaway Postgres cluster in {} ...", dir.display());
    let pg = match args.db_port {
        0 => PgCluster::start(Some(&dir)).await?,
        port => PgCluster::start_on_port(Some(&dir), port).await.map_err(|e| anyhow::anyhow!("{e:#} (--db-port)"))?,
    };
    let owner_password = uuid::Uuid::new_v4().simple().to_string();
    let runtime_password = uuid::Uuid::new_v4().simple().to_string();
    let su = pg.superuser_url("postgres");
    provision::ensure_roles(&su, &owner_password, &runtime_password).await?;
    provision::ensure_database(&su, "intellifill").await?;
    let owner_url = pg.url(OWNER_ROLE, Some(&owner_password), "intellifill");
    let mut owner = migrate::connect(&owner_url).await?;
    migrate::run(&mut owner).await?;

    eprintln!("[dev] starting Redis (shared token cache, revocations) ...");
    let started = match args.redis_port {
        0 => RedisServer::start().await,
        port => RedisServer::start_on_port(port).await,
    };
    let redis = match started {
        Ok(r) => Some(r),
        Err(e) => {
            // The error says how to install it when it is missing.
            eprintln!("[dev] no Redis: {e:#}. Going on with in-process state only.");
            None
        }
    };

    eprintln!("[dev] starting the auth emulator ...");
    let emulator =
        Emulator::start(emulator_config(args.port), SocketAddr::from(([127, 0, 0, 1], args.auth_port))).await.map_err(
            |e| anyhow::anyhow!("the auth emulator cannot listen on port {}: {e:#} (--auth-port)", args.auth_port),
        )?;
    let (users, acme) = seed(&owner, &emulator).await?;

    let database_url = pg.url(RUNTIME_ROLE, Some(&runtime_password), "intellifill");
    let serve = ServeArgs {
        bind_addr: Some(format!("127.0.0.1:{}", args.port)),
        app_env: Some("development".into()),
        database_url: Some(database_url.clone()),
        supabase_url: Some(emulator.base_url()),
        supabase_anon_key: Some(emulator.anon_key().to_owned()),
        shutdown_grace_ms: Some("5000".into()),
        redis_url: redis.as_ref().map(RedisServer::url),
        audit_spool_dir: Some(dir.join("audit-spool").display().to_string()),
        cors_allowed_origins: Some(args.cors_origins.join(",")),
        ..ServeArgs::default()
    };
    let config = Config::from_args(&serve)?;
    let mut app = Application::build(config).await?;
    let api = format!("http://{}", app.local_addr());
    app.serve_also(demo::routes(demo::DemoConfig {
        api: api.clone(),
        auth: emulator.base_url(),
        anon_key: emulator.anon_key().to_owned(),
        acme_id: acme,
        demo_users: users.iter().map(|u| u.email.to_owned()).collect(),
    }));
    let printed = Printed { api, auth: emulator.base_url(), keys: emulator.api_keys(), database_url, users, acme };
    if args.env {
        print!("{}", printed.env());
    } else {
        print_banner(&printed);
    }
    use std::io::Write as _;
    std::io::stdout().flush()?;

    let served = app.run_until_stopped(shutdown_signal()).await;
    eprintln!("[dev] stopping the emulator and Postgres ...");
    emulator.shutdown().await;
    if let Some(r) = &redis {
        r.stop().await?;
    }
    pg.stop().await?;
    served
}

/// What dev mode tells a frontend and a person.
struct Printed {
    api: String,
    auth: String,
    keys: ApiKeys,
    database_url: String,
    users: Vec<DemoUser>,
    acme: uuid::Uuid,
}

impl Printed {
    fn mailbox(&self) -> String {
        format!("{}/__emulator/mailbox", self.auth)
    }

    /// The variables, `KEY="value"` lines as `supabase status -o env` prints them, with the names Next.js and
    /// Vite frontends read. Both key forms: `*_ANON_KEY` / `*_SERVICE_ROLE_KEY` named as frontends read them
    /// carry the new-style `sb_publishable_` / `sb_secret_` keys (supabase-js takes either form), and the
    /// Supabase CLI's own names carry what it puts there: `ANON_KEY` / `SERVICE_ROLE_KEY` the legacy JWT keys,
    /// `PUBLISHABLE_KEY` / `SECRET_KEY` the new ones.
    fn env(&self) -> String {
        let emails: Vec<&str> = self.users.iter().map(|u| u.email).collect();
        let k = &self.keys;
        let vars = [
            ("INTELLIFILL_API_URL", self.api.clone()),
            ("NEXT_PUBLIC_API_URL", self.api.clone()),
            ("VITE_API_URL", self.api.clone()),
            ("SUPABASE_URL", self.auth.clone()),
            ("NEXT_PUBLIC_SUPABASE_URL", self.auth.clone()),
            ("VITE_SUPABASE_URL", self.auth.clone()),
            ("SUPABASE_ANON_KEY", k.publishable.clone()),
            ("NEXT_PUBLIC_SUPABASE_ANON_KEY", k.publishable.clone()),
            ("VITE_SUPABASE_ANON_KEY", k.publishable.clone()),
            ("SUPABASE_PUBLISHABLE_KEY", k.publishable.clone()),
            ("NEXT_PUBLIC_SUPABASE_PUBLISHABLE_KEY", k.publishable.clone()),
            ("VITE_SUPABASE_PUBLISHABLE_KEY", k.publishable.clone()),
            ("SUPABASE_SERVICE_ROLE_KEY", k.secret.clone()),
            ("SUPABASE_SECRET_KEY", k.secret.clone()),
            ("PUBLISHABLE_KEY", k.publishable.clone()),
            ("SECRET_KEY", k.secret.clone()),
            ("ANON_KEY", k.anon.clone()),
            ("SERVICE_ROLE_KEY", k.service_role.clone()),
            ("DATABASE_URL", self.database_url.clone()),
            ("MAILBOX_URL", self.mailbox()),
            ("DEMO_PAGE_URL", format!("{}/", self.api)),
            ("DEMO_USERS", emails.join(",")),
            ("DEMO_PASSWORD", DEMO_PASSWORD.to_owned()),
            ("DEMO_ORG_ACME_ID", self.acme.to_string()),
        ];
        vars.iter().map(|(k, v)| format!("{k}=\"{v}\"\n")).collect()
    }
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
        let password = DEMO_PASSWORD;
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

fn print_banner(p: &Printed) {
    let (base, users, acme) = (&p.api, &p.users, p.acme);
    println!();
    println!("IntelliFill API (dev) is ready  (Ctrl-C stops everything)");
    println!("  demo page      {base}/");
    println!("  API            {base}");
    println!("  auth (SUPABASE_URL)  {}", p.auth);
    println!("  publishable key  {}  (the anon key; legacy JWT form below)", p.keys.publishable);
    println!("  anon key (JWT)   {}", p.keys.anon);
    println!("  secret key       {}  (the service-role key; legacy JWT form below)", p.keys.secret);
    println!("  service_role key (JWT)  {}", p.keys.service_role);
    println!("  database       {}", p.database_url);
    println!("  mailbox        {}  (emails the auth service would send)", p.mailbox());
    println!("  `intellifill dev --env` prints these as variables for a frontend's .env.local");
    println!("Demo users (password: {DEMO_PASSWORD}):");
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
