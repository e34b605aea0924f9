//! RedisServer: start, raw PING, stop, restart on the same port, drop.

use std::time::Duration;

use anyhow::{Result, ensure};
use testkit::RedisServer;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

async fn ping(port: u16) -> Result<String> {
    let stream = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(("127.0.0.1", port))).await??;
    let mut stream = BufReader::new(stream);
    stream.get_mut().write_all(b"PING\r\n").await?;
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(2), stream.read_line(&mut line)).await??;
    Ok(line)
}

#[tokio::test]
async fn start_ping_stop_restart_drop() -> Result<()> {
    let redis = RedisServer::start().await?;
    let port = redis.port();
    ensure!(redis.url() == format!("redis://127.0.0.1:{port}"), "url: {}", redis.url());
    ensure!(ping(port).await? == "+PONG\r\n", "PING reply");

    redis.stop().await?;
    ensure!(ping(port).await.is_err(), "still answering after stop");
    redis.stop().await?; // idempotent

    redis.restart().await?;
    ensure!(redis.port() == port, "port changed across restart");
    ensure!(ping(port).await? == "+PONG\r\n", "PING reply after restart");

    drop(redis);
    ensure!(ping(port).await.is_err(), "still answering after drop");
    Ok(())
}

#[tokio::test]
async fn two_servers_get_distinct_ports() -> Result<()> {
    let (a, b) = tokio::try_join!(RedisServer::start(), RedisServer::start())?;
    ensure!(a.port() != b.port(), "same port twice");
    ensure!(ping(a.port()).await? == "+PONG\r\n" && ping(b.port()).await? == "+PONG\r\n", "PING");
    Ok(())
}
