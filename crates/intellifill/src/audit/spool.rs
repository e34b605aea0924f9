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

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::Serialize;
use serde::de::{DeserializeOwned, IgnoredAny};

/// Extension of segment files (and of preserved corrupt lines under `corrupt/`).
const SEGMENT_EXT: &str = "jsonl";
/// Number of decimal digits in a segment file name (enough for any `u64`).
const SEQ_DIGITS: usize = 20;
/// Subdirectory receiving unparseable middle lines of removed segments.
const CORRUPT_DIR: &str = "corrupt";
/// Advisory lock file guarding the directory against a second process.
const LOCK_FILE: &str = "spool.lock";
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

/// Result of splitting a segment's bytes into lines.
struct ParsedSegment<T> {
    records: Vec<T>,
    /// 0-based line numbers and parse errors of complete lines that did not parse.
    corrupt: Vec<(usize, serde_json::Error)>,
    /// Length of the unterminated last line, if any.
    torn_tail: Option<usize>,
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

    /// Append records (serialized as one JSON line each) to the open segment, then fsync once. Empty slice =
    /// no-op. Returns bytes written.
    ///
    /// Records are serialized before anything is written: a record that fails to serialize fails the whole
    /// call with [`io::ErrorKind::InvalidInput`] and writes nothing. On a write or fsync error the segment is
    /// truncated back to its last acknowledged length and sealed (abandoned); the error is returned and none
    /// of `records` counts as appended, though some may survive on disk (a retry then duplicates them, which
    /// the idempotent replay absorbs).
    pub fn append<T: Serialize>(&self, records: &[T]) -> io::Result<u64> {
        if records.is_empty() {
            return Ok(0);
        }
        let mut buf = Vec::with_capacity(records.len().saturating_mul(256));
        for (i, record) in records.iter().enumerate() {
            serde_json::to_writer(&mut buf, record).map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("spool: record {i} does not serialize: {e}"))
            })?;
            // Compact JSON never contains a raw newline (strings escape it), so this ends exactly one line.
            buf.push(b'\n');
        }
        let count = records.len() as u64;
        let bytes = buf.len() as u64;

        let mut guard = self.lock_state();
        let state = &mut *guard;
        let segment = match &mut state.open {
            Some(segment) => segment,
            slot @ None => {
                let seq = state.next_seq;
                state.next_seq =
                    seq.checked_add(1).ok_or_else(|| io::Error::other("spool segment numbers exhausted"))?;
                let file = match self.create_segment(seq) {
                    Ok(file) => file,
                    Err(e) => {
                        // The file may exist (empty) even though the call failed: track it like any sealed
                        // segment so it is listed, replayed (as nothing) and removed.
                        state.sealed.insert(seq, SealedMeta::default());
                        return Err(e);
                    }
                };
                slot.insert(OpenSegment { file, seq, len: 0, records: 0 })
            }
        };

        match segment.file.write_all(&buf).and_then(|()| segment.file.sync_data()) {
            Ok(()) => {
                segment.len += bytes;
                segment.records += count;
                self.pending_records.fetch_add(count, Ordering::Relaxed);
                self.pending_bytes.fetch_add(bytes, Ordering::Relaxed);
                Ok(bytes)
            }
            Err(e) => {
                if let Some(segment) = state.open.take() {
                    self.abandon(state, segment, &e);
                }
                Err(e)
            }
        }
    }

    /// Seal the open segment if it holds anything (fsync, close; the next append opens a new segment).
    /// Returns whether one was sealed.
    ///
    /// If the fsync fails the segment stays open and the error is returned (its appends were already fsync'd
    /// one by one, so nothing acknowledged is at risk; sealing can simply be retried).
    pub fn seal(&self) -> io::Result<bool> {
        let mut guard = self.lock_state();
        let state = &mut *guard;
        match &state.open {
            Some(segment) if segment.len > 0 => segment.file.sync_all()?,
            _ => return Ok(false),
        }
        let Some(segment) = state.open.take() else { return Ok(false) };
        state
            .sealed
            .insert(segment.seq, SealedMeta { records: segment.records, bytes: segment.len, ..SealedMeta::default() });
        tracing::debug!(segment = segment.seq, records = segment.records, bytes = segment.len, "spool segment sealed");
        Ok(true)
    }

    /// Sealed segments, oldest first.
    ///
    /// Lists the directory, so it includes segments left by a previous run; the open segment (and any segment
    /// created after this call started) is excluded.
    pub fn sealed(&self) -> io::Result<Vec<SegmentId>> {
        // Snapshot first: a segment created while the directory is listed has a number >= next_seq.
        let (open, next_seq) = {
            let state = self.lock_state();
            (state.open.as_ref().map(|segment| segment.seq), state.next_seq)
        };
        let mut seqs = list_segments(&self.dir)?;
        seqs.retain(|&seq| Some(seq) != open && seq < next_seq);
        Ok(seqs.into_iter().map(SegmentId).collect())
    }

    /// Read a sealed segment's records in order. Lines that do not parse as T: the torn LAST line is skipped
    /// with a tracing::warn; an unparseable line in the middle is skipped with tracing::error and counted in
    /// `corrupt_lines()` (it is moved to `<dir>/corrupt/<seq>.jsonl` when the segment is removed, never
    /// silently destroyed).
    ///
    /// The torn last line is the bytes after the final `\n`; it is skipped even if they parse (an append is
    /// acknowledged only once its `\n` is on disk). Blank lines are ignored. Reading the same segment again
    /// does not count its corrupt lines twice. Reading the open segment fails with
    /// [`io::ErrorKind::InvalidInput`]; a segment that does not exist, with [`io::ErrorKind::NotFound`].
    pub fn read<T: DeserializeOwned>(&self, id: SegmentId) -> io::Result<Vec<T>> {
        self.check_sealed(id, "read")?;
        let path = segment_path(&self.dir, id.0);
        let data = fs::read(&path)?;
        let parsed = parse_segment::<T>(&data);

        if let Some(len) = parsed.torn_tail {
            tracing::warn!(
                segment = id.0,
                path = %path.display(),
                bytes = len,
                "spool segment ends with a torn line (crash mid-write); skipping it"
            );
        }
        for (line, error) in &parsed.corrupt {
            tracing::error!(
                segment = id.0,
                path = %path.display(),
                line = line + 1,
                %error,
                "corrupt spool line skipped; it is preserved under corrupt/ when the segment is removed"
            );
        }

        let mut state = self.lock_state();
        let fresh = match state.sealed.get_mut(&id.0) {
            Some(meta) => {
                meta.read = true;
                parsed.corrupt.iter().filter(|(line, _)| meta.corrupt.insert(*line)).count()
            }
            // Unknown segment (removed concurrently): nothing to remember, count what was seen.
            None => parsed.corrupt.len(),
        };
        self.corrupt_lines.fetch_add(fresh as u64, Ordering::Relaxed);
        Ok(parsed.records)
    }

    /// Delete a sealed segment after its records were committed downstream (fsync the directory).
    ///
    /// Unparseable middle lines are first copied to `<dir>/corrupt/<seq:020>.jsonl` (written to a temporary
    /// file, fsync'd and renamed, so a retry after a crash rewrites the same file). If the segment was `read`,
    /// those are the lines that did not parse as the caller's type; otherwise `remove` scans the segment and
    /// preserves every complete line that is not valid JSON. Removing the open segment fails with
    /// [`io::ErrorKind::InvalidInput`]; a segment that does not exist, with [`io::ErrorKind::NotFound`].
    pub fn remove(&self, id: SegmentId) -> io::Result<()> {
        self.check_sealed(id, "remove")?;
        let path = segment_path(&self.dir, id.0);

        let known = {
            let state = self.lock_state();
            state.sealed.get(&id.0).filter(|meta| meta.read).map(|meta| meta.corrupt.clone())
        };
        if known.as_ref().is_none_or(|corrupt| !corrupt.is_empty()) {
            let data = fs::read(&path)?;
            let lines = match &known {
                Some(corrupt) => select_lines(&data, corrupt),
                None => {
                    let invalid = invalid_json_lines(&data);
                    for &(line, _) in &invalid {
                        tracing::error!(
                            segment = id.0,
                            path = %path.display(),
                            line = line + 1,
                            "corrupt spool line (not JSON) found on removal of an unread segment"
                        );
                    }
                    self.corrupt_lines.fetch_add(invalid.len() as u64, Ordering::Relaxed);
                    invalid.into_iter().map(|(_, bytes)| bytes).collect()
                }
            };
            if !lines.is_empty() {
                self.preserve_corrupt(id, &lines)?;
            }
        }

        let removed = fs::remove_file(&path);
        // Gone from disk either way: stop counting it.
        if removed.as_ref().map_or_else(|e| e.kind() == io::ErrorKind::NotFound, |()| true) {
            let mut state = self.lock_state();
            if let Some(meta) = state.sealed.remove(&id.0) {
                saturating_sub(&self.pending_records, meta.records);
                saturating_sub(&self.pending_bytes, meta.bytes);
            }
        }
        removed?;
        sync_dir(&self.dir)?;
        tracing::debug!(segment = id.0, "spool segment removed");
        Ok(())
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

    fn create_segment(&self, seq: u64) -> io::Result<File> {
        let file = OpenOptions::new().append(true).create_new(true).open(segment_path(&self.dir, seq))?;
        // Make the new directory entry durable before any append into it is acknowledged.
        sync_dir(&self.dir)?;
        tracing::debug!(segment = seq, "spool segment opened");
        Ok(file)
    }

    /// After a failed write or fsync: drop unacknowledged bytes if possible and seal the segment as it is.
    fn abandon(&self, state: &mut State, segment: OpenSegment, cause: &io::Error) {
        let on_disk = match segment.file.set_len(segment.len).and_then(|()| segment.file.sync_all()) {
            Ok(()) => segment.len,
            Err(e) => {
                tracing::warn!(
                    segment = segment.seq,
                    error = %e,
                    "could not truncate spool segment after a failed append; its tail may be torn"
                );
                segment.file.metadata().map_or(segment.len, |meta| meta.len())
            }
        };
        tracing::error!(
            segment = segment.seq,
            error = %cause,
            "spool append failed; segment sealed with its acknowledged records, next append opens a new one"
        );
        self.pending_bytes.fetch_add(on_disk.saturating_sub(segment.len), Ordering::Relaxed);
        state
            .sealed
            .insert(segment.seq, SealedMeta { records: segment.records, bytes: on_disk, ..SealedMeta::default() });
    }

    fn preserve_corrupt(&self, id: SegmentId, lines: &[&[u8]]) -> io::Result<()> {
        let corrupt_dir = self.dir.join(CORRUPT_DIR);
        if !corrupt_dir.is_dir() {
            fs::create_dir_all(&corrupt_dir)?;
            sync_dir(&self.dir)?;
        }
        let target = segment_path(&corrupt_dir, id.0);
        let tmp = target.with_extension(format!("{SEGMENT_EXT}.tmp"));
        let mut buf = Vec::with_capacity(lines.iter().map(|line| line.len() + 1).sum());
        for line in lines {
            buf.extend_from_slice(line);
            buf.push(b'\n');
        }
        {
            let mut file = File::create(&tmp)?;
            file.write_all(&buf)?;
            file.sync_all()?;
        }
        // Segment numbers never repeat (they continue after the files here), so an existing target can only be
        // an earlier attempt at removing this same segment: replacing it is idempotent.
        fs::rename(&tmp, &target)?;
        sync_dir(&corrupt_dir)?;
        tracing::warn!(
            segment = id.0,
            lines = lines.len(),
            path = %target.display(),
            "corrupt spool lines preserved"
        );
        Ok(())
    }
}

