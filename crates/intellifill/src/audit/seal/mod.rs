//! Tamper evidence for `audit_log`: rows sealed in a chain of signed digests, and the tools that check it.
//!
//! - [`canonical`]: a row's canonical form and SHA-256 hash.
//! - [`digest`]: a digest's signed payload, its entries, Ed25519 signing and key ids.
//! - [`sealer`]: the server task that seals finished rows every `AUDIT_SEAL_INTERVAL_SECS` (one instance
//!   at a time, under a transaction-level advisory lock).
//! - [`verify`]: the engine that names every modified, deleted, inserted or reordered row and every missing
//!   or forged digest; [`source`] feeds it from the database, [`export`] writes an auditor's export and
//!   verifies one offline.
//!
//! The signing key lives only in the servers' configuration (`AUDIT_SIGNING_KEY`); the database holds the
//! digests and nothing that could make one. docs/DEPLOY.md, "Audit sealing", is the operator's side.

pub(crate) mod canonical;
pub(crate) mod commands;
pub(crate) mod digest;
pub(crate) mod export;
pub(crate) mod sealer;
pub(crate) mod source;
mod store;
pub(crate) mod verify;

pub(crate) use sealer::Sealer;
