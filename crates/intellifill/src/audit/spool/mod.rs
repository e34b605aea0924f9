//! Crash-safe, append-only disk spool for audit events.
//!
//! # Why
//!
//! The audit pipeline must never lose an event. When Postgres is down or the in-memory queue is full, events go
//! to this local spool on disk; they are replayed in order when the database is back, and removed only after
//! their rows are committed. After a crash or a restart, the spool is replayed at start-up.
//!
//! # Design
//!
//! The spool is a directory of numbered segment files, `<seq:020>.jsonl`, one JSON document per line.
//!
//! - Appends go to the open (newest) segment. [`Spool::seal`] closes it and the next append starts a new one,
//!   so replay can read a sealed segment while new events keep arriving in the next one.
//! - A segment is deleted ([`Spool::remove`]) only after its events were committed downstream. Replay is
//!   idempotent there: each event has a unique id and the database ignores duplicates, so a crash between the
//!   commit and the delete doubles nothing.
//! - Durability: each [`Spool::append`] call writes its whole batch with one `write` and then fsyncs once
//!   (callers batch); segments are fsync'd again on seal; the directory is fsync'd after a segment is created or
//!   deleted. A crash therefore loses no acknowledged append (one for which `append` returned `Ok`).
//! - A failed append (write or fsync error) truncates the segment back to its last acknowledged length and
//!   abandons it: it becomes sealed, and the next append opens a fresh segment. Unacknowledged bytes can thus
//!   never be glued to the front of a later record.
//! - A torn last line (a crash mid-write leaves a line without its `\n`) is detected and skipped with a
//!   warning: never a panic, never a lost earlier line. Such a line was by construction never acknowledged,
//!   because `append` returns only after the line's `\n` is written and fsync'd, so it is skipped even if its
//!   bytes happen to parse.
//! - A complete line in the middle of a segment that does not parse is skipped with an error log, counted in
//!   [`Spool::corrupt_lines`], and copied to `<dir>/corrupt/<seq:020>.jsonl` when its segment is removed:
//!   never silently destroyed. Segment numbers also continue after those preserved files, so they are never
//!   overwritten by a later segment of the same number.
//! - On open, every existing segment (including the one that was open when the previous process died) is
//!   considered sealed and is returned by [`Spool::sealed`]; new appends go to a fresh segment numbered after
//!   the highest existing one.
//! - One process at a time: [`Spool::open`] takes an exclusive advisory lock on `<dir>/spool.lock` (held until
//!   the `Spool` is dropped), because a second process would take this one's open segment for a sealed one,
//!   replay it and delete it while it is still being appended to.
//!
//! All I/O is synchronous `std::fs`; call it from `tokio::task::spawn_blocking`. [`Spool`] is `Send + Sync` and
//! is meant to be shared through an `Arc`.

mod append;
mod dir;
mod replay;
mod segment;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use dir::{lock_dir, sync_dir};
use segment::{count_lines, list_segments, segment_path};

/// Subdirectory receiving unparseable middle lines of removed segments.
const CORRUPT_DIR: &str = "corrupt";
/// Number of the first segment of an empty spool.
const FIRST_SEQ: u64 = 1;

/// Identifies one segment file (`<seq:020>.jsonl`). Higher numbers are newer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegmentId(pub u64);

/// An append-only spool of JSON-lines segment files in one directory. See the [module docs](self).
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    state: Mutex<State>,
    pending_records: AtomicU64,
    pending_bytes: AtomicU64,
    corrupt_lines: AtomicU64,
    /// Holds the advisory lock on `spool.lock` for the lifetime of the spool (`None` where the filesystem
    /// does not support locking).
    _lock: Option<File>,
}

#[derive(Debug)]
struct State {
    /// The segment receiving appends; `None` until the first append after open or seal.
    open: Option<OpenSegment>,
    /// Number of the next segment to create. Every segment, sealed or open, has a lower number.
    next_seq: u64,
    /// What is known about sealed segments (counts for the pending metrics, corrupt lines found by `read`).
    sealed: BTreeMap<u64, SealedMeta>,
}

