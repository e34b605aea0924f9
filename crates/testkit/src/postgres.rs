//! Throwaway PostgreSQL clusters.
//!
//! Each [`PgCluster`] is a private `initdb` cluster in a fresh directory, served by a `postgres`
//! child process listening on 127.0.0.1 at a free port, tuned for speed over durability
//! (`fsync=off`, …). The process is supervised directly (no `pg_ctl`) by a [`ManagedProcess`]: we
//! see it exit immediately if it cannot start (e.g. the port was taken in the meantime, which we
//! retry), and stop it with signals (SIGINT = fast shutdown, SIGQUIT = immediate shutdown).
//!
//! Directory layout (`<root>` is `<base_dir>/pg-<id>` or `$TMPDIR/testkit-pg-<id>`):
//! `<root>/data` (PGDATA, see [`PgCluster::data_dir`]), `<root>/sock` (Unix socket directory, so
//! that no shared `/var/run/postgresql` is needed) and `<root>/postgres.log`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};

use crate::managed::{ManagedProcess, ServerSpec, Signals};
use crate::process;
use crate::user;

/// How long `initdb` may take.
const INITDB_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest Unix socket path (`sun_path` is 108 bytes including the NUL) we are willing to use.
const MAX_SOCKET_PATH: usize = 100;

/// A running (or stopped) throwaway PostgreSQL cluster. Dropping it shuts the server down
/// immediately and deletes its directory (unless the caller chose the base directory).
#[derive(Debug)]
pub struct PgCluster {
    data: PathBuf,
    socket_dir: Option<PathBuf>,
    process: ManagedProcess,
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
        Self::start_with(base_dir, false, None).await
    }

    /// As [`start`](Self::start), on 127.0.0.1:`port` exactly (an error if it is taken).
    pub async fn start_on_port(base_dir: Option<&Path>, port: u16) -> Result<PgCluster> {
        Self::start_with(base_dir, false, Some(port)).await
    }

    /// As [`start`](Self::start); `own_process_group` puts the server in its own process group so
    /// that signals aimed at the starting process's group (Ctrl-C, test-runner timeouts) miss it.
    pub(crate) async fn start_with(
        base_dir: Option<&Path>,
        own_process_group: bool,
        port: Option<u16>,
    ) -> Result<PgCluster> {
        let bin_dir = crate::bins::pg_bin_dir()?;
        let spec = ServerSpec {
            name: "postgres",
            program: bin_dir.join("postgres"),
            dir_prefix: "pg",
            log_name: "postgres.log",
            run_as: user::postgres_run_as()?,
            own_process_group,
            ready: "accept connections".into(),
            poll_every: Duration::from_millis(30),
            probe_timeout: Duration::from_secs(2),
            signals: Signals {
                stop: ("INT", Duration::from_secs(30)),
                // Immediate shutdown: quick, and unlike SIGKILL it releases shared memory.
                kill: "QUIT",
                drop: ("QUIT", Duration::from_secs(10)),
                stop_overrun_is_error: true,
            },
        };
        // From here on, dropping `process` (or `cluster`) cleans the directory up on every error path.
        let process = ManagedProcess::new(spec, base_dir)?;
        let data = process.root().join("data");
        let sock = process.root().join("sock");
        let socket_dir = (sock.join(".s.PGSQL.65535").as_os_str().len() <= MAX_SOCKET_PATH).then_some(sock);
        let cluster = PgCluster { data, socket_dir, process };
        cluster.initdb(&bin_dir.join("initdb")).await?;
        if let Some(sock) = &cluster.socket_dir {
            std::fs::create_dir(sock).with_context(|| format!("could not create {}", sock.display()))?;
            if let Some(run_as) = cluster.process.run_as() {
                run_as.chown(sock)?;
            }
        }
        cluster.process.start(port, |cmd, port| cluster.configure(cmd, port), |_| cluster.probe()).await?;
        Ok(cluster)
    }

    async fn initdb(&self, initdb: &Path) -> Result<()> {
        let mut last = None;
        // C.UTF-8 gives Unicode-aware upper()/lower(); fall back to the C locale where it's missing.
        for locale in ["--locale=C.UTF-8", "--no-locale"] {
            let mut cmd = self.process.command(initdb);
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
                self.process.run_as().map(|r| format!(" running as uid {}", r.uid)).unwrap_or_default(),
                output.trim_end()
            ));
            if !locale_problem {
                break;
            }
            let _ = std::fs::remove_dir_all(&self.data);
        }
        Err(last.unwrap_or_else(|| anyhow!("initdb failed")))
    }

    /// The `postgres` command line for `port`: this cluster's data, loopback only, durability off.
    fn configure(&self, cmd: &mut Command, port: u16) -> Result<()> {
        cmd.arg("-D")
            .arg(&self.data)
            .arg("-p")
            .arg(port.to_string())
            .args(["-h", "127.0.0.1", "-k"])
            .arg(self.socket_dir.as_deref().unwrap_or(Path::new("")))
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"])
            .args(["-c", "max_connections=300", "-c", "logging_collector=off"]);
        Ok(())
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
        self.process.port()
    }

    /// The cluster's data directory (PGDATA). Its parent holds the log and the socket directory.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// The file the server logs to.
    pub fn log_path(&self) -> &Path {
        self.process.log()
    }

    /// `postgres://user[:password]@127.0.0.1:port/db` (components percent-encoded).
    pub fn url(&self, user: &str, password: Option<&str>, db: &str) -> String {
        url(self.port(), user, password, db)
    }

    /// The URL of `db` for the superuser `postgres` (trust authentication, no password).
    pub fn superuser_url(&self, db: &str) -> String {
        self.url("postgres", None, db)
    }

    delegate_to_process!(
        stop: "Fast shutdown (disconnects clients, keeps the data). A no-op if it is not running.", detachable
    );

    /// Starts the server again on the same port and data directory (stopping it first if it is
    /// running). Fails if another process took the port in the meantime.
    pub async fn restart(&self) -> Result<()> {
        self.process.restart(|cmd, port| self.configure(cmd, port), |_| self.probe()).await
    }
}

/// `postgres://user[:password]@127.0.0.1:port/db` (components percent-encoded), for a server or a
/// pooler on `port`.
pub(crate) fn url(port: u16, user: &str, password: Option<&str>, db: &str) -> String {
    let password = password.map(|p| format!(":{}", process::url_encode(p))).unwrap_or_default();
    format!("postgres://{}{password}@127.0.0.1:{port}/{}", process::url_encode(user), process::url_encode(db))
}
