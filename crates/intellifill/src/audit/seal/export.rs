//! `intellifill audit export` and its offline check, `intellifill audit verify --file`.
//!
//! The export is JSON lines: an `export` line (scope, key ids), the `digest` lines an auditor needs (every
//! digest from the first to the last that lists a row of the scope; the entries of those that do, the header
//! alone of the others, enough to follow the chain), the retention drops, one `row` line per sealed row of
//! the scope (its canonical form, hashed as the sealer hashed it) and an `end` line with the counts, so a
//! cut file is seen. Rows not sealed yet are left out and counted in `end`. Entries of other organizations'
//! rows in the same digests carry no content: id, time, a hashed organization tag, class and hash.

use std::collections::HashSet;
use std::io::{BufRead, Write};

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio_postgres::Client;

use super::canonical::{hash_row, timestamp};
use super::digest::{self, Header, Signed};
use super::source;
use super::verify::{Finding, Report, Scope, Verifier};

pub(crate) const FORMAT: &str = "intellifill-audit-export-v1";

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// What an export wrote.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Written {
    pub digests: usize,
    pub rows: u64,
    pub unsealed: i64,
}

/// Write the export of `scope` (an organization and a time range) to `out`.
pub(crate) async fn export(client: &Client, scope: &Scope, out: &mut dyn Write) -> anyhow::Result<Written> {
    source::begin(client).await?;
    let headers = source::headers(client).await?;
    let overlapping: Vec<i64> = headers
        .iter()
        .filter(|d| scope.overlaps(d.header.first_created, d.header.last_created))
        .map(|d| d.header.seq)
        .collect();
    let tag = digest::org_tag(scope.org);
    let mut relevant: Vec<(i64, Vec<u8>)> = Vec::new();
    source::entries(client, &overlapping, |seq, blob| {
        let lists = digest::decode_entries(blob).is_ok_and(|entries| {
            entries.iter().any(|e| {
                (scope.org.is_none() || e.org_tag == tag)
                    && scope.from.is_none_or(|f| e.created_at >= f)
                    && scope.to.is_none_or(|t| e.created_at < t)
            })
        });
        if lists {
            relevant.push((seq, blob.to_vec()));
        }
    })
    .await?;
    let span = match (relevant.first(), relevant.last()) {
        (Some(a), Some(b)) => Some((a.0, b.0)),
        _ => None,
    };
    let sealed_to = headers.last().map(|d| d.header.to_xid).unwrap_or(0);
    let mut key_ids: Vec<String> =
        headers.iter().map(|d| d.header.key_id.clone()).collect::<HashSet<_>>().into_iter().collect();
    key_ids.sort();
    let line = json!({
        "type": "export",
        "format": FORMAT,
        "organizationId": scope.org,
        "from": scope.from.map(timestamp),
        "to": scope.to.map(timestamp),
        "exportedAt": timestamp(Utc::now()),
        "keyIds": key_ids,
    });
    writeln!(out, "{line}")?;
    let mut digests = 0;
    for d in headers.iter().filter(|d| span.is_some_and(|(a, b)| d.header.seq >= a && d.header.seq <= b)) {
        let entries = relevant.iter().find(|(seq, _)| *seq == d.header.seq).map(|(_, blob)| b64().encode(blob));
        writeln!(out, "{}", digest_line(d, entries))?;
        digests += 1;
    }
    for (class, cutoff) in source::retention(client).await? {
        writeln!(out, "{}", json!({"type": "retention", "class": class, "cutoff": timestamp(cutoff)}))?;
    }
    let mut rows = 0u64;
    source::rows(client, scope, Some(sealed_to), true, |row, txid| {
        writeln!(out, "{{\"type\":\"row\",\"txid\":{txid},\"row\":{}}}", row.canonical)?;
        rows += 1;
        Ok(())
    })
    .await?;
    let unsealed: i64 = client
        .query_one(
            "SELECT count(*) FROM audit_log a WHERE ($1::timestamptz IS NULL OR a.created_at >= $1)
               AND ($2::timestamptz IS NULL OR a.created_at < $2) AND ($3::uuid IS NULL OR a.organization_id = $3)
               AND a.txid >= $4::bigint::text::xid8",
            &[&scope.from, &scope.to, &scope.org, &sealed_to],
        )
        .await?
        .get(0);
    client.batch_execute("COMMIT").await?;
    writeln!(out, "{}", json!({"type": "end", "digests": digests, "rows": rows, "unsealedRows": unsealed}))?;
    out.flush()?;
    Ok(Written { digests, rows, unsealed })
}

fn digest_line(d: &Signed, entries: Option<String>) -> Value {
    let h = &d.header;
    json!({
        "type": "digest",
        "seq": h.seq,
        "prevHash": hex::encode(h.prev_hash),
        "fromXid": h.from_xid,
        "toXid": h.to_xid,
        "firstCreated": timestamp(h.first_created),
        "lastCreated": timestamp(h.last_created),
        "rowCount": h.row_count,
        "entriesHash": hex::encode(h.entries_hash),
        "sealedAt": timestamp(h.sealed_at),
        "keyId": h.key_id,
        "signature": b64().encode(&d.signature),
        "entries": entries,
    })
}

