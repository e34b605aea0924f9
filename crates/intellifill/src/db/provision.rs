//! Cluster bootstrap for dev mode and tests: the two roles and the database, created through a superuser
//! connection. Production databases get the same shape from their own provisioning (docs/DEPLOY.md).

use super::migrate::connect;

/// Name of the role that owns the schema and runs migrations.
pub const OWNER_ROLE: &str = "intellifill_owner";
/// Name of the role the server connects as.
pub const RUNTIME_ROLE: &str = "intellifill_app";

/// Create the owner and runtime login roles if missing (idempotent).
pub async fn ensure_roles(superuser_url: &str, owner_password: &str, runtime_password: &str) -> anyhow::Result<()> {
    let client = connect(superuser_url).await?;
    for (role, password, attrs) in [
        (OWNER_ROLE, owner_password, "NOSUPERUSER NOBYPASSRLS NOCREATEROLE"),
        (RUNTIME_ROLE, runtime_password, "NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB"),
    ] {
        let exists = client.query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role]).await?.is_some();
        let verb = if exists { "ALTER" } else { "CREATE" };
        // Identifiers and passwords are ours (constants / generated), quoted all the same.
        client
            .batch_execute(&format!("{verb} ROLE {role} LOGIN {attrs} PASSWORD '{}'", password.replace('\'', "''")))
            .await?;
    }
    Ok(())
}

/// Create database `name` owned by the owner role if missing.
pub async fn ensure_database(superuser_url: &str, name: &str) -> anyhow::Result<()> {
    let client = connect(superuser_url).await?;
    if client.query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name]).await?.is_none() {
        client.batch_execute(&format!("CREATE DATABASE \"{name}\" OWNER {OWNER_ROLE}")).await?;
    }
    Ok(())
}
