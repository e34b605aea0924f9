//! The verification engine shared by `audit verify` (against the database) and `audit verify --file` (an
//! export, offline): it takes the digests, their entries and the rows, and names every difference.
//!
//! - Digests: each signature against the public keys given (`DIGEST-FORGED`, `DIGEST-UNKNOWN-KEY`), each
//!   `prev_hash` against the previous digest (`CHAIN-BROKEN`), gaps in the sequence (`DIGEST-MISSING`: the
//!   rows of its transaction range cannot be checked and are counted there), each entries blob against its
//!   signed hash, and optional anchors (`seq:hash` kept outside the database, from the sealer's log).
//! - Rows, matched to entries by id: a different hash is `MODIFIED`, or `REORDERED` when the row's
//!   created_at is no longer the sealed one (its place in time order changed: swapped times or ids); a listed
//!   row that is gone is `DELETED`, or expired when the retention log holds a drop of its class with a
//!   later cutoff; a row in no digest is `INSERTED` when its transaction lies in a sealed range, lies in the
//!   future, or the row is older than the seal horizon (the newest digest's sealing time less the grace);
//!   else it is pending (written after the last seal).

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

use super::canonical::{CanonicalRow, timestamp};
use super::digest::{self, PublicKeys, SignatureProblem, Signed};

/// Which rows a verification is about.
#[derive(Debug, Clone, Default)]
pub(crate) struct Scope {
    pub org: Option<Uuid>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

impl Scope {
    fn has_time(&self, t: DateTime<Utc>) -> bool {
        self.from.is_none_or(|f| t >= f) && self.to.is_none_or(|to| t < to)
    }

    /// Whether a digest whose entries span `first..=last` may hold entries in scope.
    pub(crate) fn overlaps(&self, first: DateTime<Utc>, last: DateTime<Utc>) -> bool {
        self.from.is_none_or(|f| last >= f) && self.to.is_none_or(|to| first < to)
    }
}

/// One difference between the trail and its seals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Finding {
    Modified { id: Uuid, created_at: DateTime<Utc>, seq: i64 },
    Reordered { id: Uuid, sealed: DateTime<Utc>, now: DateTime<Utc>, seq: i64 },
    Deleted { id: Uuid, created_at: DateTime<Utc>, class: Option<String>, seq: i64 },
    Inserted { id: Uuid, created_at: DateTime<Utc>, txid: i64, why: &'static str },
    DigestMissing { first: i64, last: i64, from_xid: i64, to_xid: Option<i64>, rows: u64 },
    DigestForged { seq: i64, why: String },
    UnknownKey { seq: i64, key_id: String },
    ChainBroken { seq: i64 },
    AnchorMismatch { seq: i64, expected: String, found: Option<String> },
    Truncated { why: String },
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Modified { id, created_at, seq } => {
                write!(
                    f,
                    "MODIFIED row {id} created {} (digest {seq}): its content differs from the sealed hash",
                    timestamp(*created_at)
                )
            }
            Self::Reordered { id, sealed, now, seq } => write!(
                f,
                "REORDERED row {id} (digest {seq}): sealed with created_at {}, now {}",
                timestamp(*sealed),
                timestamp(*now)
            ),
            Self::Deleted { id, created_at, class, seq } => write!(
                f,
                "DELETED row {id} created {} class {} (digest {seq}): sealed, now gone, and no retention drop covers it",
                timestamp(*created_at),
                class.as_deref().unwrap_or("-")
            ),
            Self::Inserted { id, created_at, txid, why } => {
                write!(f, "INSERTED row {id} created {} txid {txid}: {why}", timestamp(*created_at))
            }
            Self::DigestMissing { first, last, from_xid, to_xid, rows } => {
                let seqs = if first == last { format!("{first}") } else { format!("{first}..{last}") };
                let to = to_xid.map_or("?".to_owned(), |t| t.to_string());
                write!(
                    f,
                    "DIGEST-MISSING seq {seqs} (transactions {from_xid}..{to}): {rows} row(s) there cannot be checked"
                )
            }
            Self::DigestForged { seq, why } => write!(f, "DIGEST-FORGED seq {seq}: {why}"),
            Self::UnknownKey { seq, key_id } => {
                write!(f, "DIGEST-UNKNOWN-KEY seq {seq}: key id {key_id} is not among the public keys given")
            }
            Self::ChainBroken { seq } => {
                write!(f, "CHAIN-BROKEN seq {seq}: its previous hash is not the hash of digest {}", seq - 1)
            }
            Self::AnchorMismatch { seq, expected, found } => write!(
                f,
                "ANCHOR-MISMATCH seq {seq}: the anchor says {expected}, the trail has {}",
                found.as_deref().unwrap_or("no such digest")
            ),
            Self::Truncated { why } => write!(f, "EXPORT-TRUNCATED: {why}"),
        }
    }
}

