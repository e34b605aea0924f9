//! Helpers the integration test files share (each test file is its own crate and uses a subset,
//! hence `dead_code` is allowed).
#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, Result};

/// Connects to `url` without TLS and spawns the connection task.
pub async fn connect(url: &str) -> Result<tokio_postgres::Client> {
    connect_with(tokio_postgres::Config::from_str(url)?).await.with_context(|| format!("connect {url}"))
}

/// Connects with `config` without TLS and spawns the connection task.
pub async fn connect_with(config: tokio_postgres::Config) -> Result<tokio_postgres::Client> {
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// Whether something accepts TCP connections on 127.0.0.1:`port` (within 500 ms).
pub fn listening(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}
