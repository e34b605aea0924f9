//! Security events: how they are recorded and reported (the kinds and severities are [`crate::security`]).
//!
//! A security event tied to a request (forged token, revoked token reuse, cross-tenant attempt, RLS context
//! failure) is carried by the request's error ([`crate::error::AppError::security`]) and recorded on that
//! request's own audit row (severity + `metadata.security`), so N requests still make N rows. Anomalies
//! span many requests and get a row of their own (`security.anomaly`). Every event is also a structured log
//! line `event=security.<kind>` and a `security_events_total{event}` counter. With `SECURITY_AUTO_LOCK=true`
//! a critical event deactivates the user (through `security_lock_user`, which can only switch users off).

use serde_json::Value;

use super::AuditEvent;
use crate::security::{SecurityKind, Severity};

/// The keys of `details` the log line carries, each as a field `details.<key>` of its own (a number stays a
/// number). Every caller's details use only these: a key missing here would reach the audit row but not the
/// log (a debug assertion says so in tests).
const LOGGED_DETAILS: &[&str] = &["status", "route", "kind", "count", "threshold", "windowSeconds", "lastAction"];

/// Mark `event` as a security event of `kind`, log and count it.
///
/// The log line's fields are values a log pipeline can parse: ids and addresses as strings, counts as
/// numbers, an absent value left out (never `None` or `Some(...)`), and the details as fields of their own
/// (`details.route`, `details.count`, ...), not JSON inside a string.
pub(crate) fn mark(event: &mut AuditEvent, kind: SecurityKind, severity: Severity, details: Value) {
    event.severity = Some(severity);
    debug_assert!(
        details.as_object().is_none_or(|d| d.keys().all(|k| LOGGED_DETAILS.contains(&k.as_str()))),
        "a security detail the log line does not carry: {details}"
    );
    let text = |key: &str| details.get(key).and_then(Value::as_str).map(str::to_owned);
    let number = |key: &str| details.get(key).and_then(Value::as_i64);
    let (route, kind_detail, last_action) = (text("route"), text("kind"), text("lastAction"));
    let (status, count, threshold, window) =
        (number("status"), number("count"), number("threshold"), number("windowSeconds"));
    metrics::counter!("security_events_total", "event" => kind.as_str(), "severity" => severity.as_str()).increment(1);
    let name = format!("security.{}", kind.as_str());
    macro_rules! log {
        ($level:ident) => {
            tracing::$level!(
                event = %name,
                severity = severity.as_str(),
                user_id = event.user_id.map(tracing::field::display),
                organization_id = event.organization_id.map(tracing::field::display),
                request_id = event.request_id.as_deref(),
                ip = event.ip.map(tracing::field::display),
                action = %event.action,
                details.status = status,
                details.route = route.as_deref(),
                details.kind = kind_detail.as_deref(),
                details.count = count,
                details.threshold = threshold,
                details.windowSeconds = window,
                details.lastAction = last_action.as_deref(),
                "security event"
            )
        };
    }
    match severity {
        Severity::Critical | Severity::High => log!(warn),
        Severity::Medium | Severity::Low => log!(info),
    }
    if let Value::Object(map) = &mut event.metadata {
        map.insert("security".into(), serde_json::json!({ "event": kind.as_str(), "details": details }));
    }
}
