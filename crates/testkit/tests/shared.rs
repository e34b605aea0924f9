//! Shared: one cluster per run, also across processes (simulated by re-running this test binary
//! with a fake `NEXTEST_RUN_ID`), `once`, `create_database` with a template, and cleanup by the
//! reaper once the run's owner process exits.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

mod common;

use anyhow::{Context, Result, anyhow, bail, ensure};
use common::listening;
use testkit::Shared;

const CHILD_ENV: &str = "TESTKIT_SHARED_CHILD";
const ONCE_LOG_ENV: &str = "TESTKIT_ONCE_LOG";

/// Not a test on its own: does nothing unless started by `run_child` below.
#[tokio::test]
async fn child_process_entry() -> Result<()> {
    if std::env::var_os(CHILD_ENV).is_none() {
        return Ok(());
    }
    let shared = Shared::get().await?;
    let log = std::env::var(ONCE_LOG_ENV)?;
    shared
        .once("child-once", || async move {
            use std::io::Write;
            let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&log)?;
            writeln!(file, "ran in {}", std::process::id())?;
            // Widen the window in which the other child would run it too if locking were broken.
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok(())
        })
        .await?;
    let client = shared.superuser_client("postgres").await?;
    client.simple_query("SELECT 1").await?;
    println!("TESTKIT_CHILD pg={} redis={} dir={}", shared.pg_port(), shared.redis_port(), shared.dir().display());
    Ok(())
}

struct ChildReport {
    pg: u16,
    redis: u16,
    dir: PathBuf,
}

/// Runs `child_process_entry` in a new process of this binary as part of run `run_id`;
/// `via_shell` interposes an `sh` process that becomes the run's owner and exits afterwards.
async fn run_child(run_id: &str, once_log: &Path, via_shell: bool) -> Result<ChildReport> {
    let exe = std::env::current_exe()?;
    let mut cmd = if via_shell {
        let mut cmd = tokio::process::Command::new("sh");
        cmd.args(["-c", "\"$@\"; exit 0", "sh"]).arg(&exe);
        cmd
    } else {
        tokio::process::Command::new(&exe)
    };
    cmd.args(["child_process_entry", "--exact", "--nocapture", "--test-threads=1"])
        .env("NEXTEST_RUN_ID", run_id)
        .env(CHILD_ENV, "1")
        .env(ONCE_LOG_ENV, once_log)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out =
        tokio::time::timeout(Duration::from_secs(60), cmd.output()).await.context("child test process timed out")??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("TESTKIT_CHILD ").map(|(_, rest)| rest.trim_end()))
        .ok_or_else(|| anyhow!("child failed ({}):\n{stdout}\n{}", out.status, String::from_utf8_lossy(&out.stderr)))?;
    let field = |name: &str| -> Result<&str> {
        line.split(' ')
            .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
            .ok_or_else(|| anyhow!("no {name} in {line:?}"))
    };
    Ok(ChildReport {
        pg: field("pg")?.parse()?,
        redis: field("redis")?.parse()?,
        dir: PathBuf::from(line.split_once(" dir=").map(|(_, d)| d).unwrap_or_default()),
    })
}

#[tokio::test]
async fn two_processes_of_one_run_share_one_cluster() -> Result<()> {
    let run_id = uuid::Uuid::new_v4().to_string();
    let once_log = std::env::temp_dir().join(format!("testkit-once-{}.log", uuid::Uuid::new_v4().simple()));
    let (a, b) = tokio::try_join!(run_child(&run_id, &once_log, false), run_child(&run_id, &once_log, false))?;
    let runs = std::fs::read_to_string(&once_log).unwrap_or_default();
    let _ = std::fs::remove_file(&once_log);
    ensure!(a.pg == b.pg && a.redis == b.redis, "different servers: {}/{} vs {}/{}", a.pg, a.redis, b.pg, b.redis);
    ensure!(a.dir == b.dir, "different dirs");
    ensure!(runs.lines().count() == 1, "`once` ran {} times:\n{runs}", runs.lines().count());
    // The servers outlive the children: their owner (this process) is still alive.
    ensure!(listening(a.pg) && listening(a.redis), "shared servers stopped with their starter");
    Ok(())
}

