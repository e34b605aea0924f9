//! Digests: what a seal says, how it is signed, and the entry list it carries.
//!
//! A digest covers the rows with `from_xid <= txid < to_xid`. Its signed payload is a fixed binary layout
//! (domain, seq, previous digest's hash, range, created_at span, row count, SHA-256 of the entries, sealing
//! time, key id); its hash, SHA-256 of the payload, is what the next digest names as `prev_hash`. The
//! signature is left out of the hash so that a forged signature is one finding, not two.
//!
//! Entries, one per row in (txid, id) order: id (16 bytes), created_at (microseconds since the epoch, i64
//! big-endian), organization tag (16 bytes: SHA-256 of the organization id, truncated; zeros for none, so an
//! export does not name other tenants), retention class (length byte and UTF-8, empty for none), row hash (32).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePublicKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

const PAYLOAD_DOMAIN: &[u8] = b"intellifill-audit-digest-v1\n";
const ORG_DOMAIN: &[u8] = b"intellifill-audit-org-v1\n";

/// One row as a digest lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub org_tag: [u8; 16],
    pub retention_class: Option<String>,
    pub hash: [u8; 32],
}

/// The tag that stands for an organization in entries (zeros for a row without one).
pub(crate) fn org_tag(org: Option<Uuid>) -> [u8; 16] {
    match org {
        None => [0; 16],
        Some(org) => {
            let mut h = Sha256::new();
            h.update(ORG_DOMAIN);
            h.update(org.as_bytes());
            let full: [u8; 32] = h.finalize().into();
            full[..16].try_into().unwrap_or([0; 16])
        }
    }
}

/// Append `entry` to an entries blob.
pub(crate) fn encode_entry(entry: &Entry, out: &mut Vec<u8>) {
    out.extend_from_slice(entry.id.as_bytes());
    out.extend_from_slice(&entry.created_at.timestamp_micros().to_be_bytes());
    out.extend_from_slice(&entry.org_tag);
    let class = entry.retention_class.as_deref().unwrap_or("").as_bytes();
    let len = class.len().min(255);
    out.push(len as u8);
    out.extend_from_slice(&class[..len]);
    out.extend_from_slice(&entry.hash);
}

/// Every entry of a blob, or where it stops making sense.
pub(crate) fn decode_entries(mut blob: &[u8]) -> Result<Vec<Entry>, String> {
    let mut entries = Vec::with_capacity(blob.len() / 73);
    while !blob.is_empty() {
        let take = |blob: &mut &[u8], n: usize| -> Result<Vec<u8>, String> {
            if blob.len() < n {
                return Err("entries end in the middle of an entry".into());
            }
            let (head, rest) = blob.split_at(n);
            *blob = rest;
            Ok(head.to_vec())
        };
        let id = Uuid::from_slice(&take(&mut blob, 16)?).map_err(|e| e.to_string())?;
        let micros = i64::from_be_bytes(take(&mut blob, 8)?.try_into().map_err(|_| "time")?);
        let created_at = DateTime::from_timestamp_micros(micros).ok_or("entry time out of range")?;
        let org_tag: [u8; 16] = take(&mut blob, 16)?.try_into().map_err(|_| "org tag")?;
        let len = take(&mut blob, 1)?[0] as usize;
        let class = String::from_utf8(take(&mut blob, len)?).map_err(|_| "retention class is not UTF-8")?;
        let hash: [u8; 32] = take(&mut blob, 32)?.try_into().map_err(|_| "hash")?;
        let retention_class = if class.is_empty() { None } else { Some(class) };
        entries.push(Entry { id, created_at, org_tag, retention_class, hash });
    }
    Ok(entries)
}

/// SHA-256 of an entries blob (signed in the payload).
pub(crate) fn entries_hash(blob: &[u8]) -> [u8; 32] {
    Sha256::digest(blob).into()
}