/// What a verification found, and counts for the summary.
#[derive(Debug, Default)]
pub(crate) struct Report {
    pub findings: Vec<Finding>,
    pub digests: usize,
    pub digests_with_entries: usize,
    pub first_seq: Option<i64>,
    pub last_seq: Option<i64>,
    pub rows: u64,
    pub matched: u64,
    pub pending: u64,
    pub expired: BTreeMap<String, u64>,
}

impl Report {
    pub(crate) fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }

    pub(crate) fn summary(&self) -> String {
        let seqs = match (self.first_seq, self.last_seq) {
            (Some(a), Some(b)) => format!(" (seq {a}..{b})"),
            _ => String::new(),
        };
        let expired: u64 = self.expired.values().sum();
        let by_class: Vec<String> = self.expired.iter().map(|(c, n)| format!("{c} {n}")).collect();
        let expired = if expired == 0 { "0".to_owned() } else { format!("{expired} ({})", by_class.join(", ")) };
        format!(
            "summary: {} digest(s){seqs}, entries read from {}; {} row(s) read, {} match their seal, {} pending (newer than the seal horizon), {} expired by retention; {} problem(s): {}",
            self.digests,
            self.digests_with_entries,
            self.rows,
            self.matched,
            self.pending,
            expired,
            self.findings.len(),
            if self.is_clean() { "the trail verifies" } else { "the trail does NOT verify" }
        )
    }
}

struct Listed {
    seq: i64,
    created_at: DateTime<Utc>,
    class: Option<String>,
    hash: [u8; 32],
    in_scope: bool,
    matched: bool,
}

/// A verification in progress: [`Verifier::digests`], then [`Verifier::entries`] for each wanted digest, then
/// every row, then [`Verifier::finish`].
pub(crate) struct Verifier {
    keys: PublicKeys,
    scope: Scope,
    grace: TimeDelta,
    org_tag: Option<[u8; 16]>,
    headers: HashMap<i64, Signed>,
    /// Transaction ranges of missing digests, with the index of their finding.
    missing: Vec<(i64, Option<i64>, usize)>,
    listed: HashMap<Uuid, Listed>,
    mismatched: Vec<(CanonicalRow, i64)>,
    /// End of the sealed range and the newest sealing time.
    sealed_to: Option<i64>,
    head_sealed_at: Option<DateTime<Utc>>,
    report: Report,
}

impl Verifier {
    pub(crate) fn new(keys: PublicKeys, scope: Scope, grace: TimeDelta) -> Verifier {
        let org_tag = scope.org.map(|o| digest::org_tag(Some(o)));
        Verifier {
            keys,
            scope,
            grace,
            org_tag,
            headers: HashMap::new(),
            missing: Vec::new(),
            listed: HashMap::new(),
            mismatched: Vec::new(),
            sealed_to: None,
            head_sealed_at: None,
            report: Report::default(),
        }
    }

