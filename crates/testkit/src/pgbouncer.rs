//! Throwaway PgBouncer in front of a throwaway PostgreSQL.
//!
//! Production may put PgBouncer in *transaction* pooling mode between the server and Postgres, which
//! breaks code that relies on session state (session-level `SET`, named prepared statements,
//! advisory locks): consecutive transactions of one client may run on different server connections,
//! and a server connection serves many clients. A [`PgBouncer`] lets tests run the real thing:
//! a `pgbouncer` child process on 127.0.0.1 at a free port, forwarding every database to the
//! Postgres at a given port, with its config, `userlist.txt`, log and pidfile in a private temp
//! directory (`$TMPDIR/testkit-pgbouncer-<id>`, deleted on drop).
//!
//! * Clients authenticate with SCRAM-SHA-256 against `userlist.txt`, which holds the passwords in
//!   plain text: only then can PgBouncer also log in *upstream* with SCRAM as the same user (it
//!   cannot derive a SCRAM proof from a stored SCRAM verifier without the client's help).
//! * Like `postgres`, `pgbouncer` refuses to run as root, so when this process is root it runs as
//!   the `postgres` system user (see [`crate::user`]), which gets the temp directory.
//! * Readiness: we log in to PgBouncer's admin console (database `pgbouncer`, the first user is a
//!   `stats_users` member) and check via `SHOW CONFIG` that the answering process writes *our* log
//!   file (not some other test's PgBouncer that grabbed the port); then we log in *through* it to
//!   the upstream database `postgres`, so a wrong password or an unreachable Postgres fails `start`
//!   with a clear error instead of failing the first query of the test. (pgbouncer keeps a client
//!   waiting while the server is unreachable, so we first check directly that the upstream port
//!   accepts TCP connections, giving up after 5 s.)
//! * Config beyond the essentials: `server_login_retry = 1` (default 15 s) so that pgbouncer is
//!   usable again about a second after an upstream outage ends; `ignore_startup_parameters =
//!   extra_float_digits` only: `application_name` is tracked by pgbouncer anyway, and `options` is
//!   deliberately refused (as 1.18 does by default) rather than dropped, since dropping would
//!   silently lose `-c` settings a direct connection would apply.
//! * Stopping sends SIGTERM (an immediate shutdown in PgBouncer ≤ 1.22; newer versions wait for
//!   clients there, so SIGKILL follows after a few seconds). PgBouncer keeps no data, so either is
//!   fine.
//! * The process itself (directory, log, free port, restart, stop, drop) is a [`ManagedProcess`].

use std::fmt;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use tokio_postgres::SimpleQueryMessage;
use tokio_postgres::error::SqlState;

use crate::managed::{ManagedProcess, ServerSpec, Signals};
use crate::user;

/// How long pgbouncer may take to log in upstream after it accepts logins.
const UPSTREAM_LOGIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the upstream port may refuse connections before `start` gives up.
const UPSTREAM_LISTEN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait for pgbouncer to exit after SIGTERM before killing it.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a single login attempt during start-up may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// A running (or stopped) throwaway PgBouncer. Dropping it stops the process and deletes its
/// directory.
pub struct PgBouncer {
    config: PathBuf,
    userlist: PathBuf,
    pidfile: PathBuf,
    upstream_port: u16,
    pool_size: u32,
    /// The first configured user: a `stats_users` member, used for the readiness checks.
    probe_user: String,
    probe_password: String,
    process: ManagedProcess,
}

impl fmt::Debug for PgBouncer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgBouncer")
            .field("root", &self.process.root())
            .field("port", &self.port())
            .field("upstream_port", &self.upstream_port)
            .field("run_as", &self.process.run_as())
            .finish_non_exhaustive()
    }
}

