//! Embedded, versioned migrations.
//!
//! Applied by `intellifill migrate` and by `dev`, always as the owner role over a direct connection
//! (`DATABASE_MIGRATION_URL`, not PgBouncer: the advisory lock below is session-level). Each migration runs in
//! its own transaction and is recorded with a SHA-256 checksum; an applied migration whose file changed is an
//! error, never silently re-run. A session advisory lock serialises concurrent migrators (N instances
//! starting together).

use sha2::{Digest, Sha256};
use tokio_postgres::Client;

/// One embedded migration.
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// All migrations, in order. Append only.
pub const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "init", sql: include_str!("../../migrations/0001_init.sql") },
    Migration { version: 2, name: "audit", sql: include_str!("../../migrations/0002_audit.sql") },
    Migration { version: 3, name: "plan_cache", sql: include_str!("../../migrations/0003_plan_cache.sql") },
    Migration {
        version: 4,
        name: "invitations_roles",
        sql: include_str!("../../migrations/0004_invitations_roles.sql"),
    },
    Migration { version: 5, name: "user_lifecycle", sql: include_str!("../../migrations/0005_user_lifecycle.sql") },
    Migration { version: 6, name: "audit_partitions", sql: include_str!("../../migrations/0006_audit_partitions.sql") },
    Migration { version: 7, name: "audit_digests", sql: include_str!("../../migrations/0007_audit_digests.sql") },
    Migration { version: 8, name: "open_request", sql: include_str!("../../migrations/0008_open_request.sql") },
    Migration { version: 9, name: "helper_context", sql: include_str!("../../migrations/0009_helper_context.sql") },
    Migration {
        version: 10,
        name: "knowledge_excerpt",
        sql: include_str!("../../migrations/0010_knowledge_excerpt.sql"),
    },
];

/// The newest schema version this binary knows.
pub fn latest_version() -> i32 {
    MIGRATIONS.last().map(|m| m.version).unwrap_or(0)
}

fn checksum(sql: &str) -> String {
    hex::encode(Sha256::digest(sql.as_bytes()))
}

/// A fingerprint of every embedded migration (test templates are keyed by it).
pub fn fingerprint() -> String {
    let all: String = MIGRATIONS.iter().map(|m| checksum(m.sql)).collect();
    checksum(&all)[..16].to_owned()
}

const LOCK_KEY: i64 = 0x1e7e_11f1_u64 as i64;

/// Apply every pending migration; returns the versions applied now.
pub async fn run(client: &mut Client) -> anyhow::Result<Vec<i32>> {
    client.execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY]).await?;
    let result = apply_pending(client).await;
    // Unlock even when a migration failed; the session ending would release it too.
    let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY]).await;
    result
}

async fn apply_pending(client: &mut Client) -> anyhow::Result<Vec<i32>> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version    integer PRIMARY KEY,
                name       text NOT NULL,
                checksum   text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )",
        )
        .await?;
    let applied: Vec<(i32, String, String)> = client
        .query("SELECT version, name, checksum FROM schema_migrations ORDER BY version", &[])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    for (version, name, sum) in &applied {
        match MIGRATIONS.iter().find(|m| m.version == *version) {
            None => anyhow::bail!(
                "the database has migration {version} ({name}) that this binary does not know: it is older than the schema"
            ),
            Some(m) if checksum(m.sql) != *sum => {
                anyhow::bail!("migration {version} ({name}) was changed after it was applied (checksum mismatch)")
            }
            Some(_) => {}
        }
    }
    let mut done = Vec::new();
    for m in MIGRATIONS.iter().filter(|m| !applied.iter().any(|(v, _, _)| *v == m.version)) {
        let tx = client.transaction().await?;
        tx.batch_execute(m.sql)
            .await
            .map_err(|e| anyhow::anyhow!("migration {} ({}) failed: {}", m.version, m.name, db_message(&e)))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            &[&m.version, &m.name, &checksum(m.sql)],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(version = m.version, name = m.name, "migration applied");
        done.push(m.version);
    }
    Ok(done)
}

fn db_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

/// Connect over a plain connection (migrations and bootstrap never go through the pool).
pub async fn connect(url: &str) -> anyhow::Result<Client> {
    let tls = super::tls::connector(std::env::var_os("DATABASE_CA_FILE").as_deref().map(std::path::Path::new))?;
    let (client, connection) = tokio_postgres::connect(url, tls)
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to the database: {}", db_message(&e)))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "migration connection closed");
        }
    });
    Ok(client)
}
