//! The database ceiling: `pgbench` running, as the runtime role with RLS on, the very transaction the server
//! runs for a knowledge list request, with the same round trips: one pipeline (BEGIN, the context statement,
//! the user row, `org_access`), the page query, COMMIT; unnamed statements (`-M extended`). One script per
//! seeded (user, organization) pair with the ids as literals (pgbench variables cannot hold UUIDs picked at
//! random), chosen at random per transaction.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;
use uuid::Uuid;

/// pgbench accepts at most 128 scripts.
const MAX_SCRIPTS: usize = 128;

#[derive(Debug, Clone, Serialize)]
pub(crate) struct PgbenchResult {
    pub clients: usize,
    pub threads: usize,
    pub duration_secs: u64,
    pub tps: f64,
    pub latency_avg_ms: Option<f64>,
    pub transactions: Option<u64>,
    pub failed: Option<u64>,
    pub command: String,
    /// CPU the Postgres cluster used during the run divided by the transactions, in microseconds (filled in
    /// by the caller, which knows the cluster).
    pub postgres_cpu_us_per_tx: Option<f64>,
}

/// The pgbench binary: `PG_BIN_DIR`, the newest `/usr/lib/postgresql/*/bin`, else `PATH`.
pub(crate) fn binary() -> PathBuf {
    if let Ok(dir) = std::env::var("PG_BIN_DIR") {
        let p = Path::new(&dir).join("pgbench");
        if p.exists() {
            return p;
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().map(|e| e.path().join("bin/pgbench")).filter(|p| p.exists()).collect())
        .unwrap_or_default();
    found.sort();
    found.pop().unwrap_or_else(|| PathBuf::from("pgbench"))
}

/// The script of one (user, org) pair.
pub(crate) fn script(user: Uuid, org: Uuid, statement_timeout_ms: u64) -> String {
    format!(
        "\\startpipeline
BEGIN;
SELECT set_user_context('{user}'::uuid), set_org_context('{org}'::uuid), set_config('statement_timeout', '{statement_timeout_ms}', true);
SELECT id, email, role, is_active, organization_id FROM users WHERE id = current_user_id();
SELECT org_status, member_role, member_status FROM org_access('{org}'::uuid);
\\endpipeline
SELECT id, title, left(content, 280), created_by, created_at, updated_at FROM knowledge_sources WHERE organization_id = '{org}'::uuid AND (NULL::timestamptz IS NULL OR (created_at, id) < (NULL::timestamptz, NULL::uuid)) ORDER BY created_at DESC, id DESC LIMIT 21;
COMMIT;
"
    )
}

pub(crate) struct PgbenchRun<'a> {
    pub dir: &'a Path,
    pub pairs: &'a [(Uuid, Uuid)],
    pub port: u16,
    pub user: &'a str,
    pub password: &'a str,
    pub database: &'a str,
    pub clients: usize,
    pub threads: usize,
    pub duration: Duration,
}

pub(crate) async fn run(r: PgbenchRun<'_>) -> Result<PgbenchResult> {
    if r.pairs.is_empty() {
        bail!("no (user, org) pairs for pgbench");
    }
    let scripts_dir = r.dir.join("pgbench");
    std::fs::create_dir_all(&scripts_dir)?;
    let mut args: Vec<String> = Vec::new();
    for (i, (user, org)) in r.pairs.iter().take(MAX_SCRIPTS).enumerate() {
        let path = scripts_dir.join(format!("list-{i}.sql"));
        std::fs::write(&path, script(*user, *org, 10_000))?;
        args.push("-f".into());
        args.push(format!("{}@1", path.display()));
    }
    let secs = r.duration.as_secs().max(1);
    let threads = r.threads.min(r.clients).max(1);
    args.extend(
        [
            "-n",
            "-M",
            "extended",
            "-h",
            "127.0.0.1",
            "-p",
            &r.port.to_string(),
            "-U",
            r.user,
            "-c",
            &r.clients.to_string(),
            "-j",
            &threads.to_string(),
            "-T",
            &secs.to_string(),
            r.database,
        ]
        .map(str::to_owned),
    );
    let bin = binary();
    let shown = format!(
        "PGPASSWORD=*** {} -n -M extended -h 127.0.0.1 -p {} -U {} -c {} -j {} -T {} {} -f list-<i>.sql@1 (x{})",
        bin.display(),
        r.port,
        r.user,
        r.clients,
        threads,
        secs,
        r.database,
        r.pairs.len().min(MAX_SCRIPTS)
    );
    let mut cmd = tokio::process::Command::new(&bin);
    cmd.args(&args).env("PGPASSWORD", r.password).kill_on_drop(true);
    let output = tokio::time::timeout(r.duration + Duration::from_secs(60), cmd.output())
        .await
        .map_err(|_| anyhow!("pgbench did not finish in time"))?
        .with_context(|| format!("running {} (install postgresql-15: scripts/setup)", bin.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!("pgbench failed ({}):\n{stdout}\n{stderr}", output.status);
    }
    let field = |prefix: &str| -> Option<String> {
        stdout.lines().find_map(|l| l.trim().strip_prefix(prefix)).map(|rest| rest.trim().to_owned())
    };
    let number = |s: Option<String>| s.and_then(|s| s.split_whitespace().next().and_then(|n| n.parse::<f64>().ok()));
    let tps = number(field("tps = ")).ok_or_else(|| anyhow!("no tps in pgbench output:\n{stdout}\n{stderr}"))?;
    Ok(PgbenchResult {
        clients: r.clients,
        threads,
        duration_secs: secs,
        tps: (tps * 10.0).round() / 10.0,
        latency_avg_ms: number(field("latency average = ")),
        transactions: number(field("number of transactions actually processed: ")).map(|n| n as u64),
        failed: number(field("number of failed transactions: ")).map(|n| n as u64),
        command: shown,
        postgres_cpu_us_per_tx: None,
    })
}
