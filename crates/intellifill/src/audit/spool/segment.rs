//! Segment file format: `<seq:020>.jsonl` names, one JSON document per `\n`-terminated line, and a possibly
//! torn (unterminated) last line.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::de::{DeserializeOwned, IgnoredAny};

/// Extension of segment files (and of preserved corrupt lines under `corrupt/`).
pub(super) const SEGMENT_EXT: &str = "jsonl";
/// Number of decimal digits in a segment file name (enough for any `u64`).
const SEQ_DIGITS: usize = 20;

/// Result of splitting a segment's bytes into lines.
pub(super) struct ParsedSegment<T> {
    pub(super) records: Vec<T>,
    /// 0-based line numbers and parse errors of complete lines that did not parse.
    pub(super) corrupt: Vec<(usize, serde_json::Error)>,
    /// Length of the unterminated last line, if any.
    pub(super) torn_tail: Option<usize>,
}

/// `<dir>/<seq:020>.jsonl`
pub(super) fn segment_path(dir: &Path, seq: u64) -> PathBuf {
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
pub(super) fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
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
pub(super) fn count_lines(path: &Path) -> io::Result<(u64, u64)> {
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

pub(super) fn parse_segment<T: DeserializeOwned>(data: &[u8]) -> ParsedSegment<T> {
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
pub(super) fn select_lines<'a>(data: &'a [u8], wanted: &BTreeSet<usize>) -> Vec<&'a [u8]> {
    complete_lines(data).filter(|(line, _)| wanted.contains(line)).map(|(_, bytes)| bytes).collect()
}

/// Complete lines that are not valid JSON at all (used when the caller's type is unknown).
pub(super) fn invalid_json_lines(data: &[u8]) -> Vec<(usize, &[u8])> {
    complete_lines(data).filter(|(_, bytes)| serde_json::from_slice::<IgnoredAny>(bytes).is_err()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
