//! One PostgreSQL cluster and one redis-server shared by every test of a test run.
//!
//! Starting a cluster per test is too slow, and under `cargo nextest` every test is its own
//! process, so "once per run" must work across processes:
//!
//! * The run is keyed by `NEXTEST_RUN_ID` when set (the owner of the run is then our parent
//!   process, the nextest runner), otherwise by this process's pid (the owner is this process).
//!   The shared state lives in `$TMPDIR/intellifill-testkit/<key>/`.
//! * The first process to take the exclusive file lock `<dir>/lock` (std [`File::lock`], i.e.
//!   `flock`) starts the servers there (in their own process groups, with stdio detached, so test
//!   runners neither signal them nor wait for them) and records their ports in `<dir>/state`;
//!   later processes only read that file.
//! * Cleanup: before starting anything, the first process spawns a detached reaper (`sh -c` loop
//!   polling `kill -0 <owner>` every second) that stops both servers and deletes the directory once
//!   the owner is gone — even if tests panic or abort. Directories whose owner is dead (or whose
//!   pid was reused, detected via the process start time) are reaped by the next run.
//!
//! [`Shared::once`] runs an initializer exactly once per shared cluster (per-name lock file plus a
//! marker file), e.g. to create roles and a migrated template database that tests then clone with
//! [`Shared::create_database`].

use std::fs::{File, OpenOptions};
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use tokio::sync::OnceCell;
use tokio_postgres::error::SqlState;

use crate::process;
use crate::{PgCluster, RedisServer};

/// Directory (under the system temp dir) holding one sub-directory per test run.
pub const SHARED_BASE_DIR_NAME: &str = "intellifill-testkit";
/// How long to wait for another process holding a shared lock (e.g. a slow `once` initializer).
const LOCK_TIMEOUT: Duration = Duration::from_secs(300);
/// How long `create_database` retries while the template is still in use by another session.
const TEMPLATE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Directories without an owner file older than this are considered abandoned.
const ORPHAN_AGE: Duration = Duration::from_secs(600);

static SHARED: OnceCell<Shared> = OnceCell::const_new();

/// The reaper: waits for the owner to exit, then stops the servers and removes the directory.
/// `$1` = owner pid, `$2` = shared dir. Server pids are read from files at reaping time.
/// `running` treats zombies as gone: orphans may never be reaped when PID 1 doesn't do it.
const REAPER_SCRIPT: &str = r#"
trap '' HUP INT
owner="$1"; dir="$2"
running() {
  [ -n "$1" ] && kill -0 "$1" 2>/dev/null || return 1
  state=$(cut -d')' -f2 "/proc/$1/stat" 2>/dev/null | cut -c2)
  [ "$state" != Z ]
}
while running "$owner"; do sleep 1; done
pg=$(cat "$dir/pg.pid" 2>/dev/null); rd=$(cat "$dir/redis.pid" 2>/dev/null)
[ -n "$pg" ] && kill -INT "$pg" 2>/dev/null
[ -n "$rd" ] && kill -TERM "$rd" 2>/dev/null
i=0
while [ "$i" -lt 100 ]; do
  alive=
  running "$pg" && alive=1
  running "$rd" && alive=1
  [ -z "$alive" ] && break
  sleep 0.1; i=$((i+1))
done
if [ -n "$alive" ]; then
  [ -n "$pg" ] && kill -QUIT "$pg" 2>/dev/null
  [ -n "$rd" ] && kill -KILL "$rd" 2>/dev/null
  sleep 1
fi
rm -rf "$dir"
"#;

/// Servers shared by every test of one test run (see the module docs of `shared`).
#[derive(Debug)]
pub struct Shared {
    dir: PathBuf,
    pg_port: u16,
    redis_port: u16,
}