    /// Check every digest header (sorted by seq here); returns the seqs whose entries are needed. `from_start`:
    /// the digests should begin at seq 1 (the database), not anywhere (an export).
    pub(crate) fn digests(
        &mut self,
        mut digests: Vec<Signed>,
        from_start: bool,
        anchors: &[(i64, String)],
    ) -> Vec<i64> {
        digests.sort_by_key(|d| d.header.seq);
        let mut wanted = Vec::new();
        let mut prev: Option<(&Signed, bool)> = None;
        let mut findings = Vec::new();
        for d in &digests {
            let h = &d.header;
            let forged = match d.check(&self.keys) {
                Ok(()) => false,
                Err(SignatureProblem::UnknownKey) => {
                    findings.push(Finding::UnknownKey { seq: h.seq, key_id: h.key_id.clone() });
                    true
                }
                Err(SignatureProblem::Invalid) => {
                    findings.push(Finding::DigestForged { seq: h.seq, why: "the signature does not verify".into() });
                    true
                }
            };
            match prev {
                None if from_start && h.seq != 1 => {
                    self.missing.push((0, Some(h.from_xid), findings.len()));
                    findings.push(Finding::DigestMissing {
                        first: 1,
                        last: h.seq - 1,
                        from_xid: 0,
                        to_xid: Some(h.from_xid),
                        rows: 0,
                    });
                }
                Some((p, _)) if h.seq != p.header.seq + 1 => {
                    self.missing.push((p.header.to_xid, Some(h.from_xid), findings.len()));
                    findings.push(Finding::DigestMissing {
                        first: p.header.seq + 1,
                        last: h.seq - 1,
                        from_xid: p.header.to_xid,
                        to_xid: Some(h.from_xid),
                        rows: 0,
                    });
                }
                Some((p, p_forged)) => {
                    if !p_forged && (h.prev_hash != p.header.hash() || h.from_xid != p.header.to_xid) {
                        findings.push(Finding::ChainBroken { seq: h.seq });
                    }
                }
                None => {
                    if from_start && h.prev_hash != [0; 32] {
                        findings.push(Finding::ChainBroken { seq: h.seq });
                    }
                }
            }
            if self.scope.overlaps(h.first_created, h.last_created) {
                wanted.push(h.seq);
            }
            prev = Some((d, forged));
        }
        for (seq, expected) in anchors {
            let found = digests.iter().find(|d| d.header.seq == *seq).map(|d| hex::encode(d.header.hash()));
            if found.as_deref() != Some(expected.as_str()) {
                findings.push(Finding::AnchorMismatch { seq: *seq, expected: expected.clone(), found });
            }
        }
        if let Some(last) = digests.last() {
            self.sealed_to = Some(last.header.to_xid);
            self.head_sealed_at = digests.iter().map(|d| d.header.sealed_at).max();
            self.report.first_seq = digests.first().map(|d| d.header.seq);
            self.report.last_seq = Some(last.header.seq);
        }
        self.report.digests = digests.len();
        self.report.findings.extend(findings);
        self.headers = digests.into_iter().map(|d| (d.header.seq, d)).collect();
        wanted
    }

    /// The entries of digest `seq`.
    pub(crate) fn entries(&mut self, seq: i64, blob: &[u8]) {
        let Some(d) = self.headers.get(&seq) else { return };
        self.report.digests_with_entries += 1;
        if digest::entries_hash(blob) != d.header.entries_hash {
            self.report.findings.push(Finding::DigestForged { seq, why: "its entries are not the signed ones".into() });
        }
        let entries = match digest::decode_entries(blob) {
            Ok(e) => e,
            Err(why) => {
                self.report
                    .findings
                    .push(Finding::DigestForged { seq, why: format!("its entries cannot be read: {why}") });
                return;
            }
        };
        if entries.len() != d.header.row_count as usize {
            self.report
                .findings
                .push(Finding::DigestForged { seq, why: "its entry count is not the signed one".into() });
        }
        for e in entries {
            let in_scope = self.scope.has_time(e.created_at) && self.org_tag.is_none_or(|t| t == e.org_tag);
            self.listed.insert(
                e.id,
                Listed {
                    seq,
                    created_at: e.created_at,
                    class: e.retention_class,
                    hash: e.hash,
                    in_scope,
                    matched: false,
                },
            );
        }
    }