#[derive(Debug)]
struct OpenSegment {
    file: File,
    seq: u64,
    /// Acknowledged (written and fsync'd) bytes.
    len: u64,
    /// Acknowledged records.
    records: u64,
}

#[derive(Debug, Default)]
struct SealedMeta {
    records: u64,
    bytes: u64,
    /// `read` ran on this segment, so `corrupt` is exactly the set of lines that did not parse as the caller's
    /// type (otherwise `remove` scans the file for lines that are not even valid JSON).
    read: bool,
    /// 0-based line numbers of unparseable complete lines, as found by `read`.
    corrupt: BTreeSet<usize>,
}

impl Spool {
    /// Open (creating the directory). Existing segments are all considered sealed (from a previous run) and
    /// will be returned by `sealed()`; new appends go to a fresh segment numbered after the highest existing
    /// one.
    ///
    /// Counts the lines of the existing segments (for [`pending_records`](Self::pending_records)), which reads
    /// them once. Fails with [`io::ErrorKind::WouldBlock`] if another `Spool` (in this or another process)
    /// has the directory open.
    pub fn open(dir: impl Into<PathBuf>) -> io::Result<Spool> {
        let dir = dir.into();
        let existed = dir.is_dir();
        fs::create_dir_all(&dir)?;
        if !existed {
            sync_dir(&dir)?;
            if let Some(parent) = dir.parent() {
                sync_dir(if parent.as_os_str().is_empty() { Path::new(".") } else { parent })?;
            }
        }
        let lock = lock_dir(&dir)?;

        let segments = list_segments(&dir)?;
        let preserved = match list_segments(&dir.join(CORRUPT_DIR)) {
            Ok(seqs) => seqs,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let highest = segments.iter().chain(&preserved).copied().max();
        let next_seq = match highest {
            None => FIRST_SEQ,
            Some(seq) => seq.checked_add(1).ok_or_else(|| io::Error::other("spool segment numbers exhausted"))?,
        };

        let mut sealed = BTreeMap::new();
        let (mut records, mut bytes) = (0u64, 0u64);
        for &seq in &segments {
            let (lines, len) = count_lines(&segment_path(&dir, seq))?;
            records += lines;
            bytes += len;
            sealed.insert(seq, SealedMeta { records: lines, bytes: len, ..SealedMeta::default() });
        }
        if !segments.is_empty() {
            tracing::info!(
                dir = %dir.display(),
                segments = segments.len(),
                records,
                bytes,
                "audit spool holds segments from a previous run; they will be replayed"
            );
        }

        Ok(Spool {
            dir,
            state: Mutex::new(State { open: None, next_seq, sealed }),
            pending_records: AtomicU64::new(records),
            pending_bytes: AtomicU64::new(bytes),
            corrupt_lines: AtomicU64::new(0),
            _lock: lock,
        })
    }

    /// Records appended since open and not yet removed (approximate is fine; count lines appended + lines in
    /// pre-existing segments at open, minus removed segments' lines). Used for metrics/health.
    pub fn pending_records(&self) -> u64 {
        self.pending_records.load(Ordering::Relaxed)
    }

    /// Bytes currently on disk across segments.
    pub fn pending_bytes(&self) -> u64 {
        self.pending_bytes.load(Ordering::Relaxed)
    }

    /// Unparseable complete lines found since open (by `read`, or by `remove` of an unread segment).
    pub fn corrupt_lines(&self) -> u64 {
        self.corrupt_lines.load(Ordering::Relaxed)
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        // Nothing in a critical section panics; if something ever did, the state is still consistent enough to
        // keep spooling, which beats losing events.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Refuse the open segment (and numbers not yet handed out, which could become the open segment).
    fn check_sealed(&self, id: SegmentId, what: &str) -> io::Result<()> {
        let state = self.lock_state();
        if state.open.as_ref().is_some_and(|segment| segment.seq == id.0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("spool: cannot {what} segment {} while it is open; seal() it first", id.0),
            ));
        }
        if id.0 >= state.next_seq {
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("spool: no sealed segment {}", id.0)));
        }
        Ok(())
    }
}
