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

/// The replies to `commands` (one line each) over one raw connection.
async fn replies(port: u16, commands: &[&str]) -> Result<Vec<String>> {
    let stream = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(("127.0.0.1", port))).await??;
    let mut stream = BufReader::new(stream);
    let mut out = Vec::new();
    for command in commands {
        stream.get_mut().write_all(format!("{command}\r\n").as_bytes()).await?;
        let mut line = String::new();
        tokio::time::timeout(Duration::from_secs(2), stream.read_line(&mut line)).await??;
        out.push(line.trim_end().to_owned());
    }
    Ok(out)
}

#[tokio::test]
async fn acl_users_must_authenticate_also_after_a_restart() -> Result<()> {
    let redis = RedisServer::start_with(testkit::RedisOptions {
        tls: None,
        users: vec![("app".to_owned(), "pw-123".to_owned())],
    })
    .await?;
    for round in 0..2 {
        let anonymous = replies(redis.port(), &["PING"]).await?;
        ensure!(anonymous[0].starts_with("-NOAUTH"), "round {round}: the default user is on: {anonymous:?}");
        let wrong = replies(redis.port(), &["AUTH app nope"]).await?;
        ensure!(wrong[0].starts_with("-WRONGPASS"), "round {round}: {wrong:?}");
        let ok = replies(redis.port(), &["AUTH app pw-123", "PING"]).await?;
        ensure!(ok == ["+OK", "+PONG"], "round {round}: {ok:?}");
        redis.restart().await?;
    }
    Ok(())
}