#[tokio::test]
async fn reaper_cleans_up_when_owner_exits_and_stale_dirs_are_reaped() -> Result<()> {
    // A stale run directory whose owner is long gone (start time 1 never matches a live pid 1).
    let base = std::env::temp_dir().join(testkit::SHARED_BASE_DIR_NAME);
    std::fs::create_dir_all(&base)?;
    let stale = base.join(format!("run-stale{}", &uuid::Uuid::new_v4().simple().to_string()[..8]));
    std::fs::create_dir_all(&stale)?;
    std::fs::write(stale.join("owner"), "1 1")?;

    let once_log = std::env::temp_dir().join(format!("testkit-once-{}.log", uuid::Uuid::new_v4().simple()));
    let report = run_child(&uuid::Uuid::new_v4().to_string(), &once_log, true).await?;
    let _ = std::fs::remove_file(&once_log);
    ensure!(!stale.exists(), "stale dir {} was not reaped", stale.display());

    // The owner (the `sh` wrapper) has exited: the reaper must stop everything and remove the dir.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let gone = !report.dir.exists() && !listening(report.pg) && !listening(report.redis);
        if gone {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "after 15 s: dir exists={} pg listening={} redis listening={}",
                report.dir.exists(),
                listening(report.pg),
                listening(report.redis)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn get_is_process_wide_and_once_runs_once() -> Result<()> {
    let a = Shared::get().await?;
    let b = Shared::get().await?;
    ensure!(std::ptr::eq(a, b), "two Shared instances");
    ensure!(a.pg_port() == b.pg_port() && a.redis_port() == b.redis_port(), "ports differ");
    ensure!(a.pg_superuser_url("x") == format!("postgres://postgres@127.0.0.1:{}/x", a.pg_port()), "url");
    ensure!(a.redis_url() == format!("redis://127.0.0.1:{}", a.redis_port()), "redis url");
    let (p1, p2) = (a.redis_prefix(), a.redis_prefix());
    ensure!(p1 != p2 && p1.starts_with('t') && p1.ends_with(':'), "prefixes {p1} {p2}");

    let name = format!("counter-{}", uuid::Uuid::new_v4());
    let count = Arc::new(AtomicUsize::new(0));
    let tasks = (0..4).map(|_| {
        let count = count.clone();
        let name = name.clone();
        tokio::spawn(async move {
            let shared = Shared::get().await?;
            shared
                .once(&name, || async move {
                    count.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Ok(())
                })
                .await
        })
    });
    for task in tasks {
        task.await??;
    }
    ensure!(count.load(Ordering::SeqCst) == 1, "once ran {} times", count.load(Ordering::SeqCst));

    // A failing initializer leaves no marker: the next call runs again.
    let name = format!("failing-{}", uuid::Uuid::new_v4());
    let err = a.once(&name, || async { Err(anyhow!("boom")) }).await.err().context("failing init reported success")?;
    ensure!(format!("{err:#}").contains("boom"), "error: {err:#}");
    let ran = Arc::new(AtomicUsize::new(0));
    let ran2 = ran.clone();
    a.once(&name, || async move {
        ran2.fetch_add(1, Ordering::SeqCst);
        Ok(())
    })
    .await?;
    ensure!(ran.load(Ordering::SeqCst) == 1, "retry after failure did not run");
    Ok(())
}

#[tokio::test]
async fn create_database_from_template() -> Result<()> {
    let shared = Shared::get().await?;
    shared
        .once("template-v1", || async {
            let client = shared.superuser_client("postgres").await?;
            // Separate statements: CREATE DATABASE cannot run in the implicit transaction of a batch.
            client.batch_execute("CREATE ROLE tk_owner LOGIN").await?;
            client.batch_execute("CREATE DATABASE tk_template").await?;
            let template = shared.superuser_client("tk_template").await?;
            template.batch_execute("CREATE TABLE seeded (v int); INSERT INTO seeded VALUES (42)").await?;
            Ok(())
        })
        .await?;

    let (db1, db2) = tokio::try_join!(
        shared.create_database(Some("tk_template"), Some("tk_owner")),
        shared.create_database(Some("tk_template"), None)
    )?;
    ensure!(db1 != db2, "same name twice");
    ensure!(db1.starts_with("test_") && db1.len() == 37, "name {db1}");

    let client = shared.superuser_client(&db1).await?;
    let row = client.query_one("SELECT v FROM seeded", &[]).await?;
    ensure!(row.try_get::<_, i32>(0)? == 42, "template data missing");
    let row =
        client.query_one("SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = $1", &[&db1]).await?;
    ensure!(row.try_get::<_, String>(0)? == "tk_owner", "owner");

    let plain = shared.create_database(None, None).await?;
    let client = shared.superuser_client(&plain).await?;
    ensure!(
        client.query("SELECT 1 FROM pg_tables WHERE tablename = 'seeded'", &[]).await?.is_empty(),
        "plain db has template data"
    );

    let err =
        shared.create_database(Some("no_such_template"), None).await.err().context("missing template accepted")?;
    ensure!(err.to_string().contains("no_such_template") && err.to_string().contains("does not exist"), "error: {err}");
    Ok(())
}
