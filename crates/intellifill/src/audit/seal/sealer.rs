//! The sealer: a task in every server instance that, each `AUDIT_SEAL_INTERVAL_SECS`, seals the audit rows
//! whose writing transactions have all finished into signed digests.
//!
//! One transaction per run, REPEATABLE READ so that the horizon and the rows come from one snapshot:
//! `pg_try_advisory_xact_lock` first (one instance seals at a time; transaction-level, so it works through
//! PgBouncer in transaction mode and is released by COMMIT, ROLLBACK or a dropped connection); the chain's
//! head; the horizon, `pg_snapshot_xmin(pg_current_snapshot())`: every transaction with a smaller id has
//! ended, so the rows below it are all visible and no new row can appear there (rows written in request
//! transactions commit in any order; their transaction ids say which are final); then the rows from the
//! head's `to_xid` up to the horizon, hashed here and sealed in digests of at most [`MAX_ROWS`] rows. The
//! digest's sequence number is the primary key: two sealers that both believed they held the chain's head
//! cannot both append.
//!
//! The sealer never extends a chain it cannot vouch for: when the newest digest is older than the one this
//! process last wrote (a digest was removed) or is signed with this key but does not verify, it refuses,
//! logs `event=security.audit_chain_broken` and counts `audit_seal_failures_total{reason}` until an operator
//! looks (`intellifill audit verify`).
//!
//! Metrics: `audit_seal_digests_total`, `audit_seal_rows_total`, `audit_seal_failures_total{reason}` and
//! `audit_seal_last_success_seconds` (unix time of this instance's last run that held the lock and committed,
//! whether or not there was anything to seal; alerts `AuditSealingStale`, `AuditChainBroken`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use ed25519_dalek::SigningKey;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_postgres::types::Type;

use super::canonical::{CanonicalRow, hash_row_json};
use super::digest::{self, Entry, Header, PublicKeys, SignatureProblem, Signed};
use super::store;
use crate::config::SealConfig;
use crate::db::{Db, HeldConnection, Param};
use crate::error::AppError;

/// Rows per digest (a digest's entries take ~75 bytes per row). A single transaction's rows are never split.
pub(crate) const MAX_ROWS: usize = 10_000;
/// Digests written per transaction; a backlog continues in the next transaction at once.
const MAX_DIGESTS_PER_RUN: usize = 20;
/// Key of the sealer's transaction-level advisory lock.
pub(crate) const LOCK_KEY: i64 = 0x5ea1_a0d1_7000_0001;

/// The running sealer of one instance (or none without a key).
pub(crate) struct Sealer {
    stop: Option<watch::Sender<bool>>,
    task: Option<JoinHandle<()>>,
}

impl Sealer {
    /// Start sealing every `config.interval` (the first run at once); without a key, nothing.
    pub(crate) fn start(config: &SealConfig, db: Db) -> Sealer {
        let Some(key) = config.key.clone() else {
            tracing::warn!(
                event = "audit.sealing_off",
                "audit sealing is off (no AUDIT_SIGNING_KEY, or AUDIT_SEALING=off): the audit trail is not tamper-evident"
            );
            return Sealer { stop: None, task: None };
        };
        tracing::info!(key_id = %digest::key_id(&key.verifying_key()), "audit sealing on");
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(key, config.interval, db, stopped));
        Sealer { stop: Some(stop), task: Some(task) }
    }

    /// Stop after the run in progress, if any (its transaction commits or rolls back as a whole).
    pub(crate) async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// What one run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Another instance holds the lock.
    Busy,
    /// Digests and rows written; `more`: rows below the horizon remain (a backlog).
    Sealed { digests: usize, rows: usize, more: bool },
}

/// The newest digest this process wrote or checked: the chain must keep containing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Known {
    pub seq: i64,
    pub hash: [u8; 32],
}

async fn run(key: SigningKey, interval: Duration, db: Db, mut stopped: watch::Receiver<bool>) {
    let mut known = None;
    loop {
        let outcome = seal_once(&db, &key, &mut known).await;
        if matches!(outcome, Ok(Outcome::Sealed { .. })) {
            metrics::gauge!("audit_seal_last_success_seconds").set(Utc::now().timestamp() as f64);
        }
        let again = match outcome {
            Ok(Outcome::Sealed { more: true, .. }) => Duration::ZERO,
            Ok(_) => interval,
            Err(e) => {
                metrics::counter!("audit_seal_failures_total", "reason" => e.reason).increment(1);
                if e.reason == "database" {
                    tracing::warn!(event = "audit.seal_failed", error = %e.message, "audit sealing failed; retrying");
                } else {
                    tracing::error!(event = "security.audit_chain_broken", reason = e.reason, error = %e.message,
                        "audit sealing refused: the digest chain is not the one this instance knows (run `intellifill audit verify`)");
                }
                interval
            }
        };
        tokio::select! {
            _ = stopped.wait_for(|s| *s) => return,
            () = tokio::time::sleep(again) => {}
        }
    }
}

