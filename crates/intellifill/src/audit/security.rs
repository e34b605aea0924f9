//! Security events: how they are recorded and reported (the kinds and severities are [`crate::security`]).
//!
//! A security event tied to a request (forged token, revoked token reuse, cross-tenant attempt, RLS context
//! failure) is carried by the request's error ([`crate::error::AppError::security`]) and recorded on that
//! request's own audit row (severity + `metadata.security`), so N requests still make N rows. Anomalies
//! span many requests and get a row of their own (`security.anomaly`). Every event is also a structured log
//! line `event=security.<kind>` and a `security_events_total{event}` counter. With `SECURITY_AUTO_LOCK=true`
//! a critical event deactivates the user (through `security_lock_user`, which can only switch users off).

use super::AuditEvent;
use crate::security::{SecurityKind, Severity};

/// Mark `event` as a security event of `kind`, log and count it.
pub fn mark(event: &mut AuditEvent, kind: SecurityKind, severity: Severity, details: serde_json::Value) {
    event.severity = Some(severity);
    if let serde_json::Value::Object(map) = &mut event.metadata {
        map.insert("security".into(), serde_json::json!({ "event": kind.as_str(), "details": details }));
    }
    metrics::counter!("security_events_total", "event" => kind.as_str(), "severity" => severity.as_str()).increment(1);
    let name = format!("security.{}", kind.as_str());
    match severity {
        Severity::Critical | Severity::High => tracing::warn!(
            event = %name,
            severity = severity.as_str(),
            user_id = ?event.user_id,
            organization_id = ?event.organization_id,
            request_id = ?event.request_id,
            ip = ?event.ip,
            action = %event.action,
            details = %event.metadata["security"]["details"],
            "security event"
        ),
        _ => tracing::info!(
            event = %name,
            severity = severity.as_str(),
            user_id = ?event.user_id,
            request_id = ?event.request_id,
            ip = ?event.ip,
            action = %event.action,
            "security event"
        ),
    }
}