impl PgBouncer {
    /// Starts `pgbouncer` on 127.0.0.1 at a free port in transaction pooling mode in front of the
    /// Postgres at 127.0.0.1:`upstream_port`, for every database (`* = host=127.0.0.1
    /// port=<upstream_port>`), accepting `users` (name, password) with SCRAM-SHA-256 and logging in
    /// upstream as the same user with the same password. `pool_size` is `default_pool_size`: the
    /// most server connections per (database, user) pair. Waits until it accepts logins and until
    /// the first user can log in through it to the database `postgres`, so that user must exist
    /// upstream (with `LOGIN` and that password, if Postgres asks for one).
    pub async fn start(upstream_port: u16, users: &[(&str, &str)], pool_size: u32) -> Result<PgBouncer> {
        validate(users, pool_size)?;
        let (probe_user, probe_password) = users[0];
        let spec = ServerSpec {
            name: "pgbouncer",
            program: crate::bins::pgbouncer()?,
            dir_prefix: "pgbouncer",
            log_name: "pgbouncer.log",
            run_as: user::postgres_run_as().context("pgbouncer, too, refuses to run as root")?,
            own_process_group: false,
            ready: format!("accept a login as `{probe_user}` to its admin console"),
            poll_every: Duration::from_millis(30),
            probe_timeout: PROBE_TIMEOUT,
            signals: Signals {
                stop: ("TERM", STOP_TIMEOUT),
                kill: "KILL",
                drop: ("TERM", STOP_TIMEOUT),
                stop_overrun_is_error: false,
            },
        };
        // From here on, dropping `process` (or `bouncer`) cleans the directory up on every error path.
        let process = ManagedProcess::new(spec, None)?;
        let bouncer = PgBouncer {
            config: process.root().join("pgbouncer.ini"),
            userlist: process.root().join("userlist.txt"),
            pidfile: process.root().join("pgbouncer.pid"),
            upstream_port,
            pool_size,
            probe_user: probe_user.to_owned(),
            probe_password: probe_password.to_owned(),
            process,
        };
        bouncer.write_private(&bouncer.userlist, &userlist_txt(users))?;
        bouncer.process.start(None, |cmd, port| bouncer.configure(cmd, port), |_| bouncer.probe()).await?;
        bouncer.check_upstream().await?;
        Ok(bouncer)
    }

    /// Writes the config for `port` (and removes a stale pidfile, whose pid, if reused, would make
    /// pgbouncer refuse to start); the command line then only names the config file.
    fn configure(&self, cmd: &mut Command, port: u16) -> Result<()> {
        let _ = std::fs::remove_file(&self.pidfile);
        self.write_private(&self.config, &self.config_ini(port))?;
        // `-q`: pgbouncer itself writes `logfile`; stderr (same file) then only gets what it prints
        // before it has read the config.
        cmd.arg("-q").arg(&self.config);
        Ok(())
    }

    /// The configuration file (INI) pgbouncer runs with on `port`.
    fn config_ini(&self, port: u16) -> String {
        format!(
            "; Written by testkit::PgBouncer::start.\n\
             [databases]\n\
             * = host=127.0.0.1 port={upstream}\n\
             \n\
             [pgbouncer]\n\
             logfile = {log}\n\
             pidfile = {pidfile}\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             pool_mode = transaction\n\
             auth_type = scram-sha-256\n\
             auth_file = {userlist}\n\
             stats_users = {probe_user}\n\
             max_client_conn = 500\n\
             default_pool_size = {pool_size}\n\
             server_reset_query =\n\
             server_login_retry = 1\n\
             ignore_startup_parameters = extra_float_digits\n",
            upstream = self.upstream_port,
            log = self.process.log().display(),
            pidfile = self.pidfile.display(),
            userlist = self.userlist.display(),
            probe_user = self.probe_user,
            pool_size = self.pool_size,
        )
    }