/// Why a run did not seal.
#[derive(Debug)]
pub(crate) struct SealError {
    /// `database` (retried), `head_missing` or `head_forged` (refused).
    pub reason: &'static str,
    pub message: String,
}

impl From<AppError> for SealError {
    fn from(e: AppError) -> Self {
        SealError { reason: "database", message: format!("{e:#}") }
    }
}

/// One run: lock, read the head and horizon, seal what is final, commit.
pub(crate) async fn seal_once(db: &Db, key: &SigningKey, known: &mut Option<Known>) -> Result<Outcome, SealError> {
    let conn = db.hold().await?;
    match seal_in(&conn, key, known).await {
        Ok(outcome) => Ok(outcome),
        Err(e) => {
            // Whatever state the transaction is in, the connection does not go back to the pool with it.
            let _ = conn.unscoped("ROLLBACK", &[]).await;
            conn.discard();
            Err(e)
        }
    }
}

async fn seal_in(conn: &HeldConnection, key: &SigningKey, known: &mut Option<Known>) -> Result<Outcome, SealError> {
    conn.unscoped("BEGIN ISOLATION LEVEL REPEATABLE READ", &[]).await?;
    let locked: bool = conn
        .unscoped("SELECT pg_try_advisory_xact_lock($1)", &[(&LOCK_KEY, Type::INT8)])
        .await?
        .first()
        .map(|r| r.get(0))
        .unwrap_or(false);
    if !locked {
        conn.unscoped("ROLLBACK", &[]).await?;
        return Ok(Outcome::Busy);
    }
    conn.unscoped("SET LOCAL statement_timeout = '120s'", &[]).await?;
    let head_sql = format!("SELECT {} FROM audit_digests ORDER BY seq DESC LIMIT 1", store::HEADER_COLUMNS);
    let head = match conn.unscoped(&head_sql, &[]).await?.first() {
        Some(row) => Some(store::from_row(row).map_err(|e| AppError::internal(anyhow::anyhow!(e)))?),
        None => None,
    };
    check_head(head.as_ref(), key, *known)?;
    let horizon: i64 = conn
        .unscoped("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint", &[])
        .await?
        .first()
        .map(|r| r.get(0))
        .unwrap_or(0);
    let (mut seq, mut prev_hash, mut from) = match &head {
        Some(h) => (h.header.seq + 1, h.header.hash(), h.header.to_xid),
        None => (1, [0; 32], 0),
    };
    let key_id = digest::key_id(&key.verifying_key());
    let (mut digests, mut rows, mut more) = (0, 0, false);
    let mut written = Vec::new();
    while from < horizon {
        if digests == MAX_DIGESTS_PER_RUN {
            more = true;
            break;
        }
        let Some((chunk, to)) = next_chunk(conn, from, horizon).await? else { break };
        let kid = key_id.clone();
        let header_and_entries = tokio::task::spawn_blocking(move || build(chunk, seq, prev_hash, from, to, kid))
            .await
            .map_err(|e| AppError::internal(anyhow::anyhow!("hashing task: {e}")))?;
        let (header, entries) = header_and_entries.map_err(|m| SealError { reason: "database", message: m })?;
        let signature = header.sign(key);
        insert(conn, &header, &entries, &signature).await?;
        rows += header.row_count as usize;
        digests += 1;
        written.push((header.seq, header.hash(), header.row_count, header.to_xid));
        prev_hash = header.hash();
        from = to;
        seq += 1;
    }
    conn.unscoped("COMMIT", &[]).await?;
    if let Some(&(seq, hash, ..)) = written.last() {
        *known = Some(Known { seq, hash });
    } else if let Some(h) = &head {
        *known = Some(Known { seq: h.header.seq, hash: h.header.hash() });
    }
    for (seq, hash, count, to_xid) in written {
        // The digest heads in the log are anchors kept outside the database (`audit verify --anchor`).
        tracing::info!(event = "audit.sealed", seq, hash = %hex::encode(hash), rows = count, to_xid, "audit digest sealed");
    }
    metrics::counter!("audit_seal_digests_total").increment(digests as u64);
    metrics::counter!("audit_seal_rows_total").increment(rows as u64);
    Ok(Outcome::Sealed { digests, rows, more })
}

