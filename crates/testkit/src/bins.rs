//! Locating the server binaries.
//!
//! There is no Docker: the servers are the distribution's own binaries. Debian keeps PostgreSQL's
//! server binaries off `PATH` in `/usr/lib/postgresql/<major>/bin`, so we look there (highest major
//! first) after honouring an explicit `PG_BIN_DIR`, and finally ask `pg_config --bindir`.
//! `redis-server` is looked up via `REDIS_SERVER_BIN`, then `PATH`; `pgbouncer` via `PGBOUNCER_BIN`,
//! then `PATH` and the `sbin` directories (Debian installs it as `/usr/sbin/pgbouncer`, which is not
//! on a non-root `PATH`). A missing binary produces an error that says exactly what to install.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Result, anyhow, bail};

/// Environment variable naming the directory that holds `initdb` and `postgres`.
pub const PG_BIN_DIR_ENV: &str = "PG_BIN_DIR";
/// Environment variable naming the `redis-server` executable.
pub const REDIS_SERVER_BIN_ENV: &str = "REDIS_SERVER_BIN";
/// Environment variable naming the `pgbouncer` executable.
pub const PGBOUNCER_BIN_ENV: &str = "PGBOUNCER_BIN";

const PG_INSTALL_HINT: &str = "install the PostgreSQL server with `apt-get install postgresql-15` \
     (or set PG_BIN_DIR to the directory containing `initdb` and `postgres`)";
const REDIS_INSTALL_HINT: &str = "install it with `apt-get install redis-server` \
     (or set REDIS_SERVER_BIN to the path of the `redis-server` executable)";
const PGBOUNCER_INSTALL_HINT: &str = "install it with `apt-get install pgbouncer` \
     (or set PGBOUNCER_BIN to the path of the `pgbouncer` executable)";

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

fn has_pg_server(dir: &Path) -> bool {
    is_executable(&dir.join("initdb")) && is_executable(&dir.join("postgres"))
}

/// The directory holding PostgreSQL's `initdb` and `postgres`.
pub(crate) fn pg_bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os(PG_BIN_DIR_ENV).filter(|v| !v.is_empty()) {
        let dir = PathBuf::from(dir);
        if has_pg_server(&dir) {
            return Ok(dir);
        }
        bail!(
            "{PG_BIN_DIR_ENV}={} does not contain executable `initdb` and `postgres`; point it at the \
             PostgreSQL server bin directory (e.g. /usr/lib/postgresql/15/bin) or {PG_INSTALL_HINT}",
            dir.display()
        );
    }

    let mut candidates: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let version: Option<Vec<u32>> = name.split('.').map(|p| p.parse().ok()).collect();
            Some((version?, entry.path().join("bin")))
        })
        .filter(|(_, bin)| has_pg_server(bin))
        .collect();
    candidates.sort();
    if let Some((_, dir)) = candidates.pop() {
        return Ok(dir);
    }

    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_pg_server(&dir) {
            return Ok(dir);
        }
    }

    bail!(
        "PostgreSQL server binaries (`initdb`, `postgres`) not found: looked in ${PG_BIN_DIR_ENV}, \
         /usr/lib/postgresql/*/bin and `pg_config --bindir`; {PG_INSTALL_HINT}"
    )
}

/// The `redis-server` executable.
pub(crate) fn redis_server() -> Result<PathBuf> {
    find_executable(REDIS_SERVER_BIN_ENV, "redis-server", &["/usr/bin", "/usr/sbin", "/usr/local/bin"], "on PATH")
        .map_err(|e| anyhow!("{e}; {REDIS_INSTALL_HINT}"))
}

/// The `pgbouncer` executable.
pub(crate) fn pgbouncer() -> Result<PathBuf> {
    let fallbacks = ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"];
    find_executable(PGBOUNCER_BIN_ENV, "pgbouncer", &fallbacks, "on PATH or in /usr/sbin")
        .map_err(|e| anyhow!("{e}; {PGBOUNCER_INSTALL_HINT}"))
}

/// The executable named by `$env` if set (which must be one), else `name` on `PATH` or in one of
/// `fallbacks`; `looked` says where, for the error.
fn find_executable(env: &str, name: &str, fallbacks: &[&str], looked: &str) -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os(env).filter(|v| !v.is_empty()) {
        let bin = PathBuf::from(bin);
        if is_executable(&bin) {
            return Ok(bin);
        }
        bail!("{env}={} is not an executable file", bin.display());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(fallbacks.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|bin| is_executable(bin))
        .ok_or_else(|| anyhow!("`{name}` not found {looked}"))
}
