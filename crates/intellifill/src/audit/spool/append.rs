//! Appending to the open segment: one `write` and one fsync per batch, sealing, and abandoning a segment
//! whose write failed.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::sync::atomic::Ordering;

use serde::Serialize;

use super::dir::sync_dir;
use super::segment::segment_path;
use super::{OpenSegment, SealedMeta, Spool, State};

impl Spool {
    /// Append records (serialized as one JSON line each) to the open segment, then fsync once. Empty slice =
    /// no-op. Returns bytes written.
    ///
    /// Records are serialized before anything is written: a record that fails to serialize fails the whole
    /// call with [`io::ErrorKind::InvalidInput`] and writes nothing. On a write or fsync error the segment is
    /// truncated back to its last acknowledged length and sealed (abandoned); the error is returned and none
    /// of `records` counts as appended, though some may survive on disk (a retry then duplicates them, which
    /// the idempotent replay absorbs).
    pub fn append<T: Serialize>(&self, records: &[T]) -> io::Result<u64> {
        self.append_within(records, None).map(|(_, bytes)| bytes)
    }

    /// [`Spool::append`] of the longest prefix of `records` that keeps the bytes on disk
    /// ([`Spool::pending_bytes`]) within `max_bytes` (`None`: all of them). Returns how many records were
    /// appended and their bytes: `(0, 0)` when not even the first fits, and nothing is written then.
    pub fn append_within<T: Serialize>(&self, records: &[T], max_bytes: Option<u64>) -> io::Result<(usize, u64)> {
        if records.is_empty() {
            return Ok((0, 0));
        }
        let mut buf = Vec::with_capacity(records.len().saturating_mul(256));
        // End of each record's line in `buf`.
        let mut ends = Vec::with_capacity(records.len());
        for (i, record) in records.iter().enumerate() {
            serde_json::to_writer(&mut buf, record).map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("spool: record {i} does not serialize: {e}"))
            })?;
            // Compact JSON never contains a raw newline (strings escape it), so this ends exactly one line.
            buf.push(b'\n');
            ends.push(buf.len());
        }

        let mut guard = self.lock_state();
        let state = &mut *guard;
        let count = match max_bytes {
            None => records.len(),
            Some(max) => {
                let room = max.saturating_sub(self.pending_bytes.load(Ordering::Relaxed));
                ends.iter().take_while(|&&end| end as u64 <= room).count()
            }
        };
        if count == 0 {
            return Ok((0, 0));
        }
        let buf = &buf[..ends[count - 1]];
        let bytes = buf.len() as u64;
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

        match segment.file.write_all(buf).and_then(|()| segment.file.sync_data()) {
            Ok(()) => {
                segment.len += bytes;
                segment.records += count as u64;
                self.pending_records.fetch_add(count as u64, Ordering::Relaxed);
                self.pending_bytes.fetch_add(bytes, Ordering::Relaxed);
                Ok((count, bytes))
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
}
