//! One throwaway server process on 127.0.0.1, with its private directory and log file.
//!
//! [`ManagedProcess`] is what every server of the kit shares: it creates the fresh directory (given to
//! the user the server runs as), spawns the server with stdio appended to the log file, retries on a
//! fresh port while the chosen one turns out to be taken, waits until the server's readiness probe
//! succeeds (every failure carries the log tail), stops, restarts on the same port, and on drop stops
//! the server and deletes the directory unless it was detached or the caller chose the base directory.
//! A server module supplies only what is its own: the command line for a port, the readiness probe,
//! the signals it wants, and its URLs.
//!
//! Servers are spawned with [`std::process::Command`] rather than `tokio::process`, so that a server
//! outlives the tokio runtime that started it (each `#[tokio::test]` has its own runtime, while shared
//! servers live for the whole run).

/// The methods a server of the kit delegates to its `process` ([`ManagedProcess`]) field: `stop` (documented
/// by the text given), `log_tail`, and with `detachable` also `pid` and `detach`.
macro_rules! delegate_to_process {
    (stop: $stop:literal $(, $detachable:ident)?) => {
        #[doc = $stop]
        pub async fn stop(&self) -> anyhow::Result<()> {
            self.process.stop().await
        }

        /// The last `lines` lines of the server's log, for error messages.
        pub fn log_tail(&self, lines: usize) -> String {
            self.process.log_tail(lines)
        }
        $(delegate_to_process!(@ $detachable);)?
    };
    (@ detachable) => {
        /// The server's pid, if it is running.
        pub(crate) fn pid(&self) -> Option<u32> {
            self.process.pid()
        }

        /// Leaves the server running and its directory in place when `self` is dropped; whoever calls this
        /// takes over responsibility for stopping it. Returns its pid.
        pub(crate) fn detach(mut self) -> Option<u32> {
            self.process.detach()
        }
    };
}

use std::fs::OpenOptions;
use std::future::Future;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use crate::process;
use crate::user::RunAs;

/// How long a server may take to become ready after being spawned.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How many fresh ports to try when the chosen one turns out to be taken.
const PORT_ATTEMPTS: usize = 5;
/// How long to wait after the kill signal before SIGKILL.
const KILL_TIMEOUT: Duration = Duration::from_secs(5);
/// Lines of the log quoted in error messages.
const LOG_TAIL_LINES: usize = 20;

/// What a server module tells [`ManagedProcess::new`] about its server.
#[derive(Debug)]
pub(crate) struct ServerSpec {
    /// For messages: `postgres`, `redis-server`, `pgbouncer`.
    pub name: &'static str,
    pub program: PathBuf,
    /// The fresh directory is `<base_dir>/<dir_prefix>-<id>` (kept on drop) or, without a base
    /// directory, `$TMPDIR/testkit-<dir_prefix>-<id>` (deleted on drop).
    pub dir_prefix: &'static str,
    /// The log file's name inside that directory.
    pub log_name: &'static str,
    /// The user to run as (PostgreSQL and PgBouncer refuse to run as root).
    pub run_as: Option<RunAs>,
    /// Puts the server in its own process group, so that signals aimed at the starting process's
    /// group (Ctrl-C, test-runner timeouts) miss it.
    pub own_process_group: bool,
    /// What ready means, for messages, completed with ` on 127.0.0.1:<port>`: `accept connections`.
    pub ready: String,
    pub poll_every: Duration,
    /// Bound on one readiness probe.
    pub probe_timeout: Duration,
    pub signals: Signals,
}