/// `<dir>/<seq:020>.jsonl`
fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:0width$}.{SEGMENT_EXT}", width = SEQ_DIGITS))
}

/// Sequence number of a segment file name, `None` for any other name.
fn parse_segment_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(SEGMENT_EXT)?.strip_suffix('.')?;
    if stem.len() != SEQ_DIGITS || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// Sequence numbers of the segment files in `dir`, ascending. Other entries are ignored.
fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut seqs = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Some(seq) = entry.file_name().to_str().and_then(parse_segment_name) else { continue };
        if entry.file_type()?.is_file() {
            seqs.push(seq);
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

/// Complete lines (`\n` count) and length of a file, streaming.
fn count_lines(path: &Path) -> io::Result<(u64, u64)> {
    let mut file = File::open(path)?;
    let mut buf = vec![0u8; 64 * 1024];
    let (mut lines, mut bytes) = (0u64, 0u64);
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => return Ok((lines, bytes)),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let chunk = buf.get(..n).unwrap_or_default();
        lines += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
        bytes += n as u64;
    }
}

/// Splits into the `\n`-terminated part and the unterminated tail (empty if the data ends with `\n`).
fn split_tail(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().rposition(|&b| b == b'\n') {
        Some(last) => data.split_at(last + 1),
        None => (&[], data),
    }
}

