//! Small process and file helpers shared by the server modules.
//!
//! Without `libc` (the workspace forbids `unsafe`), signals other than SIGKILL are sent with the
//! shell's `kill` builtin, and liveness/start times are read from `/proc`. Servers are spawned with
//! [`std::process::Command`] rather than `tokio::process`, so that a server outlives the tokio
//! runtime that started it (each `#[tokio::test]` has its own runtime, while shared servers live
//! for the whole run).

use std::ffi::OsStr;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Sends signal `sig` (a name such as `INT`, `QUIT`, `TERM`) to `pid`.
pub(crate) fn signal(pid: u32, sig: &str) -> Result<()> {
    let status = Command::new("sh")
        .args(["-c", "kill -s \"$1\" \"$2\" 2>/dev/null", "sh", sig])
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .with_context(|| format!("could not run `sh -c kill` to send SIG{sig} to pid {pid}"))?;
    if !status.success() {
        bail!("could not send SIG{sig} to pid {pid} (is it still running?)");
    }
    Ok(())
}

/// Parses `/proc/<pid>/stat`: (state, start time in clock ticks since boot).
fn proc_stat(pid: u32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ..." — comm may contain spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // `state` is field 3; starttime is field 22.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// When `pid` was started (clock ticks since boot), to tell a live process from a reused pid.
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    proc_stat(pid).map(|(_, start)| start)
}

/// Whether `pid` is a live (non-zombie) process.
pub(crate) fn is_alive(pid: u32) -> bool {
    if Path::new("/proc/self/stat").exists() {
        return matches!(proc_stat(pid), Some((state, _)) if state != 'Z' && state != 'X');
    }
    Command::new("sh")
        .args(["-c", "kill -0 \"$1\" 2>/dev/null", "sh"])
        .arg(pid.to_string())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Whether `pid`'s command line mentions `needle` (guards against signalling a reused pid).
pub(crate) fn cmdline_contains(pid: u32, needle: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).map(|c| String::from_utf8_lossy(&c).contains(needle)).unwrap_or(false)
}

/// The last `lines` lines of the file at `path` (reads at most the final 64 KiB).
pub(crate) fn tail_file(path: &Path, lines: usize) -> String {
    let read = || -> std::io::Result<String> {
        let mut file = std::fs::File::open(path)?;
        let len = file.metadata()?.len();
        let start = len.saturating_sub(64 * 1024);
        file.seek(SeekFrom::Start(start))?;
        let mut buf = Vec::new();
        file.read_to_end(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    match read() {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(could not read {}: {e})", path.display()),
    }
}

/// The contents of `path` from byte `offset` on (empty if unreadable).
pub(crate) fn read_from(path: &Path, offset: u64) -> String {
    let read = || -> std::io::Result<String> {
        let mut file = std::fs::File::open(path)?;
        file.seek(SeekFrom::Start(offset))?;
        let mut buf = Vec::new();
        file.read_to_end(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    read().unwrap_or_default()
}

/// Current length of the file at `path` (0 if missing).
pub(crate) fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Removes `PG*` variables (PGDATA, PGPORT, ...) that would change the servers' behaviour, and
/// makes messages English so that errors such as "Address already in use" can be recognised.
pub(crate) fn sanitize_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            cmd.env_remove(&key);
        }
    }
    cmd.env_remove("LC_ALL").env("LC_MESSAGES", "C");
}

/// Creates a new, uniquely named directory `<parent>/<prefix><12 hex chars>`.
pub(crate) fn fresh_dir(parent: &Path, prefix: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(parent).with_context(|| format!("could not create directory {}", parent.display()))?;
    for _ in 0..16 {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let dir = parent.join(format!("{prefix}{}", &id[..12]));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(e).with_context(|| format!("could not create directory {}", dir.display()));
            }
        }
    }
    bail!("could not create a fresh directory under {}", parent.display())
}

/// Runs `cmd` to completion with a timeout, capturing its output; kills it on timeout.
pub(crate) async fn run_with_timeout(cmd: Command, timeout: Duration, what: &str) -> Result<std::process::Output> {
    let program = cmd.get_program().to_owned();
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    match tokio::time::timeout(timeout, cmd.output()).await {
        Ok(out) => out.with_context(|| format!("could not run {}", display(&program))),
        Err(_) => bail!("{what} did not finish within {} s", timeout.as_secs()),
    }
}

fn display(program: &OsStr) -> String {
    Path::new(program).display().to_string()
}

/// A server child process that we may have to wait for, kill or abandon.
#[derive(Debug, Default)]
pub(crate) struct ChildSlot(Mutex<Option<Child>>);

