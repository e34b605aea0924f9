//! The security-event vocabulary: which kinds of security event there are and how severe each is.
//!
//! A leaf module: an error carries the kind of security event it is ([`crate::error::AppError::security`]),
//! and the audit pipeline records and reports it ([`crate::audit::security`]).

use serde::{Deserialize, Serialize};

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