/// Which signals stop the server, and how long each may take.
#[derive(Debug)]
pub(crate) struct Signals {
    /// [`ManagedProcess::stop`]: the signal and how long the server may take to exit after it.
    pub stop: (&'static str, Duration),
    /// Ends a server that failed to start or overran `stop` (`QUIT` for Postgres: an immediate
    /// shutdown, which unlike SIGKILL releases shared memory); SIGKILL follows after 5 s.
    pub kill: &'static str,
    /// Drop: the signal and how long to wait before SIGKILL.
    pub drop: (&'static str, Duration),
    /// Whether a `stop` that needed the kill signal fails (the server may not have kept its data)
    /// or is an expected outcome (a server that keeps no data).
    pub stop_overrun_is_error: bool,
}

/// A server child process with its directory and log (see the module docs).
#[derive(Debug)]
pub(crate) struct ManagedProcess {
    spec: ServerSpec,
    root: PathBuf,
    log: PathBuf,
    remove_on_drop: bool,
    /// The TCP port on 127.0.0.1, chosen by [`start`](Self::start) and kept by restarts.
    port: AtomicU16,
    child: ChildSlot,
    /// Serialises stop and restart.
    ops: tokio::sync::Mutex<()>,
}

impl ManagedProcess {
    /// Creates the server's fresh directory under `base_dir` (or the system temp dir) and hands it
    /// to `spec.run_as`; spawns nothing yet.
    pub(crate) fn new(spec: ServerSpec, base_dir: Option<&Path>) -> Result<ManagedProcess> {
        let (parent, remove_on_drop, prefix) = match base_dir {
            Some(dir) => (dir.to_path_buf(), false, format!("{}-", spec.dir_prefix)),
            None => (std::env::temp_dir(), true, format!("testkit-{}-", spec.dir_prefix)),
        };
        let parent =
            std::path::absolute(&parent).with_context(|| format!("invalid base directory {}", parent.display()))?;
        let root = process::fresh_dir(&parent, &prefix)?;
        // From here on, dropping `managed` cleans the directory up on every error path.
        let managed = ManagedProcess {
            log: root.join(spec.log_name),
            root,
            spec,
            remove_on_drop,
            port: AtomicU16::new(0),
            child: ChildSlot::default(),
            ops: tokio::sync::Mutex::new(()),
        };
        if let Some(run_as) = managed.spec.run_as {
            run_as.chown(&managed.root)?;
            run_as.check_traversable(&managed.root)?;
        }
        Ok(managed)
    }

    /// The server's private directory.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// The file the server's stdout and stderr are appended to.
    pub(crate) fn log(&self) -> &Path {
        &self.log
    }

    /// The user the server runs as, if not this process's.
    pub(crate) fn run_as(&self) -> Option<RunAs> {
        self.spec.run_as
    }

    /// The TCP port on 127.0.0.1 (0 before [`start`](Self::start)).
    pub(crate) fn port(&self) -> u16 {
        self.port.load(Ordering::Relaxed)
    }

    /// A command for `program` (the server or a helper such as `initdb`): run from the server's
    /// directory as its user, without `PG*` variables and with English messages.
    pub(crate) fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(&self.root);
        process::sanitize_env(&mut cmd);
        if let Some(run_as) = self.spec.run_as {
            run_as.apply(&mut cmd);
        }
        cmd
    }

    /// Spawns the server on a free port and waits until `probe` says it is ready, retrying with a
    /// fresh port while the chosen one turns out to be taken. `configure` adds the command line for
    /// a port (and may write files the server reads); it runs before every spawn, restarts included.
    /// `probe` gets the server's pid and answers `Ok(true)` when our server is ready, `Ok(false)`
    /// when another process answers on our port (ours cannot have bound it).
    /// With `fixed = Some(port)`, that port only: taken, it fails at once saying so.
    pub(crate) async fn start<C, P, Fut>(&self, fixed: Option<u16>, configure: C, probe: P) -> Result<()>
    where
        C: Fn(&mut Command, u16) -> Result<()>,
        P: Fn(u32) -> Fut,
        Fut: Future<Output = Result<bool>>,
    {
        let _ops = self.ops.lock().await;
        for attempt in 1..=PORT_ATTEMPTS {
            self.port.store(fixed.map_or_else(crate::free_port, Ok)?, Ordering::Relaxed);
            match self.spawn_and_wait(&configure, &probe).await {
                Err(StartError::PortInUse) if fixed.is_some() => {
                    bail!("{} cannot listen on 127.0.0.1:{}: the port is taken", self.spec.name, self.port())
                }
                Ok(()) => {
                    tracing::debug!(port = self.port(), dir = %self.root.display(), "{} started", self.spec.name);
                    return Ok(());
                }
                Err(StartError::PortInUse) => {
                    tracing::debug!(port = self.port(), attempt, "{} port was taken; retrying", self.spec.name);
                }
                Err(StartError::Other(e)) => return Err(e),
            }
        }
        bail!(
            "{} could not bind a free port on 127.0.0.1 in {PORT_ATTEMPTS} attempts (ports kept being taken); \
             log tail of {}:\n{}",
            self.spec.name,
            self.log.display(),
            self.log_tail(LOG_TAIL_LINES)
        )
    }

    /// Starts the server again on the same port (stopping it first if it is running), with the
    /// same `configure` and `probe` as [`start`](Self::start). Fails if another process took the
    /// port in the meantime.
    pub(crate) async fn restart<C, P, Fut>(&self, configure: C, probe: P) -> Result<()>
    where
        C: Fn(&mut Command, u16) -> Result<()>,
        P: Fn(u32) -> Fut,
        Fut: Future<Output = Result<bool>>,
    {
        let _ops = self.ops.lock().await;
        self.stop_locked().await?;
        match self.spawn_and_wait(&configure, &probe).await {
            Ok(()) => Ok(()),
            Err(StartError::PortInUse) => bail!(
                "cannot restart {} on 127.0.0.1:{}: the port is now in use by another process",
                self.spec.name,
                self.port()
            ),
            Err(StartError::Other(e)) => Err(e),
        }
    }

    /// Sends the stop signal and waits; a server that overruns gets the kill signal. A no-op if the
    /// server is not running.
    pub(crate) async fn stop(&self) -> Result<()> {
        let _ops = self.ops.lock().await;
        self.stop_locked().await
    }

    async fn stop_locked(&self) -> Result<()> {
        let (signal, timeout) = self.spec.signals.stop;
        let exited = self.child.signal_and_wait(signal, timeout).await;
        if let Ok(true) = exited {
            return Ok(());
        }
        self.kill().await;
        if !self.spec.signals.stop_overrun_is_error {
            return Ok(());
        }
        exited?;
        bail!(
            "{} on port {} did not exit within {} s of SIG{signal} (sent SIG{}); log tail of {}:\n{}",
            self.spec.name,
            self.port(),
            timeout.as_secs(),
            self.spec.signals.kill,
            self.log.display(),
            self.log_tail(LOG_TAIL_LINES)
        )
    }

    /// Ends the server at once: the kill signal, SIGKILL after 5 s. Never fails.
    pub(crate) async fn kill(&self) {
        self.child.terminate(self.spec.signals.kill, KILL_TIMEOUT).await;
    }

    /// The server's pid, if it is running.
    pub(crate) fn pid(&self) -> Option<u32> {
        match self.child.state() {
            ChildState::Running(pid) => Some(pid),
            ChildState::Stopped(_) => None,
        }
    }

    /// Leaves the server running and its directory in place when `self` is dropped; whoever calls
    /// this takes over responsibility for stopping it. Returns its pid.
    pub(crate) fn detach(&mut self) -> Option<u32> {
        self.remove_on_drop = false;
        self.child.abandon()
    }

    /// The last `lines` lines of the server log.
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        process::tail_file(&self.log, lines)
    }

