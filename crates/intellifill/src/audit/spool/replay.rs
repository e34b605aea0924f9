//! Replay of sealed segments: listing, reading (skipping torn and corrupt lines) and removal once committed,
//! preserving corrupt lines under `corrupt/`.

use std::fs::{self, File};
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::de::DeserializeOwned;

use super::dir::sync_dir;
use super::segment::{SEGMENT_EXT, invalid_json_lines, list_segments, parse_segment, segment_path, select_lines};
use super::{CORRUPT_DIR, SegmentId, Spool};

impl Spool {
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

fn saturating_sub(counter: &AtomicU64, amount: u64) {
    // The closure always returns Some, so this cannot fail.
    let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(v.saturating_sub(amount)));
}
