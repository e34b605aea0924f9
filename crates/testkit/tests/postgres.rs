//! PgCluster: start, query, stop (outage), restart on the same port with the data intact, drop.

mod common;

use anyhow::{Context, Result, ensure};
use common::{connect, listening};
use testkit::PgCluster;

#[tokio::test]
async fn start_query_stop_restart_drop() -> Result<()> {
    let pg = PgCluster::start(None).await?;
    let port = pg.port();
    let root = pg.data_dir().parent().context("data dir has a parent")?.to_path_buf();
    ensure!(pg.data_dir().join("PG_VERSION").exists(), "initdb ran");
    ensure!(
        pg.superuser_url("app") == format!("postgres://postgres@127.0.0.1:{port}/app"),
        "superuser url: {}",
        pg.superuser_url("app")
    );
    ensure!(
        pg.url("u", Some("p@ss"), "db") == format!("postgres://u:p%40ss@127.0.0.1:{port}/db"),
        "url: {}",
        pg.url("u", Some("p@ss"), "db")
    );

    let client = connect(&pg.superuser_url("postgres")).await?;
    client.batch_execute("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('survives restart')").await?;
    for (setting, expected) in [
        ("fsync", "off"),
        ("synchronous_commit", "off"),
        ("full_page_writes", "off"),
        ("max_connections", "300"),
        ("server_encoding", "UTF8"),
        ("listen_addresses", "127.0.0.1"),
    ] {
        let row = client.query_one(&format!("SHOW {setting}"), &[]).await?;
        let value: String = row.try_get(0)?;
        ensure!(value == expected, "{setting} = {value}, expected {expected}");
    }

    pg.stop().await?;
    ensure!(!listening(port), "port {port} still open after stop");
    ensure!(client.simple_query("SELECT 1").await.is_err(), "old session survived the stop");
    ensure!(pg.data_dir().exists(), "stop keeps the data");
    pg.stop().await?; // idempotent

    pg.restart().await?;
    ensure!(pg.port() == port, "port changed across restart");
    let client = connect(&pg.superuser_url("postgres")).await?;
    let row = client.query_one("SELECT v FROM kept", &[]).await?;
    let value: String = row.try_get(0)?;
    ensure!(value == "survives restart", "data after restart: {value}");

    pg.restart().await?; // restart while running = stop + start
    let client = connect(&pg.superuser_url("postgres")).await?;
    client.simple_query("SELECT 1").await?;

    ensure!(
        pg.log_tail(50).contains("database system is ready to accept connections"),
        "log tail: {}",
        pg.log_tail(50)
    );
    ensure!(pg.log_tail(3).lines().count() <= 3, "log_tail limits lines");

    drop(client);
    drop(pg);
    ensure!(!root.exists(), "{} not removed on drop", root.display());
    ensure!(!listening(port), "port {port} still open after drop");
    Ok(())
}

#[tokio::test]
async fn caller_given_base_dir_is_kept_but_server_stopped() -> Result<()> {
    // A long path: the Unix socket would exceed sun_path, so it must be disabled (TCP only).
    let base = std::env::temp_dir().join(format!("testkit-it-{}-{}", uuid::Uuid::new_v4().simple(), "x".repeat(50)));
    let pg = PgCluster::start(Some(&base)).await?;
    let port = pg.port();
    let data = pg.data_dir().to_path_buf();
    ensure!(data.starts_with(&base), "{} not under {}", data.display(), base.display());
    let client = connect(&pg.superuser_url("postgres")).await?;
    let row = client.query_one("SHOW unix_socket_directories", &[]).await?;
    let sockets: String = row.try_get(0)?;
    ensure!(sockets.is_empty(), "unix_socket_directories = {sockets:?}");
    drop(client);
    drop(pg);
    let kept = data.join("PG_VERSION").exists();
    let stopped = !listening(port) && !data.join("postmaster.pid").exists();
    std::fs::remove_dir_all(&base)?;
    ensure!(kept, "data dir removed although the caller chose the base dir");
    ensure!(stopped, "server still running after drop");
    Ok(())
}

#[tokio::test]
async fn untraversable_base_dir_gives_actionable_error_as_root() -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let locked = std::env::temp_dir().join(format!("testkit-locked-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir(&locked)?;
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o700))?;
    if std::fs::metadata(&locked)?.uid() != 0 {
        // Only root switches to the `postgres` user; nothing to check otherwise.
        std::fs::remove_dir_all(&locked)?;
        return Ok(());
    }
    let result = PgCluster::start(Some(&locked.join("base"))).await;
    std::fs::remove_dir_all(&locked)?;
    let err = result.err().context("start succeeded in a directory postgres cannot enter")?;
    let msg = format!("{err:#}");
    ensure!(msg.contains("cannot enter") && msg.contains("chmod o+x"), "{msg}");
    Ok(())
}
