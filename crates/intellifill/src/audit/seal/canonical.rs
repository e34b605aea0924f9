//! A row's canonical form and hash.
//!
//! The row arrives as the JSON of `to_jsonb(row) - 'txid'` (every column, so a column added later is covered
//! from then on). Canonical form: an object with its keys sorted at every depth, no whitespace, top-level
//! nulls left out (a nullable column added later leaves the hashes of older rows as they were), numbers and
//! strings as serde_json writes them, and `created_at` rewritten as UTC with microseconds (independent of the
//! session's time zone). The row hash is SHA-256 over `intellifill-audit-row-v1\n` and that text. The same
//! code hashes at sealing, at `audit verify` and over an export, so the form only has to be deterministic and
//! idempotent (re-canonicalizing a canonical text gives it back), which sorted keys and serde_json's
//! shortest round-trip numbers are.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// What the digest keeps of a row besides its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RowFacts {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub organization_id: Option<Uuid>,
    pub retention_class: Option<String>,
}

/// A row as hashed: its facts, canonical text and hash.
#[derive(Debug, Clone)]
pub(crate) struct CanonicalRow {
    pub facts: RowFacts,
    pub canonical: String,
    pub hash: [u8; 32],
}

const DOMAIN: &[u8] = b"intellifill-audit-row-v1\n";

/// Canonicalize and hash one row given as a JSON object (`to_jsonb` text, or an export's row object).
pub(crate) fn hash_row_json(doc: &str) -> Result<CanonicalRow, String> {
    let value: Value = serde_json::from_str(doc).map_err(|e| format!("row is not JSON: {e}"))?;
    hash_row(value)
}

/// [`hash_row_json`] over a parsed value.
pub(crate) fn hash_row(value: Value) -> Result<CanonicalRow, String> {
    let Value::Object(mut map) = value else { return Err("row is not a JSON object".into()) };
    map.retain(|_, v| !v.is_null());
    let id =
        map.get("id").and_then(Value::as_str).and_then(|s| s.parse::<Uuid>().ok()).ok_or("row has no uuid `id`")?;
    let created_at = map
        .get("created_at")
        .and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
        .ok_or("row has no timestamp `created_at`")?;
    map.insert("created_at".into(), Value::String(timestamp(created_at)));
    let organization_id = map.get("organization_id").and_then(Value::as_str).and_then(|s| s.parse().ok());
    let retention_class = map.get("retention_class").and_then(Value::as_str).map(str::to_owned);
    let mut canonical = String::with_capacity(512);
    write_value(&Value::Object(map), &mut canonical);
    let hash = row_hash(&canonical);
    Ok(CanonicalRow { facts: RowFacts { id, created_at, organization_id, retention_class }, canonical, hash })
}

/// SHA-256 of a canonical row text.
pub(crate) fn row_hash(canonical: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(DOMAIN);
    h.update(canonical.as_bytes());
    h.finalize().into()
}

/// `created_at` as canonical text: UTC, microseconds, `Z` (Postgres keeps microseconds).
pub(crate) fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn write_value(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_scalar(&Value::String(key.clone()), out);
                out.push(':');
                write_value(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(item, out);
            }
            out.push(']');
        }
        scalar => write_scalar(scalar, out),
    }
}

fn write_scalar(value: &Value, out: &mut String) {
    // Serializing a scalar `Value` cannot fail.
    out.push_str(&serde_json::to_string(value).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROW: &str = r#"{"id": "0190a1b2-0000-7000-8000-000000000001", "ip": null, "action": "knowledge.create",
        "status": 201, "metadata": {"z": 1, "a": {"y": [1, 2.5, "x"], "b": null}}, "created_at":
        "2026-12-02T17:43:14.123456+01:00", "organization_id": "0190a1b2-0000-7000-8000-0000000000aa"}"#;

    #[test]
    fn canonical_text_sorts_keys_drops_top_level_nulls_and_normalizes_the_time() {
        let row = hash_row_json(ROW).expect("row");
        assert_eq!(
            row.canonical,
            r#"{"action":"knowledge.create","created_at":"2026-12-02T16:43:14.123456Z","id":"0190a1b2-0000-7000-8000-000000000001","metadata":{"a":{"b":null,"y":[1,2.5,"x"]},"z":1},"organization_id":"0190a1b2-0000-7000-8000-0000000000aa","status":201}"#
        );
        assert_eq!(row.facts.created_at.to_rfc3339(), "2026-12-02T16:43:14.123456+00:00");
        assert_eq!(
            row.facts.organization_id.map(|o| o.to_string()).as_deref(),
            Some("0190a1b2-0000-7000-8000-0000000000aa")
        );
        assert_eq!(row.facts.retention_class, None);
    }

    #[test]
    fn canonicalizing_is_idempotent_and_blind_to_key_order_and_spacing() {
        let row = hash_row_json(ROW).expect("row");
        let again = hash_row_json(&row.canonical).expect("canonical parses");
        assert_eq!(again.canonical, row.canonical);
        assert_eq!(again.hash, row.hash);
        let shuffled = r#"{"organization_id":"0190a1b2-0000-7000-8000-0000000000aa","created_at":"2026-12-02T16:43:14.123456Z",
            "metadata":{"z":1,"a":{"y":[1,2.5,"x"],"b":null}},"status":201,"action":"knowledge.create",
            "id":"0190a1b2-0000-7000-8000-000000000001"}"#;
        assert_eq!(hash_row_json(shuffled).expect("row").hash, row.hash);
    }

    #[test]
    fn any_change_of_content_changes_the_hash() {
        let base = hash_row_json(ROW).expect("row").hash;
        for changed in [
            ROW.replace("201", "200"),
            ROW.replace("knowledge.create", "knowledge.delete"),
            ROW.replace("123456", "123457"),
            ROW.replace("2.5", "2.50001"),
            ROW.replace(r#""ip": null"#, r#""ip": "127.0.0.1""#),
            ROW.replace(r#""b": null"#, r#""b": false"#),
            ROW.replace("000000000001", "000000000002"),
        ] {
            assert_ne!(hash_row_json(&changed).expect("row").hash, base, "{changed}");
        }
    }

    #[test]
    fn rows_without_an_id_or_a_time_are_refused() {
        assert!(hash_row_json(r#"{"created_at":"2026-12-02T16:43:14Z"}"#).is_err());
        assert!(hash_row_json(r#"{"id":"0190a1b2-0000-7000-8000-000000000001"}"#).is_err());
        assert!(hash_row_json("[]").is_err());
    }
}