/// The state of a [`ChildSlot`].
pub(crate) enum ChildState {
    /// No process is (any longer) running; carries the exit status if it just got reaped.
    Stopped(Option<ExitStatus>),
    Running(u32),
}

impl ChildSlot {
    pub(crate) fn set(&self, child: Child) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(child);
    }

    /// Forgets the child without stopping it (it keeps running, unsupervised by us).
    pub(crate) fn abandon(&self) -> Option<u32> {
        let child = self.0.lock().unwrap_or_else(PoisonError::into_inner).take();
        child.map(|c| c.id())
    }

    /// Checks (without blocking) whether the child is still running; reaps it if it exited.
    pub(crate) fn state(&self) -> ChildState {
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
    pub(crate) async fn signal_and_wait(&self, sig: &str, timeout: Duration) -> Result<bool> {
        let ChildState::Running(pid) = self.state() else {
            return Ok(true);
        };
        if let Err(e) = signal(pid, sig) {
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
    pub(crate) async fn terminate(&self, sig: &str, timeout: Duration) {
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
    pub(crate) fn stop_blocking(&mut self, sig: &str, timeout: Duration) {
        let slot = self.0.get_mut().unwrap_or_else(PoisonError::into_inner);
        let Some(mut child) = slot.take() else {
            return;
        };
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        let deadline = Instant::now() + timeout;
        if signal(child.id(), sig).is_ok() {
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

/// Percent-encodes everything but RFC 3986 "unreserved" characters (for URL user/password/path).
pub(crate) fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Why a server start attempt failed (shared by every server the kit starts).
pub(crate) enum StartError {
    /// The port was taken by someone else; retry with another one.
    PortInUse,
    Other(anyhow::Error),
}

impl From<anyhow::Error> for StartError {
    fn from(e: anyhow::Error) -> Self {
        StartError::Other(e)
    }
}

/// How to wait for a freshly spawned server (the loop the Postgres, PgBouncer and Redis starters share).
pub(crate) struct Readiness<'a> {
    /// For messages: `postgres`, `pgbouncer (running as uid 1001)`.
    pub name: String,
    /// What ready means, for messages: `accept connections on 127.0.0.1:5432`.
    pub ready: String,
    pub log: &'a Path,
    /// The log's length before the spawn: only what this attempt wrote is searched for a port clash.
    pub log_offset: u64,
    pub timeout: Duration,
    pub poll_every: Duration,
    /// Bound on one probe.
    pub probe_timeout: Duration,
    /// Signal that stops the server when the wait fails (`QUIT` for Postgres: an immediate shutdown).
    pub stop_signal: &'a str,
}

/// Probe until the server is ready, its port turns out taken, it exits, or `timeout` passes (then it is
/// stopped); every failure carries the tail of the server's log. `probe` answers `Ok(true)` when our server
/// answers, `Ok(false)` when another process answers on our port (ours cannot have bound it).
pub(crate) async fn wait_ready<F, Fut>(child: &ChildSlot, r: Readiness<'_>, mut probe: F) -> Result<(), StartError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + r.timeout;
    loop {
        if let ChildState::Stopped(status) = child.state() {
            if read_from(r.log, r.log_offset).contains("Address already in use") {
                return Err(StartError::PortInUse);
            }
            return Err(StartError::Other(anyhow::anyhow!(
                "{} exited ({}) before it could {}; log tail of {}:\n{}",
                r.name,
                status.map(|s| s.to_string()).unwrap_or_else(|| "status unknown".into()),
                r.ready,
                r.log.display(),
                tail_file(r.log, 20)
            )));
        }
        let last_error = match tokio::time::timeout(r.probe_timeout, probe()).await {
            Ok(Ok(true)) => return Ok(()),
            Ok(Ok(false)) => {
                child.terminate(r.stop_signal, Duration::from_secs(5)).await;
                return Err(StartError::PortInUse);
            }
            Ok(Err(e)) => format!("{e:#}"),
            Err(_) => format!("no answer within {} s", r.probe_timeout.as_secs()),
        };
        if Instant::now() >= deadline {
            child.terminate(r.stop_signal, Duration::from_secs(5)).await;
            return Err(StartError::Other(anyhow::anyhow!(
                "{} did not {} within {} s (last error: {}); log tail of {}:\n{}",
                r.name,
                r.ready,
                r.timeout.as_secs(),
                last_error,
                r.log.display(),
                tail_file(r.log, 20)
            )));
        }
        tokio::time::sleep(r.poll_every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_urls_and_reads_proc() {
        assert_eq!(url_encode("a b@c:d/é"), "a%20b%40c%3Ad%2F%C3%A9");
        assert!(is_alive(std::process::id()));
        assert!(start_time(std::process::id()).is_some());
    }
}