/// The chain's head must still be (or follow) the digest this process last saw, and verify when this key
/// signed it.
fn check_head(head: Option<&Signed>, key: &SigningKey, known: Option<Known>) -> Result<(), SealError> {
    if let Some(known) = known {
        let Some(head) = head else {
            return Err(SealError {
                reason: "head_missing",
                message: format!("digest {} and every other digest are gone", known.seq),
            });
        };
        if head.header.seq < known.seq || (head.header.seq == known.seq && head.header.hash() != known.hash) {
            return Err(SealError {
                reason: "head_missing",
                message: format!("the newest digest is {} but this instance saw digest {}", head.header.seq, known.seq),
            });
        }
    }
    if let Some(head) = head {
        let mut own = PublicKeys::default();
        own.add(key.verifying_key());
        if head.check(&own) == Err(SignatureProblem::Invalid) {
            return Err(SealError {
                reason: "head_forged",
                message: format!("digest {} carries this key's id but its signature does not verify", head.header.seq),
            });
        }
    }
    Ok(())
}

/// The rows of the next digest and the end of its range: at most [`MAX_ROWS`] rows, never splitting one
/// transaction's rows; `None` when no row is left below the horizon.
async fn next_chunk(
    conn: &HeldConnection,
    from: i64,
    horizon: i64,
) -> Result<Option<(Vec<(i64, String)>, i64)>, SealError> {
    let limit = MAX_ROWS as i32;
    let mut rows = fetch(conn, from, horizon, limit).await?;
    if rows.is_empty() {
        return Ok(None);
    }
    if rows.len() < MAX_ROWS {
        return Ok(Some((rows, horizon)));
    }
    let last = rows.last().map(|r| r.0).unwrap_or(from);
    if rows.first().map(|r| r.0) == Some(last) {
        // One transaction wrote all of these (and maybe more): seal all of its rows together.
        let all = fetch(conn, last, last + 1, i32::MAX).await?;
        return Ok(Some((all, last + 1)));
    }
    rows.retain(|r| r.0 < last);
    Ok(Some((rows, last)))
}

async fn fetch(conn: &HeldConnection, from: i64, below: i64, limit: i32) -> Result<Vec<(i64, String)>, SealError> {
    let rows = conn
        .unscoped(
            "SELECT txid, doc FROM audit_seal_rows($1, $2, $3)",
            &[(&from, Type::INT8), (&below, Type::INT8), (&limit, Type::INT4)],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Hash the rows and make the digest header (unsigned) and its entries.
pub(crate) fn build(
    rows: Vec<(i64, String)>,
    seq: i64,
    prev_hash: [u8; 32],
    from_xid: i64,
    to_xid: i64,
    key_id: String,
) -> Result<(Header, Vec<u8>), String> {
    let mut blob = Vec::with_capacity(rows.len() * 80);
    let (mut first, mut last): (Option<DateTime<Utc>>, Option<DateTime<Utc>>) = (None, None);
    for (_, doc) in &rows {
        let CanonicalRow { facts, hash, .. } = hash_row_json(doc)?;
        first = Some(first.map_or(facts.created_at, |f| f.min(facts.created_at)));
        last = Some(last.map_or(facts.created_at, |l| l.max(facts.created_at)));
        let entry = Entry {
            id: facts.id,
            created_at: facts.created_at,
            org_tag: digest::org_tag(facts.organization_id),
            retention_class: facts.retention_class,
            hash,
        };
        digest::encode_entry(&entry, &mut blob);
    }
    let now = Utc::now();
    let sealed_at = DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now);
    let header = Header {
        seq,
        prev_hash,
        from_xid,
        to_xid,
        first_created: first.unwrap_or(sealed_at),
        last_created: last.unwrap_or(sealed_at),
        row_count: rows.len() as i32,
        entries_hash: digest::entries_hash(&blob),
        sealed_at,
        key_id,
    };
    Ok((header, blob))
}

async fn insert(conn: &HeldConnection, h: &Header, entries: &[u8], signature: &[u8; 64]) -> Result<(), SealError> {
    let prev = h.prev_hash.to_vec();
    let entries_hash = h.entries_hash.to_vec();
    let signature = signature.to_vec();
    let entries = entries.to_vec();
    let params: [Param<'_>; 12] = [
        (&h.seq, Type::INT8),
        (&prev, Type::BYTEA),
        (&h.from_xid, Type::INT8),
        (&h.to_xid, Type::INT8),
        (&h.first_created, Type::TIMESTAMPTZ),
        (&h.last_created, Type::TIMESTAMPTZ),
        (&h.row_count, Type::INT4),
        (&entries, Type::BYTEA),
        (&entries_hash, Type::BYTEA),
        (&h.sealed_at, Type::TIMESTAMPTZ),
        (&h.key_id, Type::TEXT),
        (&signature, Type::BYTEA),
    ];
    conn.unscoped(
        "INSERT INTO audit_digests (seq, prev_hash, from_xid, to_xid, first_created, last_created, row_count, \
         entries, entries_hash, sealed_at, key_id, signature) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        &params,
    )
    .await?;
    Ok(())
}