/// What a digest says, all of it signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    pub seq: i64,
    pub prev_hash: [u8; 32],
    pub from_xid: i64,
    pub to_xid: i64,
    pub first_created: DateTime<Utc>,
    pub last_created: DateTime<Utc>,
    pub row_count: i32,
    pub entries_hash: [u8; 32],
    pub sealed_at: DateTime<Utc>,
    pub key_id: String,
}

impl Header {
    /// The bytes the signature covers.
    pub(crate) fn payload(&self) -> Vec<u8> {
        let mut p = Vec::with_capacity(200);
        p.extend_from_slice(PAYLOAD_DOMAIN);
        p.extend_from_slice(&self.seq.to_be_bytes());
        p.extend_from_slice(&self.prev_hash);
        p.extend_from_slice(&self.from_xid.to_be_bytes());
        p.extend_from_slice(&self.to_xid.to_be_bytes());
        p.extend_from_slice(&self.first_created.timestamp_micros().to_be_bytes());
        p.extend_from_slice(&self.last_created.timestamp_micros().to_be_bytes());
        p.extend_from_slice(&self.row_count.to_be_bytes());
        p.extend_from_slice(&self.entries_hash);
        p.extend_from_slice(&self.sealed_at.timestamp_micros().to_be_bytes());
        p.extend_from_slice(self.key_id.as_bytes());
        p
    }

    /// The hash the next digest names.
    pub(crate) fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.payload()).into()
    }

    pub(crate) fn sign(&self, key: &SigningKey) -> [u8; 64] {
        key.sign(&self.payload()).to_bytes()
    }
}

/// A digest as stored: header and signature.
#[derive(Debug, Clone)]
pub(crate) struct Signed {
    pub header: Header,
    pub signature: Vec<u8>,
}

/// Why a signature does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SignatureProblem {
    /// No public key with this id was given.
    UnknownKey,
    /// The signature does not verify the payload.
    Invalid,
}

impl Signed {
    pub(crate) fn check(&self, keys: &PublicKeys) -> Result<(), SignatureProblem> {
        let key = keys.0.get(&self.header.key_id).ok_or(SignatureProblem::UnknownKey)?;
        let signature = Signature::from_slice(&self.signature).map_err(|_| SignatureProblem::Invalid)?;
        key.verify(&self.header.payload(), &signature).map_err(|_| SignatureProblem::Invalid)
    }
}

/// A key's id: the first 16 hex digits of SHA-256 of the raw public key.
pub(crate) fn key_id(key: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..8])
}

/// A public key as PEM (SubjectPublicKeyInfo, `BEGIN PUBLIC KEY`).
pub fn public_key_pem(key: &VerifyingKey) -> String {
    key.to_public_key_pem(LineEnding::LF).unwrap_or_default()
}

/// The public keys a verification trusts, by key id.
#[derive(Debug, Clone, Default)]
pub(crate) struct PublicKeys(pub HashMap<String, VerifyingKey>);

impl PublicKeys {
    pub(crate) fn add(&mut self, key: VerifyingKey) -> String {
        let id = key_id(&key);
        self.0.insert(id.clone(), key);
        id
    }