    /// `postgres`, or `postgres (running as uid 105)` when it runs as another user.
    fn display_name(&self) -> String {
        match self.spec.run_as {
            Some(run_as) => format!("{} (running as uid {})", self.spec.name, run_as.uid),
            None => self.spec.name.to_owned(),
        }
    }

    /// Spawns the server on the current port, its output appended to the log, and waits until ready.
    async fn spawn_and_wait<C, P, Fut>(&self, configure: &C, probe: &P) -> Result<(), StartError>
    where
        C: Fn(&mut Command, u16) -> Result<()>,
        P: Fn(u32) -> Fut,
        Fut: Future<Output = Result<bool>>,
    {
        let log_offset = process::file_len(&self.log);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("could not open {}", self.log.display()))?;
        if let Some(run_as) = self.spec.run_as {
            run_as.chown(&self.log)?;
        }
        let log_err =
            log.try_clone().with_context(|| format!("could not duplicate the handle of {}", self.log.display()))?;
        let mut cmd = self.command(&self.spec.program);
        configure(&mut cmd, self.port())?;
        cmd.stdin(Stdio::null()).stdout(log).stderr(log_err);
        if self.spec.own_process_group {
            cmd.process_group(0);
        }
        let child = cmd.spawn().with_context(|| format!("could not spawn {}", self.spec.program.display()))?;
        let pid = child.id();
        self.child.set(child);
        self.wait_ready(log_offset, || probe(pid)).await
    }

    /// Probes until the server is ready, its port turns out taken, it exits, or the start timeout
    /// passes (then it is killed); every failure carries the tail of the server's log. Only what
    /// this attempt wrote to the log (from `log_offset` on) is searched for a port clash.
    async fn wait_ready<F, Fut>(&self, log_offset: u64, mut probe: F) -> Result<(), StartError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<bool>>,
    {
        let ready = format!("{} on 127.0.0.1:{}", self.spec.ready, self.port());
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let ChildState::Stopped(status) = self.child.state() {
                if process::read_from(&self.log, log_offset).contains("Address already in use") {
                    return Err(StartError::PortInUse);
                }
                return Err(StartError::Other(anyhow!(
                    "{} exited ({}) before it could {ready}; log tail of {}:\n{}",
                    self.display_name(),
                    status.map(|s| s.to_string()).unwrap_or_else(|| "status unknown".into()),
                    self.log.display(),
                    self.log_tail(LOG_TAIL_LINES)
                )));
            }
            let last_error = match tokio::time::timeout(self.spec.probe_timeout, probe()).await {
                Ok(Ok(true)) => return Ok(()),
                Ok(Ok(false)) => {
                    self.kill().await;
                    return Err(StartError::PortInUse);
                }
                Ok(Err(e)) => format!("{e:#}"),
                Err(_) => format!("no answer within {} s", self.spec.probe_timeout.as_secs()),
            };
            if Instant::now() >= deadline {
                self.kill().await;
                return Err(StartError::Other(anyhow!(
                    "{} did not {ready} within {} s (last error: {last_error}); log tail of {}:\n{}",
                    self.display_name(),
                    START_TIMEOUT.as_secs(),
                    self.log.display(),
                    self.log_tail(LOG_TAIL_LINES)
                )));
            }
            tokio::time::sleep(self.spec.poll_every).await;
        }
    }
}

