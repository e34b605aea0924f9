//! Throwaway redis-server instances.
//!
//! Each [`RedisServer`] is a `redis-server` child process on 127.0.0.1 at a free port, with
//! persistence disabled (`save ""`, `appendonly no`) and its working directory and log in a
//! private temp directory. Readiness is checked with a raw `PING` over TCP (no Redis client
//! dependency), followed by `INFO server` to make sure the answering server is our own process
//! and not someone else's that grabbed the port first.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::managed::{ManagedProcess, ServerSpec, Signals};

/// A running (or stopped) throwaway redis-server. Dropping it kills the server and deletes its
/// directory.
#[derive(Debug)]
pub struct RedisServer {
    process: ManagedProcess,
    options: RedisOptions,
}

/// How [`RedisServer::start_with`] sets the server up.
#[derive(Debug, Clone, Default)]
pub struct RedisOptions {
    /// Serve TLS only, with this certificate chain and key (PEM); clients are not asked for one.
    pub tls: Option<RedisTls>,
    /// ACL users allowed everything, as `(name, password)`. When given, the default user is off,
    /// so every client must authenticate as one of them.
    pub users: Vec<(String, String)>,
}

/// The server side of TLS.
#[derive(Debug, Clone)]
pub struct RedisTls {
    /// The server's certificate (PEM), followed by any intermediates.
    pub cert_pem: String,
    /// Its private key (PEM).
    pub key_pem: String,
}

impl RedisServer {
    /// Starts `redis-server` on 127.0.0.1 at a free port without persistence, in its own temp
    /// directory, and waits until it answers `PING`.
    pub async fn start() -> Result<RedisServer> {
        Self::start_in(None, false, None).await
    }

    /// As [`start`](Self::start), on 127.0.0.1:`port` exactly (an error if it is taken).
    pub async fn start_on_port(port: u16) -> Result<RedisServer> {
        Self::start_in(None, false, Some(port)).await
    }

    /// Starts `redis-server` as [`start`](Self::start) does, with TLS and/or ACL users.
    pub async fn start_with(options: RedisOptions) -> Result<RedisServer> {
        Self::start_configured(None, false, None, options).await
    }

    /// As [`start`](Self::start), in a fresh directory under `base_dir` (kept on drop) when given;
    /// `own_process_group` shields the server from signals aimed at our process group.
    pub(crate) async fn start_in(
        base_dir: Option<&Path>,
        own_process_group: bool,
        port: Option<u16>,
    ) -> Result<RedisServer> {
        Self::start_configured(base_dir, own_process_group, port, RedisOptions::default()).await
    }

    async fn start_configured(
        base_dir: Option<&Path>,
        own_process_group: bool,
        port: Option<u16>,
        options: RedisOptions,
    ) -> Result<RedisServer> {
        let ready = if options.tls.is_some() { "accept TLS connections" } else { "answer PING" };
        let spec = ServerSpec {
            name: "redis-server",
            program: crate::bins::redis_server()?,
            dir_prefix: "redis",
            log_name: "redis.log",
            run_as: None,
            own_process_group,
            ready: ready.into(),
            poll_every: Duration::from_millis(20),
            probe_timeout: Duration::from_secs(2),
            signals: Signals {
                stop: ("TERM", Duration::from_secs(30)),
                kill: "KILL",
                drop: ("TERM", Duration::from_secs(5)),
                stop_overrun_is_error: true,
            },
        };
        let server = RedisServer { process: ManagedProcess::new(spec, base_dir)?, options };
        server.write_tls_files()?;
        server.process.start(port, |cmd, port| server.configure(cmd, port), |pid| server.probe(pid)).await?;
        Ok(server)
    }

    const CERT_FILE: &'static str = "server.crt";
    const KEY_FILE: &'static str = "server.key";

    /// Puts the TLS certificate and key, if any, into the server's directory.
    fn write_tls_files(&self) -> Result<()> {
        if let Some(tls) = &self.options.tls {
            std::fs::write(self.process.root().join(Self::CERT_FILE), &tls.cert_pem)?;
            std::fs::write(self.process.root().join(Self::KEY_FILE), &tls.key_pem)?;
        }
        Ok(())
    }

    /// The `redis-server` command line for `port`: loopback only, no persistence, in our directory.
    fn configure(&self, cmd: &mut Command, port: u16) -> Result<()> {
        match &self.options.tls {
            None => {
                cmd.arg("--port").arg(port.to_string());
            }
            Some(_) => {
                let root = self.process.root();
                cmd.args(["--port", "0", "--tls-port"])
                    .arg(port.to_string())
                    .arg("--tls-cert-file")
                    .arg(root.join(Self::CERT_FILE))
                    .arg("--tls-key-file")
                    .arg(root.join(Self::KEY_FILE))
                    .args(["--tls-auth-clients", "no"]);
            }
        }
        if !self.options.users.is_empty() {
            cmd.args(["--user", "default", "off"]);
            for (name, password) in &self.options.users {
                cmd.arg("--user").arg(name).args(["on", &format!(">{password}"), "~*", "&*", "+@all"]);
            }
        }
        cmd.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(self.process.root());
        Ok(())
    }

    /// `Ok(true)` if the server answering on our port is the process `pid`.
    async fn probe(&self, pid: u32) -> Result<bool> {
        if self.options.tls.is_none() && self.options.users.is_empty() {
            return Ok(server_pid(self.port()).await? == pid);
        }
        // Not askable over a raw connection: its own log says when it is ready (lines start with its pid).
        // Not ready yet is an error (retried); `false` would mean another process holds the port.
        let log = std::fs::read_to_string(self.process.log()).unwrap_or_default();
        let prefix = format!("{pid}:");
        if log.lines().any(|l| l.starts_with(&prefix) && l.contains("Ready to accept connections")) {
            Ok(true)
        } else {
            bail!("not ready yet")
        }
    }

    /// The TCP port on 127.0.0.1 (stable across [`restart`](Self::restart)).
    pub fn port(&self) -> u16 {
        self.process.port()
    }

    /// `redis://127.0.0.1:port` (`rediss://` for a TLS server).
    pub fn url(&self) -> String {
        let scheme = if self.options.tls.is_some() { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port())
    }

    delegate_to_process!(
        stop: "Stops the server (SIGTERM; no data is kept). A no-op if it is not running.", detachable
    );

    /// Starts the server again (empty) on the same port, stopping it first if it is running.
    pub async fn restart(&self) -> Result<()> {
        self.process.restart(|cmd, port| self.configure(cmd, port), |pid| self.probe(pid)).await
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
