//! Throwaway PostgreSQL clusters.
//!
//! Each [`PgCluster`] is a private `initdb` cluster in a fresh directory, served by a `postgres`
//! child process listening on 127.0.0.1 at a free port, tuned for speed over durability
//! (`fsync=off`, …). The process is supervised directly (no `pg_ctl`): we see it exit immediately
//! if it cannot start (e.g. the port was taken in the meantime, which we retry), and stop it with
//! signals (SIGINT = fast shutdown, SIGQUIT = immediate shutdown).
//!
//! Directory layout (`<root>` is `<base_dir>/pg-<id>` or `$TMPDIR/testkit-pg-<id>`):
//! `<root>/data` (PGDATA, see [`PgCluster::data_dir`]), `<root>/sock` (Unix socket directory, so
//! that no shared `/var/run/postgresql` is needed) and `<root>/postgres.log`.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use std::os::unix::process::CommandExt;

use crate::process::{self, ChildSlot, ChildState, Readiness, StartError};
use crate::user::{self, RunAs};

/// How long the server may take to accept connections after being spawned.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `initdb` may take.
const INITDB_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a fast shutdown may take.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How many fresh ports to try when the chosen one turns out to be taken.
const PORT_ATTEMPTS: usize = 5;
/// Longest Unix socket path (`sun_path` is 108 bytes including the NUL) we are willing to use.
const MAX_SOCKET_PATH: usize = 100;

/// A running (or stopped) throwaway PostgreSQL cluster. Dropping it shuts the server down
/// immediately and deletes its directory (unless the caller chose the base directory).
#[derive(Debug)]
pub struct PgCluster {
    root: PathBuf,
    data: PathBuf,
    socket_dir: Option<PathBuf>,
    log: PathBuf,
    port: u16,
    postgres_bin: PathBuf,
    run_as: Option<RunAs>,
    remove_on_drop: bool,
    own_process_group: bool,
    child: ChildSlot,
    ops: tokio::sync::Mutex<()>,
}

impl PgCluster {
    /// Runs `initdb` (trust auth, superuser `postgres`, UTF8, `--no-sync`) into a fresh directory
    /// under `base_dir` (or under the system temp dir when `None`), starts `postgres` on
    /// 127.0.0.1 at a free port with durability switched off and `max_connections=300`, logging
    /// to `postgres.log` in that directory, and waits until it accepts connections.
    ///
    /// With `base_dir = Some(..)` the fresh directory is kept when the cluster is dropped (the
    /// server is still stopped), so it can be inspected; otherwise it is deleted.
    pub async fn start(base_dir: Option<&Path>) -> Result<PgCluster> {
        Self::start_with(base_dir, false).await
    }

    /// As [`start`](Self::start); `own_process_group` puts the server in its own process group so
    /// that signals aimed at the starting process's group (Ctrl-C, test-runner timeouts) miss it.
    pub(crate) async fn start_with(base_dir: Option<&Path>, own_process_group: bool) -> Result<PgCluster> {
        let bin_dir = crate::bins::pg_bin_dir()?;
        let run_as = user::postgres_run_as()?;
        let (parent, remove_on_drop, prefix) = match base_dir {
            Some(dir) => (dir.to_path_buf(), false, "pg-"),
            None => (std::env::temp_dir(), true, "testkit-pg-"),
        };
        let parent =
            std::path::absolute(&parent).with_context(|| format!("invalid base directory {}", parent.display()))?;
        let root = process::fresh_dir(&parent, prefix)?;
        let sock = root.join("sock");
        let socket_dir = (sock.join(".s.PGSQL.65535").as_os_str().len() <= MAX_SOCKET_PATH).then_some(sock);

        // From here on, dropping `cluster` cleans the directory up on every error path.
        let mut cluster = PgCluster {
            data: root.join("data"),
            log: root.join("postgres.log"),
            root,
            socket_dir,
            port: 0,
            postgres_bin: bin_dir.join("postgres"),
            run_as,
            remove_on_drop,
            own_process_group,
            child: ChildSlot::default(),
            ops: tokio::sync::Mutex::new(()),
        };
        if let Some(run_as) = run_as {
            run_as.chown(&cluster.root)?;
            run_as.check_traversable(&cluster.root)?;
        }
        cluster.initdb(&bin_dir.join("initdb")).await?;
        if let Some(sock) = &cluster.socket_dir {
            std::fs::create_dir(sock).with_context(|| format!("could not create {}", sock.display()))?;
            if let Some(run_as) = run_as {
                run_as.chown(sock)?;
            }
        }

        for attempt in 1..=PORT_ATTEMPTS {
            cluster.port = crate::free_port()?;
            match cluster.spawn_and_wait().await {
                Ok(()) => {
                    tracing::debug!(port = cluster.port, dir = %cluster.root.display(), "postgres started");
                    return Ok(cluster);
                }
                Err(StartError::PortInUse) => {
                    tracing::debug!(port = cluster.port, attempt, "postgres port was taken; retrying");
                }
                Err(StartError::Other(e)) => return Err(e),
            }
        }
        bail!(
            "postgres could not bind a free port on 127.0.0.1 in {PORT_ATTEMPTS} attempts (ports kept \
             being taken); log tail of {}:\n{}",
            cluster.log.display(),
            cluster.log_tail(20)
        )
    }

