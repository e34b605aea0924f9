//! Reading digests out of `audit_digests` rows (the sealer's head, `audit verify`, `audit export`).

use tokio_postgres::Row;

use super::digest::{Header, Signed};

/// The columns [`from_row`] reads, in order, without `entries`.
pub(super) const HEADER_COLUMNS: &str = "seq, prev_hash, from_xid, to_xid, first_created, last_created, row_count, \
                                  entries_hash, sealed_at, key_id, signature";

fn hash32(bytes: Vec<u8>) -> [u8; 32] {
    // A stored hash of the wrong length cannot match anything: all ones never equals a SHA-256 in practice.
    bytes.try_into().unwrap_or([0xff; 32])
}

/// A digest from a row selected with [`HEADER_COLUMNS`].
pub(super) fn from_row(row: &Row) -> Result<Signed, tokio_postgres::Error> {
    Ok(Signed {
        header: Header {
            seq: row.try_get(0)?,
            prev_hash: hash32(row.try_get(1)?),
            from_xid: row.try_get(2)?,
            to_xid: row.try_get(3)?,
            first_created: row.try_get(4)?,
            last_created: row.try_get(5)?,
            row_count: row.try_get(6)?,
            entries_hash: hash32(row.try_get(7)?),
            sealed_at: row.try_get(8)?,
            key_id: row.try_get(9)?,
        },
        signature: row.try_get(10)?,
    })
}
