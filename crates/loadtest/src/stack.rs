//! The embedded stack a measurement runs against: a throwaway Postgres cluster (roles provisioned, schema
//! migrated), a throwaway `redis-server`, the GoTrue emulator, and the server itself, either in this process
//! (chaos, overhead: the harness reads `AppState` directly) or as a child process running this same binary's
//! hidden `__serve` subcommand (load runs: the server's RSS is then its own, and its file descriptors do not
//! count against the generator's).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Parser};
use gotrue_emulator::{Emulator, EmulatorConfig};
use intellifill::testing::schema as migrate;
use intellifill::testing::schema::{self as provision, OWNER_ROLE, RUNTIME_ROLE};
use intellifill::{AppState, Application};
use intellifill::{Config, ServeArgs};
use testkit::{PgCluster, RedisServer};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub(crate) const DATABASE: &str = "intellifill";

/// Everything but the server.
pub(crate) struct Stack {
    pub dir: tempfile::TempDir,
    pub pg: PgCluster,
    pub redis: Option<RedisServer>,
    pub emulator: Emulator,
    pub runtime_url: String,
    pub owner_url: String,
    pub runtime_password: String,
}

impl Stack {
    /// Start Postgres (roles, database, migrations), Redis (when `with_redis`) and the emulator.
    pub(crate) async fn start(with_redis: bool) -> Result<Stack> {
        let dir = tempfile::Builder::new().prefix("loadtest-").tempdir().context("temp dir")?;
        let pg = PgCluster::start(None).await.context("starting the throwaway Postgres cluster")?;
        let owner_password = uuid::Uuid::new_v4().simple().to_string();
        let runtime_password = uuid::Uuid::new_v4().simple().to_string();
        let su = pg.superuser_url("postgres");
        provision::ensure_roles(&su, &owner_password, &runtime_password).await?;
        provision::ensure_database(&su, DATABASE).await?;
        let owner_url = pg.url(OWNER_ROLE, Some(&owner_password), DATABASE);
        let mut owner = migrate::connect(&owner_url).await?;
        migrate::run(&mut owner).await?;
        drop(owner);
        let redis = if with_redis { Some(RedisServer::start().await.context("starting redis-server")?) } else { None };
        let emulator = Emulator::start(EmulatorConfig::default(), SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        Ok(Stack {
            runtime_url: pg.url(RUNTIME_ROLE, Some(&runtime_password), DATABASE),
            owner_url,
            runtime_password,
            dir,
            pg,
            redis,
            emulator,
        })
    }

    /// A fresh owner-role connection (the owner has a maintenance policy on every table).
    pub(crate) async fn owner(&self) -> Result<tokio_postgres::Client> {
        migrate::connect(&self.owner_url).await
    }

    /// `ALTER SYSTEM SET` each (name, value), then restart the cluster so that settings read only at start apply.
    pub(crate) async fn set_postgres(&self, settings: &[(String, String)]) -> Result<()> {
        if settings.is_empty() {
            return Ok(());
        }
        let su = migrate::connect(&self.pg.superuser_url("postgres")).await?;
        for (name, value) in settings {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
                bail!("not a Postgres setting name: {name:?}");
            }
            let value = value.replace('\'', "''");
            su.batch_execute(&format!("ALTER SYSTEM SET {name} = '{value}'")).await?;
        }
        drop(su);
        self.pg.restart().await.context("restarting Postgres with the new settings")?;
        let su = migrate::connect(&self.pg.superuser_url("postgres")).await?;
        for (name, _) in settings {
            let row = su.query_one(&format!("SHOW {name}"), &[]).await?;
            eprintln!("[loadtest] Postgres {name} = {}", row.get::<_, String>(0));
        }
        Ok(())
    }