    /// A command for a PostgreSQL binary, run as the right user from the cluster's directory.
    fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(&self.root);
        process::sanitize_env(&mut cmd);
        if let Some(run_as) = self.run_as {
            run_as.apply(&mut cmd);
        }
        cmd
    }

    async fn initdb(&self, initdb: &Path) -> Result<()> {
        let mut last = None;
        // C.UTF-8 gives Unicode-aware upper()/lower(); fall back to the C locale where it's missing.
        for locale in ["--locale=C.UTF-8", "--no-locale"] {
            let mut cmd = self.command(initdb);
            cmd.arg("-D").arg(&self.data).args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync", locale]);
            let out = process::run_with_timeout(cmd, INITDB_TIMEOUT, "initdb").await?;
            if out.status.success() {
                return Ok(());
            }
            let output = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            let locale_problem = output.contains("locale");
            last = Some(anyhow!(
                "initdb -D {} failed ({}){}:\n{}",
                self.data.display(),
                out.status,
                self.run_as.map(|r| format!(" running as uid {}", r.uid)).unwrap_or_default(),
                output.trim_end()
            ));
            if !locale_problem {
                break;
            }
            let _ = std::fs::remove_dir_all(&self.data);
        }
        Err(last.unwrap_or_else(|| anyhow!("initdb failed")))
    }

    /// Spawns `postgres` on `self.port` and waits until it serves this cluster's data directory.
    async fn spawn_and_wait(&self) -> Result<(), StartError> {
        let log_offset = process::file_len(&self.log);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("could not open {}", self.log.display()))?;
        if let Some(run_as) = self.run_as {
            run_as.chown(&self.log)?;
        }
        let log_err =
            log.try_clone().with_context(|| format!("could not duplicate the handle of {}", self.log.display()))?;
        let mut cmd = self.command(&self.postgres_bin);
        cmd.arg("-D")
            .arg(&self.data)
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-h", "127.0.0.1", "-k"])
            .arg(self.socket_dir.as_deref().unwrap_or(Path::new("")))
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"])
            .args(["-c", "max_connections=300", "-c", "logging_collector=off"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        if self.own_process_group {
            cmd.process_group(0);
        }
        let child = cmd.spawn().with_context(|| format!("could not spawn {}", self.postgres_bin.display()))?;
        self.child.set(child);

        let readiness = Readiness {
            name: "postgres".into(),
            ready: format!("accept connections on 127.0.0.1:{}", self.port),
            log: &self.log,
            log_offset,
            timeout: START_TIMEOUT,
            poll_every: Duration::from_millis(30),
            stop_signal: "QUIT",
            probe_timeout: Duration::from_secs(2),
        };
        process::wait_ready(&self.child, readiness, || self.probe()).await
    }

    /// Connects as the superuser; `Ok(true)` if the server on our port serves our data directory.
    async fn probe(&self) -> Result<bool> {
        let (client, connection) =
            tokio_postgres::connect(&self.superuser_url("postgres"), tokio_postgres::NoTls).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let row = client.query_one("SHOW data_directory", &[]).await?;
        let served: String = row.try_get(0)?;
        let same = |a: &Path, b: &Path| match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
            (Ok(a), Ok(b)) => a == b,
            _ => a == b,
        };
        Ok(same(Path::new(&served), &self.data))
    }

    /// The TCP port on 127.0.0.1 (stable across [`restart`](Self::restart)).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's data directory (PGDATA). Its parent holds the log and the socket directory.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// The file the server logs to.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// `postgres://user[:password]@127.0.0.1:port/db` (components percent-encoded).
    pub fn url(&self, user: &str, password: Option<&str>, db: &str) -> String {
        let password = password.map(|p| format!(":{}", process::url_encode(p))).unwrap_or_default();
        format!(
            "postgres://{}{password}@127.0.0.1:{}/{}",
            process::url_encode(user),
            self.port,
            process::url_encode(db)
        )
    }

    /// The URL of `db` for the superuser `postgres` (trust authentication, no password).
    pub fn superuser_url(&self, db: &str) -> String {
        self.url("postgres", None, db)
    }

    /// Fast shutdown (disconnects clients, keeps the data). A no-op if it is not running.
    pub async fn stop(&self) -> Result<()> {
        let _ops = self.ops.lock().await;
        self.stop_locked().await
    }

    async fn stop_locked(&self) -> Result<()> {
        if self.child.signal_and_wait("INT", STOP_TIMEOUT).await? {
            return Ok(());
        }
        let _ = self.child.signal_and_wait("QUIT", Duration::from_secs(5)).await;
        bail!(
            "postgres on port {} did not finish a fast shutdown within {} s (sent SIGQUIT); log tail of {}:\n{}",
            self.port,
            STOP_TIMEOUT.as_secs(),
            self.log.display(),
            self.log_tail(20)
        )
    }

    /// Starts the server again on the same port and data directory (stopping it first if it is
    /// running). Fails if another process took the port in the meantime.
    pub async fn restart(&self) -> Result<()> {
        let _ops = self.ops.lock().await;
        self.stop_locked().await?;
        match self.spawn_and_wait().await {
            Ok(()) => Ok(()),
            Err(StartError::PortInUse) => {
                bail!("cannot restart postgres on 127.0.0.1:{}: the port is now in use by another process", self.port)
            }
            Err(StartError::Other(e)) => Err(e),
        }
    }

    /// The last `lines` lines of the server log, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        process::tail_file(&self.log, lines)
    }

    /// The server's pid, if it is running.
    pub(crate) fn pid(&self) -> Option<u32> {
        match self.child.state() {
            ChildState::Running(pid) => Some(pid),
            ChildState::Stopped(_) => None,
        }
    }

    /// Leaves the server running and its directory in place when `self` is dropped; whoever
    /// calls this takes over responsibility for stopping it. Returns its pid.
    pub(crate) fn detach(mut self) -> Option<u32> {
        self.remove_on_drop = false;
        self.child.abandon()
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        // Immediate shutdown: quick, and unlike SIGKILL it releases shared memory.
        self.child.stop_blocking("QUIT", Duration::from_secs(10));
        if self.remove_on_drop {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}
