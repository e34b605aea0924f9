//! A write and its audit row, committed together.
//!
//! A handler that changes tenant data in its request transaction ends it with
//! [`AuditedWrite::commit`] instead of [`Tx::commit`]: the request's audit row is made then and sent as the
//! transaction's last statement, `audit_append` of one row, pipelined with `COMMIT` in the same round trip
//! ([`Tx::commit_with`]). The change and its row commit together or not at all, so no crash, however abrupt,
//! leaves a committed write without its row.
//!
//! What the row holds: everything the asynchronous path would record, from the same facts and through the
//! same sanitizer, except that the outcome is the one the handler declares, not the one observed:
//! - `status` is the status the handler passes, the one it answers with when the commit succeeds (a handler
//!   commits as its last fallible step; a response that still differs is counted in
//!   `audit_in_tx_status_mismatch_total` and logged);
//! - `duration_ms` runs from the request's arrival to the moment the row is made, just before `COMMIT` is
//!   sent (it leaves out the commit and the writing of the response: a millisecond or so);
//! - the entity, user and organization are the notes made until then (a handler notes a created entity's id
//!   before it commits).
//!
//! The facts stay with the audit step until the commit has succeeded; the row is made from a copy. When the
//! commit fails (the statement, the `COMMIT`, the connection), nothing of the in-transaction row remains and
//! the step records the request as for any other: asynchronously, with the real status, under the same event
//! id and creation time, so that even a `COMMIT` whose outcome is unknown (the connection lost after it was
//! sent) leaves exactly one row (`audit_append` inserts `ON CONFLICT DO NOTHING`). Reads, refused and failed
//! requests never come here and keep the asynchronous, batched path.
//!
//! The sanitizer runs inline for small bodies and on a blocking thread for larger ones (bodies are kept up to
//! `AUDIT_MAX_BODY_BYTES`), so a large body never holds up an async worker.

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;

use super::AuditEvent;
use super::layer::{RequestFacts, WriteCell};
use super::writer::INSERT;
use super::writer::columns::Columns;
use crate::db::Tx;
use crate::error::AppError;

/// Kept body bytes up to which the row is made on the request's own task: sanitizing 1 KiB of JSON costs about
/// 35 µs (docs/PERFORMANCE.md, "Audit path"), about what handing it to a blocking thread and back costs.
const INLINE_BODY_BYTES: usize = 1024;

/// A write handler's commit: its change with the request's audit row. Without the audit step (an excluded
/// path, a test router without it) it is a plain commit.
pub(crate) struct AuditedWrite(Option<WriteCell>);

impl<S: Send + Sync> FromRequestParts<S> for AuditedWrite {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(AuditedWrite(parts.extensions.get::<WriteCell>().cloned()))
    }
}

impl AuditedWrite {
    /// Commit `tx` with the request's audit row, made now as the row of a `status` answer. Call it as the
    /// handler's last fallible step, with the status it answers on success.
    pub(crate) async fn commit(&self, tx: Tx, status: StatusCode) -> Result<(), AppError> {
        let Some(cell) = &self.0 else { return tx.commit().await };
        let Some(facts) = cell.provisional(status.as_u16()) else { return tx.commit().await };
        let event = row(facts, cell).await?;
        let batch = [event];
        let columns = Columns::of(&batch);
        tx.commit_with(INSERT, &columns.params()).await?;
        cell.committed(status.as_u16(), &batch[0]);
        Ok(())
    }
}

/// The row of `facts`: inline for a small body, on a blocking thread for a larger one.
async fn row(facts: RequestFacts, cell: &WriteCell) -> Result<AuditEvent, AppError> {
    let sanitizer = cell.finishing().sanitizer.clone();
    if facts.body_bytes() <= INLINE_BODY_BYTES {
        return Ok(facts.into_event(&sanitizer));
    }
    tokio::task::spawn_blocking(move || facts.into_event(&sanitizer))
        .await
        .map_err(|e| AppError::internal(anyhow::anyhow!("the audit row could not be made: {e}")))
}
