use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize, Serializer};

use super::segment::{list_segments, segment_path};
use super::{CORRUPT_DIR, SegmentId, Spool};

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
    let mut file = OpenOptions::new().append(true).open(segment_path(spool.dir(), id.0)).expect("open segment file");
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
    assert_eq!(spool.pending_bytes(), file_len(&segment_path(dir.path(), 1)) + file_len(&segment_path(dir.path(), 2)));
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

/// Bytes of all segment files in the spool directory (what is on disk, not what the spool counts).
fn bytes_on_disk(dir: &Path) -> u64 {
    list_segments(dir).expect("list").into_iter().map(|seq| file_len(&segment_path(dir, seq))).sum()
}

#[test]
fn a_bounded_append_takes_the_records_that_fit_whole_and_never_goes_past_the_bound() {
    let dir = tmp();
    let spool = open(dir.path());
    let line = serde_json::to_vec(&ev(0)).expect("json").len() as u64 + 1;
    let max = 3 * line + line / 2;
    assert_eq!(spool.append_within(&evs(0..2), Some(max)).expect("append"), (2, 2 * line));
    assert_eq!(spool.append_within(&evs(2..5), Some(max)).expect("append"), (1, line), "one more fits whole");
    assert_eq!(spool.append_within(&evs(3..5), Some(max)).expect("append"), (0, 0), "none fits: nothing written");
    assert!(bytes_on_disk(dir.path()) <= max && spool.pending_bytes() == bytes_on_disk(dir.path()));
    // Replay frees room; the next bounded append uses it.
    spool.seal().expect("seal");
    let sealed = spool.sealed().expect("sealed");
    assert_eq!(sealed.iter().map(|id| spool.read::<Event>(*id).expect("read").len()).sum::<usize>(), 3);
    for id in sealed {
        spool.remove(id).expect("remove");
    }
    assert_eq!(spool.append_within(&evs(3..5), Some(max)).expect("append"), (2, 2 * line));
    assert_eq!(spool.append_within(&evs(5..9), None).expect("append").0, 4, "unbounded takes everything");
    spool.seal().expect("seal");
    assert_eq!(read_all(&spool), evs(3..9));
}
