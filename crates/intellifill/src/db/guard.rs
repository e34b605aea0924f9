//! Start-up safety check of the runtime database role.
//!
//! Row-level security protects nothing when the server connects as a superuser, as a role with BYPASSRLS, or
//! as (a member of) the role that owns the tables, and nothing when a table lacks ENABLE + FORCE. The server
//! refuses to start in any of those cases, and when the schema is older than this binary.

use super::{Db, map_db_error};
use crate::db::migrate;

/// Tables that must be protected by row-level security.
pub(crate) const TENANT_TABLES: &[&str] = &[
    "organizations",
    "users",
    "organization_memberships",
    "knowledge_sources",
    "audit_log",
    "organization_invitations",
    "membership_departures",
];

const CHECK: &str = "
SELECT r.rolname::text,
       r.rolsuper,
       r.rolbypassrls,
       coalesce((SELECT array_agg(c.relname::text ORDER BY c.relname) FROM pg_class c
                  JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = 'public' AND c.relname = ANY($1)
                   AND pg_has_role(current_user, c.relowner, 'MEMBER')), '{}') AS owned,
       coalesce((SELECT array_agg(c.relname::text ORDER BY c.relname) FROM pg_class c
                  JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = 'public' AND c.relname = ANY($1)
                   AND NOT (c.relrowsecurity AND c.relforcerowsecurity)), '{}') AS unprotected,
       (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' AND c.relname = ANY($1))::int AS present,
       to_regclass('public.schema_migrations') IS NOT NULL AS has_migrations
  FROM pg_roles r WHERE r.rolname = current_user";

/// Fail with a clear message when the runtime role could read around RLS or the schema is not ready.
pub(crate) async fn check_runtime_role(db: &Db) -> anyhow::Result<()> {
    let conn = db.acquire().await.map_err(|e| match &e.source {
        Some(cause) => anyhow::anyhow!(
            "cannot connect with DATABASE_URL: {} ({cause:#}){}",
            e.message,
            if format!("{cause:#}").contains("TLS") {
                "; the server certificate could not be verified: set DATABASE_CA_FILE to its CA (PEM), or \
                 sslmode=disable on a trusted network"
            } else {
                ""
            }
        ),
        None => anyhow::anyhow!("cannot connect with DATABASE_URL: {}", e.message),
    })?;
    let tables: Vec<&str> = TENANT_TABLES.to_vec();
    // Unnamed statements only (`query_typed`): PgBouncer in transaction mode keeps no prepared statements.
    let row = conn
        .query_typed(CHECK, &[(&tables, tokio_postgres::types::Type::TEXT_ARRAY)])
        .await
        .map_err(|e| anyhow::anyhow!("{}", map_db_error(e)))?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("the runtime role could not be inspected"))?;
    let role: String = row.get(0);
    let mut problems = Vec::new();
    if row.get::<_, bool>(1) {
        problems.push(format!("role {role} is a superuser"));
    }
    if row.get::<_, bool>(2) {
        problems.push(format!("role {role} has BYPASSRLS"));
    }
    let owned: Vec<String> = row.get(3);
    if !owned.is_empty() {
        problems.push(format!("role {role} owns (or is a member of the owner of) {}", owned.join(", ")));
    }
    let present: i32 = row.get(5);
    if present < TENANT_TABLES.len() as i32 || !row.get::<_, bool>(6) {
        anyhow::bail!("the database schema is missing: run `intellifill migrate` with DATABASE_MIGRATION_URL first");
    }
    let unprotected: Vec<String> = row.get(4);
    if !unprotected.is_empty() {
        problems.push(format!("tables without ENABLE + FORCE ROW LEVEL SECURITY: {}", unprotected.join(", ")));
    }
    if !problems.is_empty() {
        anyhow::bail!(
            "refusing to start: DATABASE_URL must use the runtime role (not owner, NOBYPASSRLS): {}",
            problems.join("; ")
        );
    }
    let version: Option<i32> = conn
        .query_typed("SELECT max(version) FROM schema_migrations", &[])
        .await
        .map_err(|e| anyhow::anyhow!("cannot read schema_migrations: {e}"))?
        .first()
        .and_then(|r| r.get(0));
    let version = version.unwrap_or(0);
    if version < migrate::latest_version() {
        anyhow::bail!(
            "the database schema is at version {version} but this binary needs {}: run `intellifill migrate`",
            migrate::latest_version()
        );
    }
    Ok(())
}