/// Complete, non-blank lines with their 0-based line numbers.
fn complete_lines(data: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let (body, _) = split_tail(data);
    body.split(|&b| b == b'\n').enumerate().filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace))
}

fn parse_segment<T: DeserializeOwned>(data: &[u8]) -> ParsedSegment<T> {
    let (_, tail) = split_tail(data);
    let mut parsed = ParsedSegment {
        records: Vec::new(),
        corrupt: Vec::new(),
        torn_tail: (!tail.iter().all(u8::is_ascii_whitespace)).then_some(tail.len()),
    };
    for (line, bytes) in complete_lines(data) {
        match serde_json::from_slice::<T>(bytes) {
            Ok(record) => parsed.records.push(record),
            Err(error) => parsed.corrupt.push((line, error)),
        }
    }
    parsed
}

/// The complete lines at the given line numbers.
fn select_lines<'a>(data: &'a [u8], wanted: &BTreeSet<usize>) -> Vec<&'a [u8]> {
    complete_lines(data).filter(|(line, _)| wanted.contains(line)).map(|(_, bytes)| bytes).collect()
}

/// Complete lines that are not valid JSON at all (used when the caller's type is unknown).
fn invalid_json_lines(data: &[u8]) -> Vec<(usize, &[u8])> {
    complete_lines(data).filter(|(_, bytes)| serde_json::from_slice::<IgnoredAny>(bytes).is_err()).collect()
}