impl Shared {
    /// The run's shared servers, starting them if this is the first process of the run to ask.
    /// Process-wide once; the result holds no runtime-bound resources, so it may be used from any
    /// tokio runtime (every `#[tokio::test]` has its own).
    pub async fn get() -> Result<&'static Shared> {
        SHARED.get_or_try_init(init).await
    }

    /// The shared directory of this run (`$TMPDIR/intellifill-testkit/<key>`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// PostgreSQL's TCP port on 127.0.0.1.
    pub fn pg_port(&self) -> u16 {
        self.pg_port
    }

    /// redis-server's TCP port on 127.0.0.1.
    pub fn redis_port(&self) -> u16 {
        self.redis_port
    }

    /// `postgres://user[:password]@127.0.0.1:port/db` on the shared cluster.
    pub fn pg_url(&self, user: &str, password: Option<&str>, db: &str) -> String {
        crate::postgres::url(self.pg_port, user, password, db)
    }

    /// The URL of `db` for the superuser `postgres`.
    pub fn pg_superuser_url(&self, db: &str) -> String {
        self.pg_url("postgres", None, db)
    }

    /// `redis://127.0.0.1:port`
    pub fn redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.redis_port)
    }

    /// A superuser connection to `db`; its connection task is spawned on the current runtime.
    pub async fn superuser_client(&self, db: &str) -> Result<tokio_postgres::Client> {
        connect(&self.pg_superuser_url(db)).await
    }

    /// Runs `init` exactly once per shared cluster, across all processes of the run: under a
    /// per-`name` file lock, recorded by a marker file named after `name`. If `init` fails, no
    /// marker is written and the next caller runs it again. Must not be nested for the same
    /// `name` (that would wait for itself).
    pub async fn once<F, Fut>(&self, name: &str, init: F) -> Result<()>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<()>>,
    {
        let file_name = once_file_name(name);
        let marker = self.dir.join(format!("{file_name}.done"));
        if marker.exists() {
            return Ok(());
        }
        let _lock = lock_exclusive(self.dir.join(format!("{file_name}.lock"))).await?;
        if marker.exists() {
            return Ok(());
        }
        init().await.with_context(|| format!("shared initializer `{name}` failed"))?;
        write_atomically(&marker, name)
    }

    /// `CREATE DATABASE "test_<uuid simple>" [TEMPLATE template] [OWNER owner]` as the superuser;
    /// returns the new database's name. Retries for a while if the template is still in use by
    /// another session (PostgreSQL requires the template to have no connections).
    pub async fn create_database(&self, template: Option<&str>, owner: Option<&str>) -> Result<String> {
        let name = format!("test_{}", uuid::Uuid::new_v4().simple());
        let mut sql = format!("CREATE DATABASE {}", quote_ident(&name));
        if let Some(template) = template {
            sql.push_str(&format!(" TEMPLATE {}", quote_ident(template)));
        }
        if let Some(owner) = owner {
            sql.push_str(&format!(" OWNER {}", quote_ident(owner)));
        }
        let client = self.superuser_client("postgres").await?;
        let deadline = Instant::now() + TEMPLATE_BUSY_TIMEOUT;
        loop {
            match client.batch_execute(&sql).await {
                Ok(()) => return Ok(name),
                Err(e) if e.code() == Some(&SqlState::OBJECT_IN_USE) && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => {
                    bail!("`{sql}` failed on the shared cluster (127.0.0.1:{}): {}", self.pg_port, pg_error_text(&e))
                }
            }
        }
    }

    /// A unique key prefix for isolating a test's Redis keys, e.g. `t3f2a…:`.
    pub fn redis_prefix(&self) -> String {
        format!("t{}:", uuid::Uuid::new_v4().simple())
    }
}

/// Connects with `NoTls` and spawns the connection task.
async fn connect(url: &str) -> Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(|e| anyhow!("could not connect to {url}: {}", pg_error_text(&e)))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "testkit postgres connection ended with an error");
        }
    });
    Ok(client)
}

/// A tokio-postgres error including the server's message (its `Display` alone is terse).
fn pg_error_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {} (SQLSTATE {})", db.severity(), db.message(), db.code().code()),
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                text.push_str(&format!(": {s}"));
                source = s.source();
            }
            text
        }
    }
}

/// Quotes an SQL identifier.
fn quote_ident(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// `once-<sanitised name>-<hash>`: a safe file name that stays unique per `name`.
fn once_file_name(name: &str) -> String {
    let clean: String = name
        .chars()
        .take(64)
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
        .collect();
    // FNV-1a, so that names differing only in replaced characters don't collide.
    let hash =
        name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3));
    format!("once-{clean}-{:08x}", hash as u32)
}

/// Who owns the run, and the name of its shared directory.
struct RunKey {
    key: String,
    owner: u32,
}

fn run_key() -> RunKey {
    match std::env::var("NEXTEST_RUN_ID") {
        Ok(run_id) if !run_id.trim().is_empty() => {
            // Short (64 bits of the run's UUID) so the Unix socket path stays within limits.
            let id: String = run_id.chars().filter(|c| c.is_ascii_alphanumeric()).take(16).collect();
            RunKey { key: format!("run-{id}"), owner: std::os::unix::process::parent_id() }
        }
        _ => RunKey { key: format!("pid-{}", std::process::id()), owner: std::process::id() },
    }
}

