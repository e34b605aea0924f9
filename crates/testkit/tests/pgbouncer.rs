//! PgBouncer in transaction pooling mode in front of a PgCluster: SCRAM logins (also upstream),
//! `application_name`, transaction-local settings that do not leak, unnamed statements, 20 clients
//! through 2 server connections, stop and restart; actionable errors (a missing binary: `errors.rs`).

mod common;

use std::collections::HashSet;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, ensure};
use common::{connect, connect_with, listening};
use testkit::{PgBouncer, PgCluster};
use tokio_postgres::types::Type;

const PASSWORD: &str = "s3cret \"quoted\" pa$$";

/// A cluster with the role `app` (password [`PASSWORD`]) owning the database `appdb`, where every
/// role but the superuser must log in with SCRAM (so PgBouncer has to, too).
async fn cluster_with_app_role() -> Result<PgCluster> {
    let pg = PgCluster::start(None).await?;
    let su = connect(&pg.superuser_url("postgres")).await?;
    su.batch_execute("SET password_encryption = 'scram-sha-256'").await?;
    su.batch_execute(&format!("CREATE ROLE app LOGIN PASSWORD '{PASSWORD}'")).await?;
    su.batch_execute("CREATE DATABASE appdb OWNER app").await?;
    // Rewrite the existing file in place: it keeps its owner (the `postgres` user when we are root).
    std::fs::write(
        pg.data_dir().join("pg_hba.conf"),
        "local all all trust\n\
         host all postgres 127.0.0.1/32 trust\n\
         host all all 127.0.0.1/32 scram-sha-256\n",
    )?;
    su.simple_query("SELECT pg_reload_conf()").await?;
    let without_password = format!("postgres://app@127.0.0.1:{}/appdb", pg.port());
    let mut refused = false;
    for _ in 0..50 {
        if connect(&without_password).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ensure!(refused, "pg_hba.conf reload did not take effect: `app` still logs in without a password");
    connect(&pg.url("app", Some(PASSWORD), "appdb")).await?.simple_query("SELECT 1").await?;
    Ok(pg)
}

#[tokio::test]
async fn transaction_pooling_through_pgbouncer() -> Result<()> {
    let pg = cluster_with_app_role().await?;
    let bouncer = PgBouncer::start(pg.port(), &[("app", PASSWORD), ("other", "x")], 2).await?;
    let port = bouncer.port();
    ensure!(port != pg.port(), "pgbouncer got the upstream's port");
    ensure!(
        bouncer.url("app", "p@ss", "appdb") == format!("postgres://app:p%40ss@127.0.0.1:{port}/appdb"),
        "url: {}",
        bouncer.url("app", "p@ss", "appdb")
    );
    let url = bouncer.url("app", PASSWORD, "appdb");

    // As the server under test connects: application_name set in the startup packet.
    let mut config = tokio_postgres::Config::from_str(&url)?;
    config.application_name("testkit-it");
    let mut client = connect_with(config).await.context("connect through pgbouncer with application_name")?;
    let rows = client
        .query_typed("SELECT current_setting('application_name'), current_user::text, current_database()::text", &[])
        .await?;
    let (app_name, user, db): (String, String, String) =
        (rows[0].try_get(0)?, rows[0].try_get(1)?, rows[0].try_get(2)?);
    ensure!(app_name == "testkit-it", "application_name through pgbouncer: {app_name:?}");
    ensure!(user == "app" && db == "appdb", "logged in as {user} to {db}");

    // Transaction-local context is visible inside its transaction only...
    client.batch_execute("BEGIN").await?;
    client.query_typed("SELECT set_config('app.x', 'v', true)", &[]).await?;
    let rows = client.query_typed("SELECT current_setting('app.x', true)", &[]).await?;
    let inside: Option<String> = rows[0].try_get(0)?;
    client.batch_execute("COMMIT").await?;
    ensure!(inside.as_deref() == Some("v"), "inside the transaction: {inside:?}");
    // ... and gone in the next one, whichever server connection that runs on.
    for _ in 0..4 {
        let tx = client.transaction().await?;
        let rows = tx.query_typed("SELECT current_setting('app.x', true)", &[]).await?;
        let after: Option<String> = rows[0].try_get(0)?;
        tx.commit().await?;
        ensure!(after.as_deref().unwrap_or("").is_empty(), "app.x leaked into the next transaction: {after:?}");
    }

    // Unnamed statements outside a transaction, repeatedly (each may run on another server connection).
    for i in 0..10_i32 {
        let rows = client.query_typed("SELECT $1::int4 + 1, current_user::text", &[(&i, Type::INT4)]).await?;
        let (next, user): (i32, String) = (rows[0].try_get(0)?, rows[0].try_get(1)?);
        ensure!(next == i + 1 && user == "app", "query_typed #{i}: {next}, {user}");
    }

    // 20 concurrent clients through a pool of 2 server connections.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20_i32 {
        let url = url.clone();
        tasks.spawn(async move {
            let mut client = connect(&url).await?;
            let tx = client.transaction().await?;
            let rows =
                tx.query_typed("SELECT pg_backend_pid(), $1::int4, pg_sleep(0.05)::text", &[(&i, Type::INT4)]).await?;
            let (pid, echoed): (i32, i32) = (rows[0].try_get(0)?, rows[0].try_get(1)?);
            tx.commit().await?;
            ensure!(echoed == i, "client {i} got {echoed}");
            Ok::<i32, anyhow::Error>(pid)
        });
    }
    let mut backends = HashSet::new();
    let mut ok = 0;
    while let Some(result) = tasks.join_next().await {
        backends.insert(result.map_err(|e| anyhow!("client task: {e}"))??);
        ok += 1;
    }
    ensure!(ok == 20, "{ok} of 20 clients succeeded");
    ensure!(
        !backends.is_empty() && backends.len() <= 2,
        "20 clients ran on {} server connections (pool_size 2): {backends:?}",
        backends.len()
    );

    // Wrong or unknown credentials are refused by pgbouncer itself.
    ensure!(connect(&bouncer.url("app", "wrong", "appdb")).await.is_err(), "wrong password accepted");
    ensure!(connect(&bouncer.url("nobody", "x", "appdb")).await.is_err(), "unknown user accepted");

    // An upstream outage: pgbouncer serves again soon after Postgres is back.
    pg.restart().await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let attempt = async { connect(&url).await?.query_typed("SELECT 1", &[]).await.map_err(anyhow::Error::from) };
        match tokio::time::timeout(Duration::from_secs(2), attempt).await {
            Ok(Ok(_)) => break,
            Ok(Err(e)) if std::time::Instant::now() >= deadline => return Err(e.context("after the Postgres restart")),
            Err(_) if std::time::Instant::now() >= deadline => anyhow::bail!("no answer after the Postgres restart"),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }

    bouncer.stop().await?;
    ensure!(!listening(port), "port {port} still open after stop");
    ensure!(connect(&url).await.is_err(), "connected through a stopped pgbouncer");
    ensure!(client.simple_query("SELECT 1").await.is_err(), "old client survived the stop");
    bouncer.stop().await?; // idempotent

    bouncer.restart().await?;
    ensure!(bouncer.port() == port, "port changed across restart");
    let client = connect(&url).await?;
    let rows = client.query_typed("SELECT current_user::text", &[]).await?;
    ensure!(rows[0].try_get::<_, String>(0)? == "app", "after restart");

    ensure!(bouncer.log_tail(200).contains("process up: PgBouncer"), "log tail: {}", bouncer.log_tail(200));
    ensure!(bouncer.log_tail(3).lines().count() <= 3, "log_tail limits lines");
    drop(client);
    drop(bouncer);
    ensure!(!listening(port), "port {port} still open after drop");
    Ok(())
}

