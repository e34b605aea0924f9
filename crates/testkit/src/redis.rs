//! Throwaway redis-server instances.
//!
//! Each [`RedisServer`] is a `redis-server` child process on 127.0.0.1 at a free port, with
//! persistence disabled (`save ""`, `appendonly no`) and its working directory and log in a
//! private temp directory. Readiness is checked with a raw `PING` over TCP (no Redis client
//! dependency), followed by `INFO server` to make sure the answering server is our own process
//! and not someone else's that grabbed the port first.

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::process::{self, ChildSlot, ChildState, Readiness, StartError};

const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
const PORT_ATTEMPTS: usize = 5;

/// A running (or stopped) throwaway redis-server. Dropping it kills the server and deletes its
/// directory.
#[derive(Debug)]
pub struct RedisServer {
    root: PathBuf,
    log: PathBuf,
    port: u16,
    bin: PathBuf,
    remove_on_drop: bool,
    own_process_group: bool,
    child: ChildSlot,
    ops: tokio::sync::Mutex<()>,
}

impl RedisServer {
    /// Starts `redis-server` on 127.0.0.1 at a free port without persistence, in its own temp
    /// directory, and waits until it answers `PING`.
    pub async fn start() -> Result<RedisServer> {
        Self::start_in(None, false).await
    }

    /// As [`start`](Self::start), in a fresh directory under `base_dir` (kept on drop) when given;
    /// `own_process_group` shields the server from signals aimed at our process group.
    pub(crate) async fn start_in(base_dir: Option<&Path>, own_process_group: bool) -> Result<RedisServer> {
        let bin = crate::bins::redis_server()?;
        let (parent, remove_on_drop, prefix) = match base_dir {
            Some(dir) => (dir.to_path_buf(), false, "redis-"),
            None => (std::env::temp_dir(), true, "testkit-redis-"),
        };
        let parent =
            std::path::absolute(&parent).with_context(|| format!("invalid base directory {}", parent.display()))?;
        let root = process::fresh_dir(&parent, prefix)?;
        let mut server = RedisServer {
            log: root.join("redis.log"),
            root,
            port: 0,
            bin,
            remove_on_drop,
            own_process_group,
            child: ChildSlot::default(),
            ops: tokio::sync::Mutex::new(()),
        };
        for attempt in 1..=PORT_ATTEMPTS {
            server.port = crate::free_port()?;
            match server.spawn_and_wait().await {
                Ok(()) => {
                    tracing::debug!(port = server.port, "redis-server started");
                    return Ok(server);
                }
                Err(StartError::PortInUse) => {
                    tracing::debug!(port = server.port, attempt, "redis port was taken; retrying");
                }
                Err(StartError::Other(e)) => return Err(e),
            }
        }
        bail!(
            "redis-server could not bind a free port on 127.0.0.1 in {PORT_ATTEMPTS} attempts; log tail of {}:\n{}",
            server.log.display(),
            server.log_tail(20)
        )
    }

    async fn spawn_and_wait(&self) -> Result<(), StartError> {
        let log_offset = process::file_len(&self.log);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("could not open {}", self.log.display()))?;
        let log_err =
            log.try_clone().with_context(|| format!("could not duplicate the handle of {}", self.log.display()))?;
        let mut cmd = Command::new(&self.bin);
        cmd.current_dir(&self.root)
            .arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&self.root)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        if self.own_process_group {
            cmd.process_group(0);
        }
        let child = cmd.spawn().with_context(|| format!("could not spawn {}", self.bin.display()))?;
        let pid = child.id();
        self.child.set(child);

        let readiness = Readiness {
            name: "redis-server".into(),
            ready: format!("answer PING on 127.0.0.1:{}", self.port),
            log: &self.log,
            log_offset,
            timeout: START_TIMEOUT,
            poll_every: Duration::from_millis(20),
            stop_signal: "KILL",
            probe_timeout: Duration::from_secs(2),
        };
        process::wait_ready(&self.child, readiness, || async { Ok(server_pid(self.port).await? == pid) }).await
    }

    /// The TCP port on 127.0.0.1 (stable across [`restart`](Self::restart)).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:port`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops the server (SIGTERM; no data is kept). A no-op if it is not running.
    pub async fn stop(&self) -> Result<()> {
        let _ops = self.ops.lock().await;
        self.stop_locked().await
    }

    async fn stop_locked(&self) -> Result<()> {
        if self.child.signal_and_wait("TERM", STOP_TIMEOUT).await? {
            return Ok(());
        }
        self.child.terminate("KILL", Duration::from_secs(5)).await;
        bail!(
            "redis-server on port {} did not exit within {} s of SIGTERM (killed it); log tail of {}:\n{}",
            self.port,
            STOP_TIMEOUT.as_secs(),
            self.log.display(),
            self.log_tail(20)
        )
    }

    /// Starts the server again (empty) on the same port, stopping it first if it is running.
    pub async fn restart(&self) -> Result<()> {
        let _ops = self.ops.lock().await;
        self.stop_locked().await?;
        match self.spawn_and_wait().await {
            Ok(()) => Ok(()),
            Err(StartError::PortInUse) => bail!(
                "cannot restart redis-server on 127.0.0.1:{}: the port is now in use by another process",
                self.port
            ),
            Err(StartError::Other(e)) => Err(e),
        }
    }

    /// The last `lines` lines of the server log.
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

    /// Leaves the server running and its directory in place when `self` is dropped. Returns its pid.
    pub(crate) fn detach(mut self) -> Option<u32> {
        self.remove_on_drop = false;
        self.child.abandon()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.child.stop_blocking("TERM", Duration::from_secs(5));
        if self.remove_on_drop {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

/// Sends `PING` then `INFO server` over a raw connection; returns the server's `process_id`.
async fn server_pid(port: u16) -> Result<u32> {
    let stream = TcpStream::connect(("127.0.0.1", port)).await?;
    let mut stream = BufReader::new(stream);
    stream.get_mut().write_all(b"PING\r\nINFO server\r\n").await?;
    let mut line = String::new();
    stream.read_line(&mut line).await?;
    if line.trim_end() != "+PONG" {
        bail!("unexpected reply to PING: {:?}", line.trim_end());
    }
    line.clear();
    stream.read_line(&mut line).await?;
    let len: usize = line
        .trim_end()
        .strip_prefix('$')
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| anyhow!("unexpected reply to INFO: {:?}", line.trim_end()))?;
    let mut body = vec![0; len];
    stream.read_exact(&mut body).await?;
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .and_then(|pid| pid.trim().parse().ok())
        .ok_or_else(|| anyhow!("INFO server reply lacks process_id"))
}