/// `"<pid> <start time>"` identifying a live process (or `"<pid> -"` without `/proc`).
fn owner_record(pid: u32) -> String {
    match process::start_time(pid) {
        Some(start) => format!("{pid} {start}"),
        None => format!("{pid} -"),
    }
}

fn owner_alive(record: &str) -> bool {
    let mut parts = record.split_whitespace();
    let Some(pid) = parts.next().and_then(|p| p.parse::<u32>().ok()) else {
        return false;
    };
    match parts.next().and_then(|s| s.parse::<u64>().ok()) {
        Some(start) => process::is_alive(pid) && process::start_time(pid) == Some(start),
        None => process::is_alive(pid),
    }
}

async fn init() -> Result<Shared> {
    let base = std::env::temp_dir().join(SHARED_BASE_DIR_NAME);
    create_base_dir(&base)?;
    let RunKey { key, owner } = run_key();
    {
        let base = base.clone();
        tokio::task::spawn_blocking(move || reap_stale(&base))
            .await
            .context("the stale-directory reaper task panicked")?;
    }
    let dir = base.join(&key);
    std::fs::create_dir_all(&dir).with_context(|| format!("could not create {}", dir.display()))?;
    let _lock = lock_exclusive(dir.join("lock")).await?;
    init_locked(&dir, owner)
        .await
        .with_context(|| format!("could not set up the shared test servers in {}", dir.display()))
}

/// Creates `$TMPDIR/intellifill-testkit`, world-writable with the sticky bit like /tmp, so runs
/// by different users can coexist.
fn create_base_dir(base: &Path) -> Result<()> {
    std::fs::create_dir_all(base)
        .with_context(|| format!("could not create {} (set TMPDIR to a writable directory)", base.display()))?;
    if let Ok(meta) = std::fs::metadata(base)
        && meta.permissions().mode() & 0o7777 != 0o1777
        && crate::user::effective_uid().ok() == Some(meta.uid())
    {
        let _ = std::fs::set_permissions(base, std::fs::Permissions::from_mode(0o1777));
    }
    Ok(())
}

/// Runs with `<dir>/lock` held.
async fn init_locked(dir: &Path, owner: u32) -> Result<Shared> {
    let owner_file = dir.join("owner");
    let record = owner_record(owner);
    match std::fs::read_to_string(&owner_file) {
        Ok(existing) if existing.trim() == record => {} // our run; its reaper is running
        existing => {
            if existing.is_ok() {
                // Same key but another owner (reused pid): leftovers of a dead run.
                stop_recorded_servers(dir);
                clear_dir_except_lock(dir)?;
            }
            write_atomically(&owner_file, &record)?;
            spawn_reaper(owner, dir)?;
        }
    }

    let state_file = dir.join("state");
    if let Ok(state) = std::fs::read_to_string(&state_file) {
        let (pg_port, redis_port) =
            parse_state(&state).ok_or_else(|| anyhow!("corrupt state file {}: {state:?}", state_file.display()))?;
        if listening(pg_port) && listening(redis_port) {
            return Ok(Shared { dir: dir.to_path_buf(), pg_port, redis_port });
        }
        tracing::warn!(
            pg_port,
            redis_port,
            "shared test servers are no longer reachable (did a test stop them?); starting new ones"
        );
        stop_recorded_servers(dir);
        clear_dir_except_lock(dir)?;
        write_atomically(&owner_file, &record)?;
    }

    // Until both servers are detached below, dropping them on an error path stops them.
    let pg = PgCluster::start_with(Some(dir), true, None).await?;
    let pg_pid = pg.pid().ok_or_else(|| anyhow!("postgres exited right after starting"))?;
    write_atomically(&dir.join("pg.pid"), &pg_pid.to_string())?;
    let redis = RedisServer::start_in(Some(dir), true, None).await?;
    let redis_pid = redis.pid().ok_or_else(|| anyhow!("redis-server exited right after starting"))?;
    write_atomically(&dir.join("redis.pid"), &redis_pid.to_string())?;
    let shared = Shared { dir: dir.to_path_buf(), pg_port: pg.port(), redis_port: redis.port() };
    write_atomically(&state_file, &format!("pg_port={}\nredis_port={}\n", shared.pg_port, shared.redis_port))?;
    // From now on the reaper is responsible for stopping them.
    let _ = pg.detach();
    let _ = redis.detach();
    tracing::info!(
        pg_port = shared.pg_port,
        redis_port = shared.redis_port,
        dir = %dir.display(),
        "started shared test servers"
    );
    Ok(shared)
}