/// pgbouncer 1.18 refuses the `options` startup parameter (`-c name=value` settings). It is not
/// in `ignore_startup_parameters` on purpose: silently dropping e.g. a statement timeout would hide
/// a difference from a direct connection.
#[tokio::test]
async fn options_startup_parameter_is_refused_loudly() -> Result<()> {
    let pg = cluster_with_app_role().await?;
    let bouncer = PgBouncer::start(pg.port(), &[("app", PASSWORD)], 1).await?;
    let mut config = tokio_postgres::Config::from_str(&bouncer.url("app", PASSWORD, "appdb"))?;
    config.options("-c statement_timeout=1234");
    let err = connect_with(config).await.err().context("pgbouncer accepted `options`")?;
    ensure!(format!("{err:#}").contains("unsupported startup parameter: options"), "{err:#}");
    Ok(())
}

#[tokio::test]
async fn unreachable_upstream_fails_start_clearly() -> Result<()> {
    let nothing_there = testkit::free_port()?;
    let err = PgBouncer::start(nothing_there, &[("app", "x")], 1).await.err().context("started without upstream")?;
    let msg = format!("{err:#}");
    ensure!(msg.contains("start the PgCluster first") && msg.contains(&nothing_there.to_string()), "{msg}");
    Ok(())
}

#[tokio::test]
async fn bad_arguments_are_refused() -> Result<()> {
    let msg = format!("{:#}", PgBouncer::start(1, &[], 2).await.err().context("no users")?);
    ensure!(msg.contains("at least one"), "{msg}");
    let msg = format!("{:#}", PgBouncer::start(1, &[("a,b", "x")], 2).await.err().context("comma")?);
    ensure!(msg.contains("not supported"), "{msg}");
    Ok(())
}