fn saturating_sub(counter: &AtomicU64, amount: u64) {
    // The closure always returns Some, so this cannot fail.
    let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(v.saturating_sub(amount)));
}

/// Take the directory's advisory lock (`None` where the filesystem cannot lock).
fn lock_dir(dir: &Path) -> io::Result<Option<File>> {
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
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Directories cannot be opened (and need no fsync) here.
#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serializer};
    use std::collections::HashSet;
    use std::sync::Arc;

    #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
    struct Event {
        id: u64,
        source: u32,
        text: String,
    }

    fn ev(id: u64) -> Event {
        Event { id, source: 0, text: format!("event {id} with \"quotes\" and a\nnewline") }
    }

    fn evs(ids: std::ops::Range<u64>) -> Vec<Event> {
        ids.map(ev).collect()
    }

    fn tmp() -> tempfile::TempDir {
        tempfile::tempdir().expect("tempdir")
    }

    fn open(dir: &Path) -> Spool {
        Spool::open(dir).expect("open spool")
    }

    fn read_all(spool: &Spool) -> Vec<Event> {
        let mut out = Vec::new();
        for id in spool.sealed().expect("sealed") {
            out.extend(spool.read::<Event>(id).expect("read"));
        }
        out
    }

    fn raw_append(spool: &Spool, id: SegmentId, bytes: &[u8]) {
        let mut file =
            OpenOptions::new().append(true).open(segment_path(spool.dir(), id.0)).expect("open segment file");
        file.write_all(bytes).expect("raw write");
    }

    fn file_len(path: &Path) -> u64 {
        fs::metadata(path).expect("metadata").len()
    }

    #[test]
    fn spool_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Spool>();
        assert_send_sync::<Arc<Spool>>();
    }

    #[test]
    fn append_seal_read_round_trip_preserves_order() {
        let dir = tmp();
        let spool = open(dir.path());
        let mut expected = Vec::new();
        for batch in 0..5u64 {
            let records = evs(batch * 3..batch * 3 + 3);
            let written = spool.append(&records).expect("append");
            assert!(written > 0);
            expected.extend(records);
        }
        assert!(spool.seal().expect("seal"));
        let sealed = spool.sealed().expect("sealed");
        assert_eq!(sealed.len(), 1);
        assert_eq!(spool.read::<Event>(sealed[0]).expect("read"), expected);
        assert_eq!(spool.pending_records(), 15);
    }

    #[test]
    fn append_returns_bytes_written_and_counts_them() {
        let dir = tmp();
        let spool = open(dir.path());
        let records = evs(0..4);
        let expected: u64 = records.iter().map(|r| serde_json::to_vec(r).expect("json").len() as u64 + 1).sum();
        assert_eq!(spool.append(&records).expect("append"), expected);
        assert_eq!(spool.pending_bytes(), expected);
        assert_eq!(spool.pending_records(), 4);
        assert!(spool.seal().expect("seal"));
        let id = spool.sealed().expect("sealed")[0];
        assert_eq!(file_len(&segment_path(dir.path(), id.0)), expected);
    }

    #[test]
    fn sealed_lists_oldest_first_and_excludes_open_segment() {
        let dir = tmp();
        let spool = open(dir.path());
        assert!(spool.sealed().expect("sealed").is_empty());
        for i in 0..3 {
            spool.append(&[ev(i)]).expect("append");
            assert!(spool.seal().expect("seal"));
        }
        spool.append(&[ev(99)]).expect("append to open segment");
        let sealed = spool.sealed().expect("sealed");
        assert_eq!(sealed, vec![SegmentId(1), SegmentId(2), SegmentId(3)]);
        assert!(segment_path(dir.path(), 4).is_file(), "open segment exists on disk");
        let firsts: Vec<u64> = sealed.iter().map(|&id| spool.read::<Event>(id).expect("read")[0].id).collect();
        assert_eq!(firsts, vec![0, 1, 2]);
    }

    #[test]
    fn appends_after_seal_go_to_a_new_segment() {
        let dir = tmp();
        let spool = open(dir.path());
        spool.append(&evs(0..2)).expect("append");
        assert!(spool.seal().expect("seal"));
        let first = segment_path(dir.path(), 1);
        let first_len = file_len(&first);
        spool.append(&evs(2..4)).expect("append");
        assert_eq!(file_len(&first), first_len, "sealed segment untouched");
        assert!(spool.seal().expect("seal"));
        let sealed = spool.sealed().expect("sealed");
        assert_eq!(sealed, vec![SegmentId(1), SegmentId(2)]);
        assert_eq!(spool.read::<Event>(sealed[0]).expect("read"), evs(0..2));
        assert_eq!(spool.read::<Event>(sealed[1]).expect("read"), evs(2..4));
    }

    #[test]
    fn reopen_after_crash_sees_open_segment_as_sealed_and_numbers_after_it() {
        let dir = tmp();
        {
            let spool = open(dir.path());
            spool.append(&evs(0..3)).expect("append");
            assert!(spool.seal().expect("seal"));
            spool.append(&evs(3..5)).expect("append");
            // Dropped without seal: simulates a crash with segment 2 open.
        }
        let spool = open(dir.path());
        assert_eq!(spool.sealed().expect("sealed"), vec![SegmentId(1), SegmentId(2)]);
        assert_eq!(spool.pending_records(), 5);
        assert_eq!(
            spool.pending_bytes(),
            file_len(&segment_path(dir.path(), 1)) + file_len(&segment_path(dir.path(), 2))
        );
        spool.append(&evs(5..6)).expect("append after reopen");
        assert!(segment_path(dir.path(), 3).is_file(), "numbering continues after the old open segment");
        assert_eq!(spool.sealed().expect("sealed"), vec![SegmentId(1), SegmentId(2)]);
        assert!(spool.seal().expect("seal"));
        assert_eq!(read_all(&spool), evs(0..6));
        assert_eq!(spool.pending_records(), 6);
    }

    #[test]
    fn torn_final_line_without_newline_is_skipped() {
        let dir = tmp();
        let spool = open(dir.path());
        spool.append(&evs(0..3)).expect("append");
        assert!(spool.seal().expect("seal"));
        // A complete JSON document whose newline never made it: not acknowledged, so not returned.
        let line = serde_json::to_vec(&ev(3)).expect("json");
        raw_append(&spool, SegmentId(1), &line);
        assert_eq!(spool.read::<Event>(SegmentId(1)).expect("read"), evs(0..3));
        assert_eq!(spool.corrupt_lines(), 0, "a torn tail is not a corrupt line");
    }

    #[test]
    fn torn_half_json_document_is_skipped_after_crash() {
        let dir = tmp();
        {
            let spool = open(dir.path());
            spool.append(&evs(0..4)).expect("append");
            let line = serde_json::to_vec(&ev(4)).expect("json");
            raw_append(&spool, SegmentId(1), line.get(..line.len() / 2).expect("half"));
        }
        let spool = open(dir.path());
        assert_eq!(spool.pending_records(), 4, "the torn line is not counted");
        assert_eq!(spool.read::<Event>(SegmentId(1)).expect("read"), evs(0..4));
        assert_eq!(spool.corrupt_lines(), 0);
        spool.remove(SegmentId(1)).expect("remove");
        assert!(!dir.path().join(CORRUPT_DIR).exists(), "torn tails are not preserved");
        assert_eq!(spool.pending_records(), 0);
        assert_eq!(spool.pending_bytes(), 0);
    }

    #[test]
    fn torn_zero_filled_tail_is_skipped() {
        let dir = tmp();
        let spool = open(dir.path());
        spool.append(&evs(0..2)).expect("append");
        assert!(spool.seal().expect("seal"));
        raw_append(&spool, SegmentId(1), &[0u8; 300]);
        assert_eq!(spool.read::<Event>(SegmentId(1)).expect("read"), evs(0..2));
    }

    #[test]
    fn segment_holding_only_a_torn_line_reads_empty() {
        let dir = tmp();
        fs::write(segment_path(dir.path(), 7), b"{\"id\":1,\"sou").expect("write");
        let spool = open(dir.path());
        assert_eq!(spool.sealed().expect("sealed"), vec![SegmentId(7)]);
        assert!(spool.read::<Event>(SegmentId(7)).expect("read").is_empty());
        assert_eq!(spool.pending_records(), 0);
    }

    #[test]
    fn corrupt_middle_line_is_skipped_counted_and_preserved_on_remove() {
        let dir = tmp();
        let spool = open(dir.path());
        spool.append(&evs(0..2)).expect("append");
        assert!(spool.seal().expect("seal"));
        let garbage = b"{\"this is\": not json at all";
        raw_append(&spool, SegmentId(1), garbage);
        raw_append(&spool, SegmentId(1), b"\n");
        // Valid JSON, wrong shape: does not parse as Event either.
        raw_append(&spool, SegmentId(1), b"{\"unexpected\":true}\n");
        let tail = [serde_json::to_vec(&ev(2)).expect("json"), b"\n".to_vec()].concat();
        raw_append(&spool, SegmentId(1), &tail);

        assert_eq!(spool.read::<Event>(SegmentId(1)).expect("read"), evs(0..3));
        assert_eq!(spool.corrupt_lines(), 2);
        assert_eq!(spool.read::<Event>(SegmentId(1)).expect("read again"), evs(0..3));
        assert_eq!(spool.corrupt_lines(), 2, "re-reading does not count the same lines twice");

        spool.remove(SegmentId(1)).expect("remove");
        assert!(!segment_path(dir.path(), 1).exists());
        let preserved = fs::read(segment_path(&dir.path().join(CORRUPT_DIR), 1)).expect("preserved file");
        assert_eq!(preserved, [&garbage[..], b"\n{\"unexpected\":true}\n"].concat());
        assert!(spool.sealed().expect("sealed").is_empty(), "corrupt/ is not listed as a segment");
    }

    #[test]
    fn remove_without_read_preserves_lines_that_are_not_json() {
        let dir = tmp();
        let spool = open(dir.path());
        spool.append(&evs(0..1)).expect("append");
        assert!(spool.seal().expect("seal"));
        raw_append(&spool, SegmentId(1), b"\x00\x00garbage\n");
        let tail = [serde_json::to_vec(&ev(1)).expect("json"), b"\n".to_vec()].concat();
        raw_append(&spool, SegmentId(1), &tail);
        spool.remove(SegmentId(1)).expect("remove");
        assert_eq!(spool.corrupt_lines(), 1);
        let preserved = fs::read(segment_path(&dir.path().join(CORRUPT_DIR), 1)).expect("preserved file");
        assert_eq!(preserved, b"\x00\x00garbage\n");
    }

    #[test]
    fn numbering_continues_after_preserved_corrupt_files() {
        let dir = tmp();
        {
            let spool = open(dir.path());
            spool.append(&evs(0..1)).expect("append");
            assert!(spool.seal().expect("seal"));
            raw_append(&spool, SegmentId(1), b"oops\n");
            spool.read::<Event>(SegmentId(1)).expect("read");
            spool.remove(SegmentId(1)).expect("remove");
        }
        let spool = open(dir.path());
        assert!(spool.sealed().expect("sealed").is_empty());
        spool.append(&evs(1..2)).expect("append");
        assert!(segment_path(dir.path(), 2).is_file(), "segment 1 is taken by corrupt/00000000000000000001.jsonl");
    }

    #[test]
    fn remove_deletes_file_and_updates_pending_counts() {
        let dir = tmp();
        let spool = open(dir.path());
        spool.append(&evs(0..3)).expect("append");
        assert!(spool.seal().expect("seal"));
        spool.append(&evs(3..5)).expect("append");
        assert!(spool.seal().expect("seal"));
        let first_len = file_len(&segment_path(dir.path(), 1));
        let second_len = file_len(&segment_path(dir.path(), 2));
        assert_eq!(spool.pending_records(), 5);
        assert_eq!(spool.pending_bytes(), first_len + second_len);

        spool.remove(SegmentId(1)).expect("remove");
        assert!(!segment_path(dir.path(), 1).exists());
        assert_eq!(spool.sealed().expect("sealed"), vec![SegmentId(2)]);
        assert_eq!(spool.pending_records(), 2);
        assert_eq!(spool.pending_bytes(), second_len);

        let err = spool.remove(SegmentId(1)).expect_err("already removed");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert_eq!(spool.pending_records(), 2);

        spool.remove(SegmentId(2)).expect("remove");
        assert_eq!(spool.pending_records(), 0);
        assert_eq!(spool.pending_bytes(), 0);
    }

    #[test]
    fn remove_of_segments_from_a_previous_run_updates_counts() {
        let dir = tmp();
        {
            let spool = open(dir.path());
            spool.append(&evs(0..7)).expect("append");
        }
        let spool = open(dir.path());
        assert_eq!(spool.pending_records(), 7);
        assert_eq!(spool.read::<Event>(SegmentId(1)).expect("read"), evs(0..7));
        spool.remove(SegmentId(1)).expect("remove");
        assert_eq!(spool.pending_records(), 0);
        assert_eq!(spool.pending_bytes(), 0);
    }

    #[test]
    fn empty_append_is_a_noop_and_sealing_an_empty_open_segment_returns_false() {
        let dir = tmp();
        let spool = open(dir.path());
        assert_eq!(spool.append::<Event>(&[]).expect("empty append"), 0);
        assert!(list_segments(dir.path()).expect("list").is_empty(), "no segment file created");
        assert!(!spool.seal().expect("seal nothing"));
        spool.append(&evs(0..1)).expect("append");
        assert!(spool.seal().expect("seal"));
        assert!(!spool.seal().expect("seal again"));
        assert_eq!(spool.append::<Event>(&[]).expect("empty append"), 0);
        assert!(!spool.seal().expect("seal after empty append"));
        assert_eq!(spool.sealed().expect("sealed"), vec![SegmentId(1)]);
        assert_eq!(spool.pending_records(), 1);
    }

    #[test]
    fn reading_or_removing_the_open_segment_is_refused() {
        let dir = tmp();
        let spool = open(dir.path());
        spool.append(&evs(0..2)).expect("append");
        let err = spool.read::<Event>(SegmentId(1)).expect_err("read open segment");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let err = spool.remove(SegmentId(1)).expect_err("remove open segment");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(segment_path(dir.path(), 1).is_file(), "still there");
        // A number not handed out yet could become the open segment: refused too.
        let err = spool.read::<Event>(SegmentId(2)).expect_err("future segment");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(spool.seal().expect("seal"));
        assert_eq!(spool.read::<Event>(SegmentId(1)).expect("read once sealed"), evs(0..2));
    }

    #[test]
    fn ten_thousand_records_in_batches_of_100_round_trip() {
        let dir = tmp();
        let spool = open(dir.path());
        for batch in 0..100u64 {
            spool.append(&evs(batch * 100..batch * 100 + 100)).expect("append");
            if batch % 30 == 29 {
                assert!(spool.seal().expect("seal"));
            }
        }
        assert!(spool.seal().expect("seal"));
        assert_eq!(spool.sealed().expect("sealed").len(), 4);
        assert_eq!(spool.pending_records(), 10_000);
        let all = read_all(&spool);
        assert_eq!(all.len(), 10_000);
        assert!(all == evs(0..10_000), "records differ");
        for id in spool.sealed().expect("sealed") {
            spool.remove(id).expect("remove");
        }
        assert_eq!(spool.pending_records(), 0);
        assert_eq!(spool.pending_bytes(), 0);
        assert_eq!(spool.corrupt_lines(), 0);
    }

    #[test]
    fn concurrent_appends_from_four_threads_produce_every_record_once() {
        const THREADS: u32 = 4;
        const BATCHES: u64 = 50;
        const BATCH: u64 = 20;
        let dir = tmp();
        let spool = Arc::new(open(dir.path()));
        let writers: Vec<_> = (0..THREADS)
            .map(|source| {
                let spool = Arc::clone(&spool);
                std::thread::spawn(move || {
                    for batch in 0..BATCHES {
                        let records: Vec<Event> = (0..BATCH)
                            .map(|i| Event { id: batch * BATCH + i, source, text: format!("t{source}") })
                            .collect();
                        spool.append(&records).expect("append");
                        if batch % 7 == 0 {
                            spool.seal().expect("seal");
                        }
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().expect("writer thread");
        }
        spool.seal().expect("final seal");
        assert!(spool.sealed().expect("sealed").len() > 1, "records spread across segments");

        let all = read_all(&spool);
        let total = u64::from(THREADS) * BATCHES * BATCH;
        assert_eq!(all.len() as u64, total);
        assert_eq!(all.iter().cloned().collect::<HashSet<_>>().len() as u64, total, "each record exactly once");
        assert_eq!(spool.pending_records(), total);
        for source in 0..THREADS {
            let ids: Vec<u64> = all.iter().filter(|e| e.source == source).map(|e| e.id).collect();
            assert_eq!(ids, (0..BATCHES * BATCH).collect::<Vec<_>>(), "thread {source}'s records in order");
        }
    }

    #[test]
    fn record_that_fails_to_serialize_writes_nothing() {
        struct Flaky(bool);
        impl Serialize for Flaky {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                if self.0 { Err(serde::ser::Error::custom("refused")) } else { serializer.serialize_u8(1) }
            }
        }
        let dir = tmp();
        let spool = open(dir.path());
        let err = spool.append(&[Flaky(false), Flaky(true)]).expect_err("serialization fails");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(list_segments(dir.path()).expect("list").is_empty());
        assert_eq!(spool.pending_records(), 0);
        assert_eq!(spool.pending_bytes(), 0);
        assert!(!spool.seal().expect("seal"));
    }

    #[test]
    fn failed_write_abandons_segment_and_keeps_acknowledged_records() {
        let dir = tmp();
        let spool = open(dir.path());
        spool.append(&evs(0..3)).expect("append");
        {
            // Swap the open segment's handle for a read-only one so the next write fails.
            let mut state = spool.lock_state();
            let segment = state.open.as_mut().expect("open segment");
            segment.file = File::open(segment_path(dir.path(), 1)).expect("read-only handle");
        }
        spool.append(&evs(3..5)).expect_err("write fails");
        assert_eq!(spool.sealed().expect("sealed"), vec![SegmentId(1)], "failed segment is sealed");
        assert_eq!(spool.pending_records(), 3);
        spool.append(&evs(5..6)).expect("next append opens a new segment");
        assert!(spool.seal().expect("seal"));
        assert_eq!(spool.sealed().expect("sealed"), vec![SegmentId(1), SegmentId(2)]);
        let all = read_all(&spool);
        assert_eq!(all, [evs(0..3), evs(5..6)].concat());
        assert_eq!(spool.pending_records(), 4);
    }

    #[test]
    fn a_second_spool_on_the_same_directory_is_refused() {
        let dir = tmp();
        let spool = open(dir.path());
        let err = Spool::open(dir.path()).expect_err("directory is locked");
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        drop(spool);
        let _again = open(dir.path());
    }

    #[test]
    fn open_creates_nested_directories_and_ignores_foreign_files() {
        let dir = tmp();
        let path = dir.path().join("a").join("b");
        let spool = open(&path);
        assert_eq!(spool.dir(), path);
        fs::write(path.join("notes.txt"), b"hi").expect("write");
        fs::write(path.join("123.jsonl"), b"{}\n").expect("write");
        fs::write(path.join("00000000000000000009.jsonl.tmp"), b"{}\n").expect("write");
        fs::create_dir(path.join("00000000000000000010.jsonl")).expect("mkdir");
        assert!(spool.sealed().expect("sealed").is_empty());
        drop(spool);
        let spool = open(&path);
        assert!(spool.sealed().expect("sealed").is_empty());
        assert_eq!(spool.pending_records(), 0);
    }

    #[test]
    fn poisoned_lock_is_recovered() {
        let dir = tmp();
        let spool = Arc::new(open(dir.path()));
        spool.append(&evs(0..1)).expect("append");
        let poisoner = Arc::clone(&spool);
        let result = std::thread::spawn(move || {
            let _guard = poisoner.state.lock();
            panic!("poison the spool lock");
        })
        .join();
        assert!(result.is_err());
        assert!(spool.state.is_poisoned());
        spool.append(&evs(1..2)).expect("append after poisoning");
        assert!(spool.seal().expect("seal"));
        assert_eq!(read_all(&spool), evs(0..2));
    }

    #[test]
    fn segment_names_are_zero_padded_to_twenty_digits() {
        assert_eq!(segment_path(Path::new("/s"), 42), PathBuf::from("/s/00000000000000000042.jsonl"));
        assert_eq!(parse_segment_name("00000000000000000042.jsonl"), Some(42));
        assert_eq!(parse_segment_name("18446744073709551615.jsonl"), Some(u64::MAX));
        assert_eq!(parse_segment_name("99999999999999999999.jsonl"), None);
        assert_eq!(parse_segment_name("0000000000000000042.jsonl"), None);
        assert_eq!(parse_segment_name("00000000000000000042.json"), None);
        assert_eq!(parse_segment_name("spool.lock"), None);
    }
}