    /// The server's settings for a load run: real stack, limits raised so they never interfere.
    pub(crate) fn settings(&self, pool_size: usize) -> Settings {
        let spool = self.dir.path().join(format!("audit-spool-{}", uuid::Uuid::new_v4().simple()));
        let mut s = Settings::default();
        s.set("BIND_ADDR", "127.0.0.1:0");
        s.set("APP_ENV", "production");
        // Production refuses an open /metrics on the API port.
        s.set("METRICS_BEARER_TOKEN", METRICS_TOKEN);
        s.set("DATABASE_URL", &self.runtime_url);
        s.set("DB_POOL_MAX_SIZE", pool_size.to_string());
        s.set("SUPABASE_URL", self.emulator.base_url());
        s.set("SUPABASE_ANON_KEY", self.emulator.anon_key());
        if let Some(redis) = &self.redis {
            s.set("REDIS_URL", redis.url());
        }
        s.set("AUDIT_SPOOL_DIR", spool.display().to_string());
        // Production seals the audit trail: a throwaway key per run (a base64 32-byte seed).
        s.set("AUDIT_SIGNING_KEY", "bG9hZHRlc3QtYXVkaXQtc2lnbmluZy1rZXktc2VlZCE=");
        for var in RAISED_LIMITS {
            s.set(var, "1000000");
        }
        s.set("SHUTDOWN_GRACE_MS", "5000");
        s
    }
}

/// The limits [`Stack::settings`] raises out of the way of a load run (remove them for production defaults).
pub(crate) const RAISED_LIMITS: [&str; 9] = [
    "RATE_LIMIT_IP_PER_MINUTE",
    "RATE_LIMIT_USER_PER_MINUTE",
    "RATE_LIMIT_ORG_PER_MINUTE",
    "RATE_LIMIT_AUTH_PER_MINUTE",
    "ANOMALY_SEARCHES_PER_MINUTE",
    "ANOMALY_DELETES_PER_MINUTE",
    "ANOMALY_AUTH_FAILURES_PER_MINUTE",
    "ANOMALY_CROSS_TENANT_PER_5_MINUTES",
    "ANOMALY_IPS_PER_USER_PER_5_MINUTES",
];

/// The scrape token of the harness's servers.
pub(crate) const METRICS_TOKEN: &str = "loadtest-scrape-token";

/// Server settings as environment variables (the names `.env.example` documents).
#[derive(Debug, Clone, Default)]
pub(crate) struct Settings(Vec<(String, String)>);

#[derive(Parser)]
struct ServeOnly {
    #[command(flatten)]
    args: ServeArgs,
}

impl Settings {
    pub(crate) fn set(&mut self, var: &str, value: impl Into<String>) {
        let value = value.into();
        match self.0.iter_mut().find(|(k, _)| k == var) {
            Some(slot) => slot.1 = value,
            None => self.0.push((var.to_owned(), value)),
        }
    }

    pub(crate) fn remove(&mut self, var: &str) {
        self.0.retain(|(k, _)| k != var);
    }

    pub(crate) fn vars(&self) -> &[(String, String)] {
        &self.0
    }

    /// The same settings as `ServeArgs`, through clap (flag names looked up from each variable's `env`).
    pub(crate) fn serve_args(&self) -> Result<ServeArgs> {
        let command = ServeArgs::augment_args(clap::Command::new("serve"));
        let mut argv = vec!["serve".to_owned()];
        for (var, value) in &self.0 {
            let arg = command
                .get_arguments()
                .find(|a| a.get_env().is_some_and(|e| e == var.as_str()))
                .ok_or_else(|| anyhow!("{var} is not a server setting"))?;
            let long = arg.get_long().ok_or_else(|| anyhow!("{var} has no flag"))?;
            argv.push(format!("--{long}={value}"));
        }
        Ok(ServeOnly::try_parse_from(argv).context("server settings")?.args)
    }
}

/// The server running inside this process.
pub(crate) struct InProcess {
    pub state: AppState,
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<()>>>,
}

impl InProcess {
    pub(crate) async fn start(settings: &Settings) -> Result<InProcess> {
        let config = Config::from_args(&settings.serve_args()?).map_err(|e| anyhow!("{e}"))?;
        let app = Application::build(config).await?;
        let addr = app.local_addr();
        let state = app.state();
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(app.run_until_stopped(async {
            let _ = rx.await;
        }));
        Ok(InProcess { state, addr, shutdown: Some(tx), handle: Some(handle) })
    }

    pub(crate) async fn stop(mut self) -> Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(handle) = self.handle.take() {
            tokio::time::timeout(Duration::from_secs(30), handle)
                .await
                .map_err(|_| anyhow!("the in-process server did not stop within 30 s"))??
        } else {
            Ok(())
        }
    }
}