    /// Every `BEGIN PUBLIC KEY` block of a PEM text.
    pub(crate) fn add_pem(&mut self, text: &str) -> Result<Vec<String>, String> {
        let mut ids = Vec::new();
        for block in text.split("-----BEGIN PUBLIC KEY-----").skip(1) {
            let end = block.find("-----END PUBLIC KEY-----").ok_or("a PUBLIC KEY block has no END line")?;
            let pem = format!("-----BEGIN PUBLIC KEY-----{}-----END PUBLIC KEY-----\n", &block[..end]);
            let key = VerifyingKey::from_public_key_pem(&pem).map_err(|_| "not an Ed25519 public key")?;
            ids.push(self.add(key));
        }
        if ids.is_empty() {
            return Err("no `-----BEGIN PUBLIC KEY-----` block".into());
        }
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    fn header(signer: &SigningKey) -> Header {
        let t = DateTime::from_timestamp_micros(1_764_000_000_123_456).expect("time");
        Header {
            seq: 7,
            prev_hash: [3; 32],
            from_xid: 1000,
            to_xid: 1200,
            first_created: t,
            last_created: t,
            row_count: 2,
            entries_hash: [9; 32],
            sealed_at: t,
            key_id: key_id(&signer.verifying_key()),
        }
    }

    #[test]
    fn a_signed_header_verifies_and_any_changed_field_does_not() {
        let signer = key(1);
        let mut keys = PublicKeys::default();
        let pem = public_key_pem(&signer.verifying_key());
        assert_eq!(keys.add_pem(&pem).expect("pem"), vec![key_id(&signer.verifying_key())]);
        let h = header(&signer);
        let signed = Signed { signature: h.sign(&signer).to_vec(), header: h.clone() };
        assert_eq!(signed.check(&keys), Ok(()));
        type Change = Box<dyn Fn(&mut Header)>;
        let changes: Vec<Change> = vec![
            Box::new(|h| h.seq += 1),
            Box::new(|h| h.prev_hash[0] ^= 1),
            Box::new(|h| h.from_xid -= 1),
            Box::new(|h| h.to_xid += 1),
            Box::new(|h| h.first_created -= chrono::TimeDelta::microseconds(1)),
            Box::new(|h| h.last_created += chrono::TimeDelta::microseconds(1)),
            Box::new(|h| h.row_count += 1),
            Box::new(|h| h.entries_hash[31] ^= 1),
            Box::new(|h| h.sealed_at += chrono::TimeDelta::seconds(1)),
        ];
        for change in changes {
            let mut forged = signed.clone();
            change(&mut forged.header);
            assert_ne!(forged.header.hash(), h.hash());
            assert_eq!(forged.check(&keys), Err(SignatureProblem::Invalid));
        }
        let mut other = signed.clone();
        other.signature = h.sign(&key(2)).to_vec();
        assert_eq!(other.check(&keys), Err(SignatureProblem::Invalid), "another key's signature");
        assert_eq!(signed.check(&PublicKeys::default()), Err(SignatureProblem::UnknownKey));
    }

    #[test]
    fn entries_round_trip_and_truncation_is_an_error() {
        let t = DateTime::from_timestamp_micros(1_764_000_000_123_456).expect("time");
        let entries = vec![
            Entry {
                id: Uuid::new_v4(),
                created_at: t,
                org_tag: org_tag(Some(Uuid::new_v4())),
                retention_class: Some("security".into()),
                hash: [1; 32],
            },
            Entry { id: Uuid::new_v4(), created_at: t, org_tag: org_tag(None), retention_class: None, hash: [2; 32] },
        ];
        let mut blob = Vec::new();
        entries.iter().for_each(|e| encode_entry(e, &mut blob));
        assert_eq!(decode_entries(&blob).expect("decode"), entries);
        assert!(decode_entries(&blob[..blob.len() - 1]).is_err());
        assert_eq!(org_tag(None), [0; 16]);
        let org = Uuid::new_v4();
        assert_eq!(org_tag(Some(org)), org_tag(Some(org)));
        assert_ne!(org_tag(Some(org)), org_tag(Some(Uuid::new_v4())));
    }

    #[test]
    fn signing_keys_parse_from_pkcs8_pem_and_base64_seeds() {
        use base64::Engine as _;
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        let signer = key(5);
        let pem = signer.to_pkcs8_pem(LineEnding::LF).expect("pem");
        let parsed = crate::config::parse_signing_key(&pem).expect("pem parses");
        assert_eq!(parsed.verifying_key(), signer.verifying_key());
        let seed = base64::engine::general_purpose::STANDARD.encode([5u8; 32]);
        assert_eq!(crate::config::parse_signing_key(&seed).expect("seed").verifying_key(), signer.verifying_key());
        let short = base64::engine::general_purpose::STANDARD.encode([5u8; 31]);
        assert!(crate::config::parse_signing_key(&short).expect_err("31 bytes").contains("32 bytes"));
        assert!(
            crate::config::parse_signing_key("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----").is_err()
        );
    }
}