impl Drop for ManagedProcess {
    fn drop(&mut self) {
        let (signal, timeout) = self.spec.signals.drop;
        self.child.stop_blocking(signal, timeout);
        if self.remove_on_drop {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

/// Why a start attempt failed.
enum StartError {
    /// The port was taken by someone else; retry with another one.
    PortInUse,
    Other(anyhow::Error),
}

impl From<anyhow::Error> for StartError {
    fn from(e: anyhow::Error) -> Self {
        StartError::Other(e)
    }
}

/// The server child process, which we may have to wait for, kill or abandon.
#[derive(Debug, Default)]
struct ChildSlot(Mutex<Option<Child>>);

/// The state of a [`ChildSlot`].
enum ChildState {
    /// No process is (any longer) running; carries the exit status if it just got reaped.
    Stopped(Option<ExitStatus>),
    Running(u32),
}

impl ChildSlot {
    fn set(&self, child: Child) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(child);
    }

    /// Forgets the child without stopping it (it keeps running, unsupervised by us).
    fn abandon(&self) -> Option<u32> {
        let child = self.0.lock().unwrap_or_else(PoisonError::into_inner).take();
        child.map(|c| c.id())
    }

    /// Checks (without blocking) whether the child is still running; reaps it if it exited.
    fn state(&self) -> ChildState {
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(child) = slot.as_mut() else {
            return ChildState::Stopped(None);
        };
        match child.try_wait() {
            Ok(None) => ChildState::Running(child.id()),
            Ok(Some(status)) => {
                *slot = None;
                ChildState::Stopped(Some(status))
            }
            Err(_) => {
                // Not our child any more (should not happen); treat it as gone.
                *slot = None;
                ChildState::Stopped(None)
            }
        }
    }

    /// Sends `sig` and waits (asynchronously) up to `timeout` for the child to exit.
    /// Returns `Ok(true)` if it exited (or was not running), `Ok(false)` on timeout.
    async fn signal_and_wait(&self, sig: &str, timeout: Duration) -> Result<bool> {
        let ChildState::Running(pid) = self.state() else {
            return Ok(true);
        };
        if let Err(e) = process::signal(pid, sig) {
            if let ChildState::Stopped(_) = self.state() {
                return Ok(true);
            }
            return Err(e);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let ChildState::Stopped(_) = self.state() {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends `sig`, waits up to `timeout`, then SIGKILLs and reaps the child. Never fails.
    async fn terminate(&self, sig: &str, timeout: Duration) {
        if let Ok(true) = self.signal_and_wait(sig, timeout).await {
            return;
        }
        let child = self.0.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(mut child) = child {
            let _ = child.kill();
            let _ = tokio::task::spawn_blocking(move || child.wait()).await;
        }
    }

    /// Synchronous stop for `Drop`: send `sig`, wait up to `timeout`, then SIGKILL and reap.
    fn stop_blocking(&mut self, sig: &str, timeout: Duration) {
        let slot = self.0.get_mut().unwrap_or_else(PoisonError::into_inner);
        let Some(mut child) = slot.take() else {
            return;
        };
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        let deadline = Instant::now() + timeout;
        if process::signal(child.id(), sig).is_ok() {
            while Instant::now() < deadline {
                if !matches!(child.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}
