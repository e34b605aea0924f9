//! Making the rows of what the writer takes from its queues: the sanitizer runs here, on a blocking thread
//! (one `spawn_blocking` per batch), never on an async worker, so a batch of large bodies delays no request.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use super::super::anomaly::Observation;
use super::super::backlog::Backlog;
use super::super::queue;
use super::super::sanitize::Sanitizer;
use super::super::{AuditEvent, Queued};

/// What turns a request's facts into its row, before the row reaches the table or the spool: the sanitizer
/// (free text and bodies captured raw, to stay off the request path) and the anomaly detector's queue (the
/// finished row is what it watches).
pub(crate) struct Finishing {
    pub sanitizer: Arc<Sanitizer>,
    pub detector: queue::Sender<Observation>,
}

impl Finishing {
    fn row(&self, queued: Queued) -> AuditEvent {
        match queued {
            Queued::Event(event) => event,
            Queued::Request(facts) => {
                let event = facts.into_event(&self.sanitizer);
                self.observe(&event);
                event
            }
        }
    }

    /// Show the anomaly detector a request's finished row.
    pub(crate) fn observe(&self, event: &AuditEvent) {
        // Best effort: anomaly detection may skip events under overload; the audit row may not.
        let _ = self.detector.try_send(Observation::of(event));
    }

    /// The rows of `items`, in order, made on a blocking thread; each item's share of the backlog is given
    /// back as soon as its row is made (the facts, bodies included, are freed then).
    pub(super) async fn rows(self: &Arc<Self>, items: Vec<Queued>, backlog: &Arc<Backlog>) -> Vec<AuditEvent> {
        if items.is_empty() {
            return Vec::new();
        }
        let (finishing, backlog) = (self.clone(), backlog.clone());
        let n = items.len();
        let made = tokio::task::spawn_blocking(move || {
            items
                .into_iter()
                .map(|queued| {
                    let weight = queued.weight();
                    let row = finishing.row_or_placeholder(queued);
                    backlog.release(weight);
                    row
                })
                .collect::<Vec<_>>()
        })
        .await;
        match made {
            Ok(rows) => rows,
            // Only when the runtime is shutting down under the writer: the rows cannot be made any more.
            Err(e) => {
                tracing::error!(events = n, error = %e, "audit rows could not be made");
                (0..n).map(|_| placeholder()).collect()
            }
        }
    }

    /// The row, or (should making it panic) a row saying one could not be made, so the request still
    /// leaves a trace and the writer lives on.
    fn row_or_placeholder(&self, queued: Queued) -> AuditEvent {
        std::panic::catch_unwind(AssertUnwindSafe(|| self.row(queued))).unwrap_or_else(|_| {
            tracing::error!("making an audit row panicked: a placeholder row is stored instead");
            placeholder()
        })
    }
}

/// The row of an event whose own row could not be made (counted in `audit_rows_failed_total`).
fn placeholder() -> AuditEvent {
    metrics::counter!("audit_rows_failed_total").increment(1);
    let mut event = AuditEvent::new("audit.row_failed");
    if let serde_json::Value::Object(map) = &mut event.metadata {
        map.insert("error".into(), "the row of this event could not be made".into());
    }
    event
}