    /// One row, hashed, and the transaction that wrote it.
    pub(crate) fn row(&mut self, row: CanonicalRow, txid: i64) {
        self.report.rows += 1;
        match self.listed.get_mut(&row.facts.id) {
            Some(l) if !l.matched && l.hash == row.hash => {
                l.matched = true;
                self.report.matched += 1;
            }
            _ => self.mismatched.push((row, txid)),
        }
    }

    /// Rows not matched at once, after every exact match is known (a forged duplicate of an id must not take
    /// the place of the real row), then deletions and the summary.
    pub(crate) fn finish(mut self, retention: &[(String, DateTime<Utc>)], xmax: Option<i64>) -> Report {
        let horizon = self.head_sealed_at.map(|t| t - self.grace);
        for (row, txid) in std::mem::take(&mut self.mismatched) {
            let f = &row.facts;
            if let Some(l) = self.listed.get_mut(&f.id)
                && !l.matched
            {
                l.matched = true;
                self.report.findings.push(if l.created_at != f.created_at {
                    Finding::Reordered { id: f.id, sealed: l.created_at, now: f.created_at, seq: l.seq }
                } else {
                    Finding::Modified { id: f.id, created_at: f.created_at, seq: l.seq }
                });
                continue;
            }
            let duplicate = self.listed.contains_key(&f.id);
            let in_missing = self.missing.iter().find(|(from, to, _)| txid >= *from && to.is_none_or(|t| txid < t));
            let why = if duplicate {
                Some("a second row with the id of a sealed row")
            } else if let Some(&(_, _, index)) = in_missing {
                if let Some(Finding::DigestMissing { rows, .. }) = self.report.findings.get_mut(index) {
                    *rows += 1;
                }
                None
            } else if self.sealed_to.is_some_and(|to| txid < to) {
                Some("its transaction lies in a sealed range, but no digest lists it")
            } else if xmax.is_some_and(|x| txid >= x) {
                Some("its transaction id lies past every transaction the trail knows")
            } else if horizon.is_some_and(|h| f.created_at < h) {
                Some("not sealed, though older than the seal horizon")
            } else {
                self.report.pending += 1;
                None
            };
            if let Some(why) = why {
                self.report.findings.push(Finding::Inserted { id: f.id, created_at: f.created_at, txid, why });
            }
        }
        let mut gone: Vec<(&Uuid, &Listed)> = self.listed.iter().filter(|(_, l)| l.in_scope && !l.matched).collect();
        gone.sort_by_key(|(id, l)| (l.created_at, **id));
        for (id, l) in gone {
            let expired = l
                .class
                .as_ref()
                .is_some_and(|c| retention.iter().any(|(rc, cutoff)| rc == c && *cutoff > l.created_at));
            if expired {
                *self.report.expired.entry(l.class.clone().unwrap_or_default()).or_default() += 1;
            } else {
                self.report.findings.push(Finding::Deleted {
                    id: *id,
                    created_at: l.created_at,
                    class: l.class.clone(),
                    seq: l.seq,
                });
            }
        }
        self.report
    }

    /// The end of the sealed transaction range (rows at or past it are not sealed yet).
    pub(crate) fn sealed_to(&self) -> Option<i64> {
        self.sealed_to
    }

    /// Record a problem found outside the engine (an export's structure).
    pub(crate) fn problem(&mut self, finding: Finding) {
        self.report.findings.push(finding);
    }
}
