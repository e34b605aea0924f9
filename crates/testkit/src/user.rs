//! Which OS user runs the PostgreSQL processes.
//!
//! `initdb`, `postgres` and `pg_ctl` refuse to run as root ("cannot be run as root"), yet developer
//! containers and CI commonly run everything as root. When this process's effective uid is 0 we
//! therefore run the PostgreSQL binaries as the `postgres` system user, via
//! [`std::os::unix::process::CommandExt::uid`]/[`gid`](std::os::unix::process::CommandExt::gid), and
//! hand that user the directories it must write to with [`std::os::unix::fs::chown`]. Everything
//! here is std-only because the workspace forbids `unsafe` code (so no `libc::geteuid`).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, anyhow, bail};

/// The name of the system user PostgreSQL is run as when this process is root.
pub(crate) const PG_USER: &str = "postgres";

/// A uid/gid pair to switch to when spawning a child process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

impl RunAs {
    /// Makes `cmd` run as this user (std also drops root's supplementary groups in that case).
    pub(crate) fn apply(&self, cmd: &mut Command) {
        cmd.uid(self.uid).gid(self.gid);
    }

    /// Gives `path` to this user.
    pub(crate) fn chown(&self, path: &Path) -> Result<()> {
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid)).with_context(|| {
            format!("could not chown {} to {PG_USER} (uid {}, gid {})", path.display(), self.uid, self.gid)
        })
    }

    /// Checks that this user can reach `path`, i.e. may search (`x`) every ancestor directory.
    /// Gives an actionable error instead of initdb's bare "Permission denied".
    pub(crate) fn check_traversable(&self, path: &Path) -> Result<()> {
        for dir in path.ancestors().skip(1) {
            let meta = match std::fs::metadata(dir) {
                Ok(m) => m,
                Err(_) => continue,
            };
            let mode = meta.permissions().mode();
            let bit = if meta.uid() == self.uid {
                0o100
            } else if meta.gid() == self.gid {
                0o010
            } else {
                0o001
            };
            if mode & bit == 0 {
                bail!(
                    "PostgreSQL must run as the `{PG_USER}` user (uid {}) because this process is root, \
                     but that user cannot enter {} (mode {:o}, owner uid {}). Use a base directory every \
                     user can traverse (e.g. under /tmp, or set TMPDIR=/tmp), or run `chmod o+x {}`",
                    self.uid,
                    dir.display(),
                    mode & 0o7777,
                    meta.uid(),
                    dir.display()
                );
            }
        }
        Ok(())
    }
}

/// The effective uid of this process (from `/proc/self/status`, falling back to `id -u`).
pub(crate) fn effective_uid() -> Result<u32> {
    if let Ok(status) = std::fs::read_to_string("/proc/self/status")
        && let Some(euid) = parse_status_euid(&status)
    {
        return Ok(euid);
    }
    let out = Command::new("id")
        .arg("-u")
        .output()
        .context("could not determine the effective uid: /proc/self/status is unreadable and `id -u` failed")?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|e| anyhow!("could not parse the output of `id -u`: {e}"))
}

fn parse_status_euid(status: &str) -> Option<u32> {
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    // "Uid:\treal\teffective\tsaved\tfs"
    line.split_whitespace().nth(2)?.parse().ok()
}

/// `Some(user)` when PostgreSQL must be run as another user (this process is root), `None` when
/// it can simply run as the current user.
pub(crate) fn postgres_run_as() -> Result<Option<RunAs>> {
    if effective_uid()? != 0 {
        return Ok(None);
    }
    match lookup_user(PG_USER)? {
        Some(run_as) if run_as.uid != 0 => Ok(Some(run_as)),
        Some(_) => bail!(
            "PostgreSQL refuses to run as root, and the `{PG_USER}` user has uid 0; give it its own \
             uid (e.g. recreate it with `useradd --system {PG_USER}`)"
        ),
        None => bail!(
            "PostgreSQL refuses to run as root and this process runs as root, but there is no \
             `{PG_USER}` system user to run it as. Create one with `useradd --system {PG_USER}` \
             (installing `postgresql-15` via apt also creates it), or run as a non-root user"
        ),
    }
}

/// Looks `name` up in `/etc/passwd`, then via `id` (which also consults NSS, e.g. LDAP).
pub(crate) fn lookup_user(name: &str) -> Result<Option<RunAs>> {
    if let Ok(passwd) = std::fs::read_to_string("/etc/passwd")
        && let Some(found) = parse_passwd(&passwd, name)
    {
        return Ok(Some(found));
    }
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").arg(flag).arg(name).output().ok()?;
        if !out.status.success() {
            return None;
        }
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    Ok(match (id("-u"), id("-g")) {
        (Some(uid), Some(gid)) => Some(RunAs { uid, gid }),
        _ => None,
    })
}

fn parse_passwd(passwd: &str, name: &str) -> Option<RunAs> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != name {
            return None;
        }
        let _password = fields.next()?;
        let uid = fields.next()?.trim().parse().ok()?;
        let gid = fields.next()?.trim().parse().ok()?;
        Some(RunAs { uid, gid })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_passwd_and_status() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      postgres:x:101:104:PostgreSQL administrator,,,:/var/lib/postgresql:/bin/bash\n";
        assert_eq!(parse_passwd(passwd, "postgres"), Some(RunAs { uid: 101, gid: 104 }));
        assert_eq!(parse_passwd(passwd, "nobody"), None);
        assert_eq!(parse_status_euid("Name:\tx\nUid:\t1000\t0\t0\t0\nGid:\t0\t0\t0\t0\n"), Some(0));
    }
}
