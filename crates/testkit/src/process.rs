//! Small process and file helpers shared by the server modules.
//!
//! Without `libc` (the workspace forbids `unsafe`), signals other than SIGKILL are sent with the
//! shell's `kill` builtin, and liveness/start times are read from `/proc`.

use std::ffi::OsStr;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

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
    match read_at(path, |len| len.saturating_sub(64 * 1024)) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(could not read {}: {e})", path.display()),
    }
}

/// The contents of `path` from byte `offset` on (empty if unreadable).
pub(crate) fn read_from(path: &Path, offset: u64) -> String {
    read_at(path, |_| offset).unwrap_or_default()
}

/// The contents of `path` from the offset that `start` picks given the file's length.
fn read_at(path: &Path, start: impl FnOnce(u64) -> u64) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(start(len)))?;
    let mut buf = Vec::new();
    file.read_to_end(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
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
