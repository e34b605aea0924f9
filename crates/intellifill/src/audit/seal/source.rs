//! `audit verify` and `audit export` against the database: one REPEATABLE READ, READ ONLY transaction on the
//! owner's (or a superuser's) connection, so digests and rows come from one snapshot while the servers go on
//! writing and sealing.

use std::pin::pin;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use tokio_postgres::Client;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::canonical::{CanonicalRow, hash_row_json};
use super::digest::Signed;
use super::store;
use super::verify::{Report, Scope, Verifier};

/// A batch of rows being hashed on a blocking thread: each canonical row with its size.
type Hashing = tokio::task::JoinHandle<Result<Vec<(CanonicalRow, i64)>, String>>;

/// Rows hashed per batch (handed to a blocking thread while the next batch streams in).
const BATCH: usize = 4096;

/// Open the snapshot every read below shares.
pub(crate) async fn begin(client: &Client) -> anyhow::Result<()> {
    client.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET LOCAL \"TimeZone\" = 'UTC'").await?;
    Ok(())
}

/// Every digest header, by seq.
pub(crate) async fn headers(client: &Client) -> anyhow::Result<Vec<Signed>> {
    let sql = format!("SELECT {} FROM audit_digests ORDER BY seq", store::HEADER_COLUMNS);
    let rows = client.query(&sql, &[]).await?;
    Ok(rows.iter().map(store::from_row).collect::<Result<_, _>>()?)
}

/// The entries of the digests `seqs`, a few at a time; `each` sees (seq, blob).
pub(crate) async fn entries(client: &Client, seqs: &[i64], mut each: impl FnMut(i64, &[u8])) -> anyhow::Result<()> {
    for chunk in seqs.chunks(64) {
        let rows =
            client.query("SELECT seq, entries FROM audit_digests WHERE seq = ANY($1) ORDER BY seq", &[&chunk]).await?;
        for row in rows {
            let blob: Vec<u8> = row.get(1);
            each(row.get(0), &blob);
        }
    }
    Ok(())
}

/// Retention drops (`audit_retention_log`), when the table exists: (class, cutoff).
pub(crate) async fn retention(client: &Client) -> anyhow::Result<Vec<(String, DateTime<Utc>)>> {
    let exists: bool = client.query_one("SELECT to_regclass('audit_retention_log') IS NOT NULL", &[]).await?.get(0);
    if !exists {
        return Ok(Vec::new());
    }
    let rows = client.query("SELECT class, cutoff FROM audit_retention_log", &[]).await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// The snapshot's xmax: no transaction id at or past it had started.
pub(crate) async fn xmax(client: &Client) -> anyhow::Result<i64> {
    Ok(client.query_one("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint", &[]).await?.get(0))
}

/// Stream the rows in `scope` (optionally only those with txid below `below`), hashed, to `each`.
pub(crate) async fn rows(
    client: &Client,
    scope: &Scope,
    below: Option<i64>,
    ordered: bool,
    mut each: impl FnMut(CanonicalRow, i64) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let sql = format!(
        "SELECT a.txid::text::bigint, (to_jsonb(a) - 'txid')::text FROM audit_log a
          WHERE ($1::timestamptz IS NULL OR a.created_at >= $1) AND ($2::timestamptz IS NULL OR a.created_at < $2)
            AND ($3::uuid IS NULL OR a.organization_id = $3)
            AND ($4::bigint IS NULL OR a.txid < $4::bigint::text::xid8){}",
        if ordered { " ORDER BY a.created_at, a.id" } else { "" }
    );
    let params: [&(dyn ToSql + Sync); 4] = [&scope.from, &scope.to, &scope.org, &below];
    let stream = client.query_raw(&sql, params).await?;
    let mut stream = pin!(stream);
    let mut batch: Vec<(i64, String)> = Vec::with_capacity(BATCH);
    let mut hashing: Option<Hashing> = None;
    loop {
        let next = stream.next().await.transpose()?;
        let done = next.is_none();
        if let Some(row) = next {
            batch.push((row.get(0), row.get(1)));
        }
        if batch.len() == BATCH || (done && !batch.is_empty()) {
            let rows = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
            let previous = hashing.replace(tokio::task::spawn_blocking(move || hash_batch(rows)));
            if let Some(previous) = previous {
                for (row, txid) in previous.await?.map_err(anyhow::Error::msg)? {
                    each(row, txid)?;
                }
            }
        }
        if done {
            break;
        }
    }
    if let Some(last) = hashing {
        for (row, txid) in last.await?.map_err(anyhow::Error::msg)? {
            each(row, txid)?;
        }
    }
    Ok(())
}

fn hash_batch(rows: Vec<(i64, String)>) -> Result<Vec<(CanonicalRow, i64)>, String> {
    rows.into_iter().map(|(txid, doc)| hash_row_json(&doc).map(|r| (r, txid))).collect()
}

/// `intellifill audit verify` against the database.
pub(crate) async fn verify(
    client: &Client,
    mut verifier: Verifier,
    scope: &Scope,
    anchors: &[(i64, String)],
) -> anyhow::Result<Report> {
    begin(client).await?;
    let wanted = verifier.digests(headers(client).await?, true, anchors);
    entries(client, &wanted, |seq, blob| verifier.entries(seq, blob)).await?;
    let retention = retention(client).await?;
    let xmax = xmax(client).await?;
    rows(client, scope, None, false, |row, txid| {
        verifier.row(row, txid);
        Ok(())
    })
    .await?;
    client.batch_execute("COMMIT").await?;
    Ok(verifier.finish(&retention, Some(xmax)))
}

/// Parse `--org`.
pub(crate) fn parse_org(raw: &str) -> Result<Uuid, String> {
    raw.parse().map_err(|_| format!("expected an organization id (uuid), got {raw:?}"))
}
