//! Security events: what they are, how severe, and how they are reported.
//!
//! A security event tied to a request (forged token, revoked token reuse, cross-tenant attempt, RLS context
//! failure) is carried by the request's error ([`crate::error::AppError::security`]) and recorded on that
//! request's own audit row (severity + `metadata.security`), so N requests still make N rows. Anomalies
//! span many requests and get a row of their own (`security.anomaly`). Every event is also a structured log
//! line `event=security.<kind>` and a `security_events_total{event}` counter. With `SECURITY_AUTO_LOCK=true`
//! a critical event deactivates the user (through `security_lock_user`, which can only switch users off).

use serde::{Deserialize, Serialize};

use super::AuditEvent;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecurityKind {
    /// A token that fails the local check in a way no honest client produces (bad signature, disallowed
    /// algorithm, unknown key).
    ForgedToken,
    /// A token that was logged out, presented again.
    RevokedTokenReuse,
    /// A request for an organization the caller is not a member of.
    CrossTenantAttempt,
    /// The RLS context could not be set (the request was refused).
    RlsContextFailed,
    /// A sliding-window threshold was crossed.
    Anomaly,
}

impl SecurityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityKind::ForgedToken => "forged_token",
            SecurityKind::RevokedTokenReuse => "revoked_token_reuse",
            SecurityKind::CrossTenantAttempt => "cross_tenant_attempt",
            SecurityKind::RlsContextFailed => "rls_context_failed",
            SecurityKind::Anomaly => "anomaly",
        }
    }

    /// Default severity; anomalies carry their own.
    pub fn severity(self) -> Severity {
        match self {
            SecurityKind::ForgedToken => Severity::High,
            SecurityKind::RevokedTokenReuse => Severity::Medium,
            SecurityKind::CrossTenantAttempt => Severity::High,
            SecurityKind::RlsContextFailed => Severity::Critical,
            SecurityKind::Anomaly => Severity::High,
        }
    }

    /// Whether the user is to blame (auto-lock applies). An RLS context failure is the server's problem.
    pub fn blames_user(self) -> bool {
        !matches!(self, SecurityKind::RlsContextFailed)
    }
}

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
