//! Missing binaries produce actionable errors. Environment variables are process-wide (and
//! `set_var` is unsafe), so the checks run in a child process of this test binary.

use std::process::Command;

use anyhow::{Result, anyhow, ensure};

const CHILD_ENV: &str = "TESTKIT_ERRORS_CHILD";

/// Does nothing unless started by `missing_binaries_say_what_to_install`.
#[tokio::test]
async fn child_entry() -> Result<()> {
    if std::env::var_os(CHILD_ENV).is_none() {
        return Ok(());
    }
    let pg = testkit::PgCluster::start(None).await.err().ok_or_else(|| anyhow!("pg started"))?;
    let redis = testkit::RedisServer::start().await.err().ok_or_else(|| anyhow!("redis started"))?;
    let bouncer =
        testkit::PgBouncer::start(1, &[("app", "x")], 1).await.err().ok_or_else(|| anyhow!("pgbouncer started"))?;
    println!("PG_ERROR {pg:#}");
    println!("REDIS_ERROR {redis:#}");
    println!("PGBOUNCER_ERROR {bouncer:#}");
    Ok(())
}

#[test]
fn missing_binaries_say_what_to_install() -> Result<()> {
    let out = Command::new(std::env::current_exe()?)
        .args(["child_entry", "--exact", "--nocapture"])
        .env(CHILD_ENV, "1")
        .env(testkit::PG_BIN_DIR_ENV, "/nonexistent/pg/bin")
        .env(testkit::REDIS_SERVER_BIN_ENV, "/nonexistent/redis-server")
        .env(testkit::PGBOUNCER_BIN_ENV, "/nonexistent/pgbouncer")
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let pg = stdout.lines().find(|l| l.starts_with("PG_ERROR ")).unwrap_or_default();
    let redis = stdout.lines().find(|l| l.starts_with("REDIS_ERROR ")).unwrap_or_default();
    let bouncer = stdout.lines().find(|l| l.starts_with("PGBOUNCER_ERROR ")).unwrap_or_default();
    ensure!(out.status.success(), "child failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    ensure!(pg.contains("apt-get install postgresql-15") && pg.contains("/nonexistent/pg/bin"), "{pg}");
    ensure!(redis.contains("apt-get install redis-server") && redis.contains("/nonexistent/redis-server"), "{redis}");
    ensure!(bouncer.contains("apt-get install pgbouncer") && bouncer.contains("/nonexistent/pgbouncer"), "{bouncer}");
    Ok(())
}