fn parse_state(state: &str) -> Option<(u16, u16)> {
    let value = |key: &str| {
        state.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix('=')).and_then(|v| v.trim().parse::<u16>().ok())
    };
    Some((value("pg_port")?, value("redis_port")?))
}

fn listening(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
}

fn spawn_reaper(owner: u32, dir: &Path) -> Result<()> {
    Command::new("sh")
        .args(["-c", REAPER_SCRIPT, "intellifill-testkit-reaper"])
        .arg(owner.to_string())
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .context("could not spawn the cleanup process (`sh -c ...`) for the shared test servers")?;
    Ok(())
}

/// Stops the servers recorded in `<dir>/{pg,redis}.pid` (checking the pids still are servers).
fn stop_recorded_servers(dir: &Path) {
    let read_pid = |name: &str| -> Option<u32> { std::fs::read_to_string(dir.join(name)).ok()?.trim().parse().ok() };
    let mut pids = Vec::new();
    if let Some(pid) = read_pid("pg.pid").filter(|&p| process::cmdline_contains(p, "postgres")) {
        let _ = process::signal(pid, "QUIT");
        pids.push(pid);
    }
    if let Some(pid) = read_pid("redis.pid").filter(|&p| process::cmdline_contains(p, "redis")) {
        let _ = process::signal(pid, "KILL");
        pids.push(pid);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|&p| process::is_alive(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn clear_dir_except_lock(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("could not list {}", dir.display()))? {
        let entry = entry?;
        if entry.file_name() == "lock" {
            continue;
        }
        let path = entry.path();
        let result =
            if entry.file_type()?.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        result.with_context(|| format!("could not remove {}", path.display()))?;
    }
    Ok(())
}

/// Removes run directories whose owner is gone (and stops their servers). Best effort.
fn reap_stale(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        if !dir.is_dir() {
            continue;
        }
        let stale = match std::fs::read_to_string(dir.join("owner")) {
            Ok(record) => !owner_alive(&record),
            Err(_) => std::fs::metadata(&dir)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .is_some_and(|age| age > ORPHAN_AGE),
        };
        if !stale {
            continue;
        }
        // Someone is working in there right now (holding the lock): leave it alone.
        if let Ok(lock) = File::open(dir.join("lock"))
            && let Err(std::fs::TryLockError::WouldBlock) = lock.try_lock()
        {
            continue;
        }
        tracing::debug!(dir = %dir.display(), "removing stale shared test directory");
        stop_recorded_servers(&dir);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Takes an exclusive `flock` on `path` (created if needed) without blocking the runtime.
async fn lock_exclusive(path: PathBuf) -> Result<File> {
    let lock_path = path.clone();
    let task = tokio::task::spawn_blocking(move || -> std::io::Result<File> {
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&lock_path)?;
        file.lock()?;
        Ok(file)
    });
    match tokio::time::timeout(LOCK_TIMEOUT, task).await {
        Ok(Ok(Ok(file))) => Ok(file),
        Ok(Ok(Err(e))) => Err(e).with_context(|| format!("could not lock {}", path.display())),
        Ok(Err(e)) => Err(anyhow!("the task locking {} failed: {e}", path.display())),
        Err(_) => bail!(
            "timed out after {} s waiting for the lock {} held by another process of this test run \
             (is a `Shared::once` initializer stuck?)",
            LOCK_TIMEOUT.as_secs(),
            path.display()
        ),
    }
}

/// Writes `contents` to `path` via a temp file + rename, so readers never see partial files.
fn write_atomically(path: &Path, contents: &str) -> Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, contents).with_context(|| format!("could not write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("could not rename {} to {}", tmp.display(), path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(parse_state("pg_port=5\nredis_port=6\n"), Some((5, 6)));
        assert_eq!(parse_state("pg_port=5\n"), None);
        assert_ne!(once_file_name("a b"), once_file_name("a_b"));
        assert!(once_file_name("roles+template").starts_with("once-roles_template-"));
        assert!(owner_alive(&owner_record(std::process::id())));
        assert!(!owner_alive(&format!("{} 1", std::process::id())));
    }
}
