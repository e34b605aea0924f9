//! The spool directory itself: the advisory lock that keeps a second process out, and fsync of directory
//! entries.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::path::Path;

/// Advisory lock file guarding the directory against a second process.
const LOCK_FILE: &str = "spool.lock";

/// Take the directory's advisory lock (`None` where the filesystem cannot lock).
pub(super) fn lock_dir(dir: &Path) -> io::Result<Option<File>> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new().create(true).truncate(false).write(true).open(&path)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(TryLockError::WouldBlock) => Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            format!("spool directory {} is in use by another spool (lock {})", dir.display(), path.display()),
        )),
        Err(TryLockError::Error(e)) if e.kind() == io::ErrorKind::Unsupported => {
            tracing::warn!(dir = %dir.display(), "filesystem cannot lock the spool directory; proceeding unlocked");
            Ok(None)
        }
        Err(TryLockError::Error(e)) => Err(e),
    }
}

/// fsync a directory so entries created, renamed or deleted in it survive a crash.
#[cfg(unix)]
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Directories cannot be opened (and need no fsync) here.
#[cfg(not(unix))]
pub(super) fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}