fn parse_digest(v: &Value) -> Result<(Signed, Option<Vec<u8>>), String> {
    let text = |k: &str| v[k].as_str().ok_or_else(|| format!("digest line without {k}"));
    let int = |k: &str| v[k].as_i64().ok_or_else(|| format!("digest line without {k}"));
    let time = |k: &str| -> Result<DateTime<Utc>, String> {
        DateTime::parse_from_rfc3339(text(k)?).map(|t| t.with_timezone(&Utc)).map_err(|_| format!("bad {k}"))
    };
    let hash = |k: &str| -> Result<[u8; 32], String> {
        hex::decode(text(k)?).ok().and_then(|b| b.try_into().ok()).ok_or_else(|| format!("bad {k}"))
    };
    let header = Header {
        seq: int("seq")?,
        prev_hash: hash("prevHash")?,
        from_xid: int("fromXid")?,
        to_xid: int("toXid")?,
        first_created: time("firstCreated")?,
        last_created: time("lastCreated")?,
        row_count: i32::try_from(int("rowCount")?).map_err(|_| "bad rowCount")?,
        entries_hash: hash("entriesHash")?,
        sealed_at: time("sealedAt")?,
        key_id: text("keyId")?.to_owned(),
    };
    let signature = b64().decode(text("signature")?).map_err(|_| "bad signature encoding")?;
    let entries = match v["entries"].as_str() {
        Some(e) => Some(b64().decode(e).map_err(|_| "bad entries encoding")?),
        None => None,
    };
    Ok((Signed { header, signature }, entries))
}

/// Verify an export offline. The scope is the export's own; `verifier` brings the keys and grace.
pub(crate) fn verify_file(
    input: impl BufRead,
    make: impl FnOnce(Scope) -> Verifier,
    anchors: &[(i64, String)],
) -> anyhow::Result<(Scope, Report)> {
    let mut lines = input.lines();
    let first = lines.next().ok_or_else(|| anyhow::anyhow!("the file is empty"))??;
    let head: Value = serde_json::from_str(&first)?;
    if head["type"] != "export" || head["format"] != FORMAT {
        anyhow::bail!("not an audit export ({FORMAT})");
    }
    let time =
        |k: &str| head[k].as_str().and_then(|s| DateTime::parse_from_rfc3339(s).ok()).map(|t| t.with_timezone(&Utc));
    let scope =
        Scope { org: head["organizationId"].as_str().and_then(|s| s.parse().ok()), from: time("from"), to: time("to") };
    let mut verifier = make(scope.clone());
    let (mut digests, mut blobs, mut rows, mut retention, mut end) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), None);
    for (n, line) in lines.enumerate() {
        let line = line?;
        let v: Value = serde_json::from_str(&line).map_err(|e| anyhow::anyhow!("line {}: {e}", n + 2))?;
        match v["type"].as_str() {
            Some("digest") => {
                let (d, entries) = parse_digest(&v).map_err(|e| anyhow::anyhow!("line {}: {e}", n + 2))?;
                if let Some(blob) = entries {
                    blobs.push((d.header.seq, blob));
                }
                digests.push(d);
            }
            Some("retention") => {
                let cutoff = v["cutoff"].as_str().and_then(|s| DateTime::parse_from_rfc3339(s).ok());
                if let (Some(class), Some(cutoff)) = (v["class"].as_str(), cutoff) {
                    retention.push((class.to_owned(), cutoff.with_timezone(&Utc)));
                }
            }
            Some("row") => {
                let txid = v["txid"].as_i64().ok_or_else(|| anyhow::anyhow!("line {}: row without txid", n + 2))?;
                let row = hash_row(v["row"].clone()).map_err(|e| anyhow::anyhow!("line {}: {e}", n + 2))?;
                rows.push((row, txid));
            }
            Some("end") => end = Some(v),
            _ => anyhow::bail!("line {}: unknown line type", n + 2),
        }
    }
    let counts = (digests.len(), rows.len());
    verifier.digests(digests, false, anchors);
    for (seq, blob) in blobs {
        verifier.entries(seq, &blob);
    }
    for (row, txid) in rows {
        verifier.row(row, txid);
    }
    match end {
        None => verifier.problem(Finding::Truncated { why: "no end line".into() }),
        Some(end)
            if end["digests"].as_u64() != Some(counts.0 as u64) || end["rows"].as_u64() != Some(counts.1 as u64) =>
        {
            verifier.problem(Finding::Truncated {
                why: format!(
                    "the end line counts {} digest(s) and {} row(s), the file has {} and {}",
                    end["digests"], end["rows"], counts.0, counts.1
                ),
            })
        }
        Some(_) => {}
    }
    // An export holds sealed rows only: a row past the sealed range is not pending, it was added.
    let sealed_to = verifier.sealed_to();
    Ok((scope, verifier.finish(&retention, sealed_to.or(Some(0)))))
}