/// A child process of this binary (`__serve` or `__hello`) that prints `LISTENING <addr>` and stops when its
/// standard input closes.
pub(crate) struct ChildServer {
    pub addr: SocketAddr,
    pub pid: u32,
    child: Child,
    stdin: Option<ChildStdin>,
    pub log: PathBuf,
}

impl ChildServer {
    pub(crate) async fn spawn(subcommand: &str, env: &[(String, String)], log: &Path) -> Result<ChildServer> {
        let exe = std::env::current_exe().context("path of this binary")?;
        let log_file = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let mut cmd = Command::new(exe);
        cmd.arg(subcommand)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RUST_LOG", std::env::var("LOADTEST_SERVER_LOG").unwrap_or_else(|_| "warn".into()))
            .env("LOG_FORMAT", "pretty")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .kill_on_drop(true);
        let mut child = cmd.spawn().context("spawning the server child")?;
        let pid = child.id().ok_or_else(|| anyhow!("child exited at once"))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let stdin = child.stdin.take();
        let mut lines = BufReader::new(stdout).lines();
        let addr = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(addr) = line.strip_prefix("LISTENING ") {
                    return Ok::<_, anyhow::Error>(Some(addr.trim().parse::<SocketAddr>()?));
                }
            }
            Ok(None)
        })
        .await
        .map_err(|_| anyhow!("the {subcommand} child did not start within 60 s (log: {})", log.display()))??;
        let Some(addr) = addr else {
            let tail = std::fs::read_to_string(log).unwrap_or_default();
            bail!("the {subcommand} child exited before listening; its log:\n{tail}");
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(ChildServer { addr, pid, child, stdin, log: log.to_path_buf() })
    }

    /// Close its standard input (graceful stop), wait up to 30 s, then kill.
    pub(crate) async fn stop(mut self) -> Result<()> {
        drop(self.stdin.take());
        match tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await {
            Ok(status) => {
                let status = status?;
                if !status.success() {
                    bail!("the child exited with {status} (log: {})", self.log.display());
                }
                Ok(())
            }
            Err(_) => {
                self.child.kill().await?;
                bail!("the child did not stop within 30 s; killed it")
            }
        }
    }
}

/// `VmRSS` and `VmHWM` of a process, in KiB.
pub(crate) fn memory_kib(pid: Option<u32>) -> (u64, u64) {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".to_owned(),
    };
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// CPU time a process has used so far (user + system), from `/proc/<pid>/stat`; `None` once it is gone.
pub(crate) fn cpu_time(pid: u32) -> Option<Duration> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count fields after its `)`.
    let fields: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name; USER_HZ is 100 on Linux.
    let total = ticks(11)? + ticks(12)?;
    Some(Duration::from_millis(total * 10))
}

/// Open file descriptors allowed to this process (soft limit), from `/proc/self/limits`.
pub(crate) fn open_files_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// CPU time the Postgres cluster whose data directory is `data_dir` has used so far: the postmaster (its
/// own time plus that of its children already reaped, i.e. backends that have exited) and every live child
/// (backends, the checkpointer, the WAL writer, ...), from `/proc`. `None` if the cluster is not running.
pub(crate) fn postgres_cpu_time(data_dir: &Path) -> Option<Duration> {
    let pid_file = std::fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    let postmaster: u32 = pid_file.lines().next()?.trim().parse().ok()?;
    // Fields after the `)` of the command name: state is 0, ppid 1, utime 11, stime 12, cutime 13, cstime 14.
    let stat = |pid: u32| -> Option<Vec<u64>> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let fields: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
        [1, 11, 12, 13, 14].iter().map(|i| fields.get(*i)?.parse::<u64>().ok()).collect()
    };
    let own = stat(postmaster)?;
    let mut ticks = own[1] + own[2] + own[3] + own[4];
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        if let Some(f) = stat(pid).filter(|f| f[0] == u64::from(postmaster)) {
            ticks += f[1] + f[2];
        }
    }
    // USER_HZ is 100 on Linux.
    Some(Duration::from_millis(ticks * 10))
}