    /// Writes `contents` to a file only pgbouncer's user (and root) can read.
    fn write_private(&self, path: &Path, contents: &str) -> Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("could not create {}", path.display()))?;
        file.write_all(contents.as_bytes()).with_context(|| format!("could not write {}", path.display()))?;
        if let Some(run_as) = self.process.run_as() {
            run_as.chown(path)?;
        }
        Ok(())
    }

    /// Logs in to the admin console; `Ok(true)` if the pgbouncer on our port writes our log file.
    async fn probe(&self) -> Result<bool> {
        let url = self.url(&self.probe_user, &self.probe_password, "pgbouncer");
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        // The console speaks only the simple query protocol.
        let logfile = client.simple_query("SHOW CONFIG").await?.into_iter().find_map(|m| match m {
            SimpleQueryMessage::Row(row) if row.get("key") == Some("logfile") => row.get("value").map(str::to_owned),
            _ => None,
        });
        Ok(logfile.as_deref().map(Path::new) == Some(self.process.log()))
    }

    /// Logs in through pgbouncer to the upstream database `postgres` as the first user, retrying
    /// while Postgres is unreachable or starting up.
    async fn check_upstream(&self) -> Result<()> {
        // pgbouncer keeps a client waiting while it cannot reach the server, so find out directly
        // whether anything listens upstream (briefly retrying, e.g. during a Postgres restart).
        let deadline = Instant::now() + UPSTREAM_LISTEN_TIMEOUT;
        while let Err(e) = tokio::net::TcpStream::connect(("127.0.0.1", self.upstream_port)).await {
            if Instant::now() >= deadline {
                self.process.kill().await;
                bail!(
                    "nothing accepts connections on 127.0.0.1:{} ({e}), where PgBouncer::start was told Postgres \
                     runs: start the PgCluster first and pass its port()",
                    self.upstream_port
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let deadline = Instant::now() + UPSTREAM_LOGIN_TIMEOUT;
        let last_error = loop {
            let error = match tokio::time::timeout(PROBE_TIMEOUT, self.login_upstream()).await {
                Ok(Ok(())) => return Ok(()),
                // An answer from Postgres (no such role, wrong password, ...) won't change by waiting,
                // unless it is still starting up.
                Ok(Err(e)) if e.as_db_error().is_some() && e.code() != Some(&SqlState::CANNOT_CONNECT_NOW) => {
                    break format!("{e:#}");
                }
                Ok(Err(e)) => format!("{e:#}"),
                Err(_) => format!("no answer within {} s", PROBE_TIMEOUT.as_secs()),
            };
            if Instant::now() >= deadline {
                break error;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        self.process.kill().await;
        bail!(
            "pgbouncer started on 127.0.0.1:{}, but logging in through it as `{}` to the database `postgres` at \
             127.0.0.1:{} failed (last error: {}). Is Postgres running on that port, and does the role exist there \
             with LOGIN and the password given to PgBouncer::start? Log tail of {}:\n{}",
            self.port(),
            self.probe_user,
            self.upstream_port,
            last_error,
            self.process.log().display(),
            self.log_tail(20)
        )
    }

    async fn login_upstream(&self) -> Result<(), tokio_postgres::Error> {
        let url = self.url(&self.probe_user, &self.probe_password, "postgres");
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client.simple_query("SELECT 1").await?;
        Ok(())
    }

    /// The TCP port on 127.0.0.1 (stable across [`restart`](Self::restart)).
    pub fn port(&self) -> u16 {
        self.process.port()
    }

    /// `postgres://user:password@127.0.0.1:port/db` (components percent-encoded).
    pub fn url(&self, user: &str, password: &str, db: &str) -> String {
        crate::postgres::url(self.port(), user, Some(password), db)
    }

    delegate_to_process!(
        stop: "Stops pgbouncer (SIGTERM, then SIGKILL after a few seconds), which drops all client and \
        server connections. A no-op if it is not running."
    );

    /// Starts pgbouncer again on the same port with the same configuration (stopping it first if
    /// it is running). Fails if another process took the port in the meantime.
    pub async fn restart(&self) -> Result<()> {
        self.process.restart(|cmd, port| self.configure(cmd, port), |_| self.probe()).await
    }
}

/// Rejects what `userlist.txt` and the config file cannot express.
fn validate(users: &[(&str, &str)], pool_size: u32) -> Result<()> {
    ensure!(!users.is_empty(), "PgBouncer::start needs at least one (user, password) pair to accept");
    ensure!(pool_size > 0, "PgBouncer::start: pool_size must be at least 1");
    for (name, password) in users {
        ensure!(
            !name.is_empty() && !name.contains([',', '"']) && !name.chars().any(char::is_control),
            "PgBouncer::start: user name {name:?} is not supported (use a non-empty name without commas, \
             double quotes or control characters)"
        );
        ensure!(
            !password.is_empty() && !password.chars().any(char::is_control),
            "PgBouncer::start: the password of {name:?} must be non-empty and free of control characters \
             (pgbouncer's SCRAM authentication needs a password, and userlist.txt is line-based)"
        );
    }
    Ok(())
}

/// `"user" "password"` lines; a double quote inside a password is written twice.
fn userlist_txt(users: &[(&str, &str)]) -> String {
    users.iter().map(|(name, password)| format!("\"{name}\" \"{}\"\n", password.replace('"', "\"\""))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userlist_quotes_and_validation() {
        assert_eq!(userlist_txt(&[("app", "pa\"ss"), ("b", "x")]), "\"app\" \"pa\"\"ss\"\n\"b\" \"x\"\n");
        assert!(validate(&[("app", "secret")], 2).is_ok());
        assert!(validate(&[], 2).is_err());
        assert!(validate(&[("app", "secret")], 0).is_err());
        assert!(validate(&[("a,b", "secret")], 1).is_err());
        assert!(validate(&[("app", "")], 1).is_err());
        assert!(validate(&[("app", "line\nbreak")], 1).is_err());
    }
}
