//! One error type, one JSON error body.
//!
//! Every failure a client can see is an [`AppError`] carrying an [`ErrorCode`]. Turning it into a response
//! does not write the body: it attaches an [`ErrorPayload`] extension, and the request-id middleware
//! ([`crate::http::request_id`]) renders `{error, message, code, requestId}` with the id of the request.
//! That middleware also turns bare error statuses from the framework (unknown route, wrong method, body over
//! the limit, timeout) into the same body, so a client never sees two shapes.

use std::borrow::Cow;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::security::SecurityKind;

/// Machine-readable error codes. Stable: clients switch on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema, strum::IntoStaticStr)]
#[cfg_attr(test, derive(strum::VariantArray))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    ValidationError,
    InvalidJson,
    InvalidId,
    UnsupportedMediaType,
    PayloadTooLarge,
    HeadersTooLarge,
    TokenMissing,
    TokenMalformed,
    TokenInvalid,
    TokenExpired,
    SessionRevoked,
    UserBanned,
    /// No `users` row for a verified caller while `AUTH_AUTO_PROVISION=false` (the operator makes rows).
    UserNotProvisioned,
    AccountDeactivated,
    /// A verified caller without a row whose e-mail the auth service does not report confirmed (or who has
    /// none): provisioning waits for the confirmation.
    EmailNotConfirmed,
    /// An anonymous sign-in while `AUTH_ALLOW_ANONYMOUS=false`.
    AnonymousNotAllowed,
    Forbidden,
    OrganizationRequired,
    NotOrgMember,
    AdminRequired,
    OwnerRequired,
    OrgSuspended,
    NotFound,
    RouteNotFound,
    MethodNotAllowed,
    Conflict,
    LastOwner,
    /// 410: the invitation's `expiresAt` has passed; an admin may invite again.
    InvitationExpired,
    /// 409: the caller already holds `ORG_MAX_PER_USER` organizations as OWNER.
    OrgQuotaExceeded,
    /// 409: the organization already has `ORG_MAX_PENDING_INVITATIONS` pending invitations.
    InvitationQuotaExceeded,
    RequestTimeout,
    RateLimited,
    InternalError,
    RlsContextFailed,
    /// 503: the auth service cannot give a verdict (down, slow, 5xx, 429, breaker open), with `Retry-After`.
    AuthServiceUnavailable,
    /// 503: the auth service refuses this server's own API key (`SUPABASE_ANON_KEY`): an operator's
    /// misconfiguration, never a verdict on the caller's token. Reported once a minute at ERROR, counted in
    /// `auth_upstream_key_rejected_total`.
    AuthServiceMisconfigured,
    DatabaseUnavailable,
    TooManyConnections,
    /// The audit trail cannot take the request's event (its in-memory backlog is full, or the server is
    /// stopping): refused before the handler runs, so nothing is served unaudited. With `Retry-After`.
    AuditUnavailable,
}

impl ErrorCode {
    pub fn status(self) -> StatusCode {
        use ErrorCode::*;
        match self {
            ValidationError | InvalidJson | InvalidId => StatusCode::BAD_REQUEST,
            UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            TokenMissing | TokenMalformed | TokenInvalid | TokenExpired | SessionRevoked | UserBanned
            | UserNotProvisioned => StatusCode::UNAUTHORIZED,
            AccountDeactivated | EmailNotConfirmed | AnonymousNotAllowed | Forbidden | OrganizationRequired
            | NotOrgMember | AdminRequired | OwnerRequired | OrgSuspended => StatusCode::FORBIDDEN,
            NotFound | RouteNotFound => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Conflict | LastOwner | OrgQuotaExceeded | InvitationQuotaExceeded => StatusCode::CONFLICT,
            InvitationExpired => StatusCode::GONE,
            RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            RateLimited => StatusCode::TOO_MANY_REQUESTS,
            InternalError | RlsContextFailed => StatusCode::INTERNAL_SERVER_ERROR,
            AuthServiceUnavailable
            | AuthServiceMisconfigured
            | DatabaseUnavailable
            | TooManyConnections
            | AuditUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The code as it appears in the JSON body (the serde name, derived by strum from the same rule).
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// A client-visible failure.
#[derive(Debug)]
pub struct AppError {
    pub code: ErrorCode,
    pub message: Cow<'static, str>,
    /// The request field at fault (validation errors).
    pub field: Option<String>,
    /// Seconds for `Retry-After` (503, 429).
    pub retry_after: Option<u64>,
    /// The underlying cause, logged for 5xx, never sent to the client.
    pub source: Option<anyhow::Error>,
    /// The failure is a security event (recorded on the request's audit row).
    pub security: Option<SecurityKind>,
}

impl AppError {
    pub fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        AppError { code, message: message.into(), field: None, retry_after: None, source: None, security: None }
    }

    pub fn validation(field: impl Into<String>, message: impl Into<Cow<'static, str>>) -> Self {
        let mut e = AppError::new(ErrorCode::ValidationError, message);
        e.field = Some(field.into());
        e
    }

    pub fn not_found(what: &str) -> Self {
        AppError::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    pub fn internal(source: impl Into<anyhow::Error>) -> Self {
        let mut e = AppError::new(ErrorCode::InternalError, "internal server error");
        e.source = Some(source.into());
        e
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// Mark the failure as a security event of `kind`.
    pub fn security(mut self, kind: SecurityKind) -> Self {
        self.security = Some(kind);
        self
    }

    pub fn with_source(mut self, source: impl Into<anyhow::Error>) -> Self {
        self.source = Some(source.into());
        self
    }

    pub fn status(&self) -> StatusCode {
        self.code.status()
    }
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

/// What the request-id middleware renders into the body.
#[derive(Debug, Clone)]
pub(crate) struct ErrorPayload {
    pub code: ErrorCode,
    pub message: Cow<'static, str>,
    pub field: Option<String>,
    /// For the audit layer: the failure is a security event.
    pub security: Option<SecurityKind>,
}

/// The one JSON error body.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ErrorBody {
    /// HTTP reason phrase, e.g. "Not Found".
    pub error: String,
    pub message: String,
    #[schema(value_type = String, example = "NOT_FOUND")]
    pub code: &'static str,
    pub request_id: String,
    /// The request field at fault, for validation errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ErrorPayload {
    pub(crate) fn body(&self, request_id: &str) -> ErrorBody {
        let status = self.code.status();
        ErrorBody {
            error: status.canonical_reason().unwrap_or("Error").to_owned(),
            message: self.message.to_string(),
            code: self.code.as_str(),
            request_id: request_id.to_owned(),
            field: self.field.clone(),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        if self.code == ErrorCode::AuthServiceMisconfigured {
            // Its cause has an ERROR line of its own, once a minute (`auth::gotrue`): one per request would bury it.
            tracing::warn!(code = self.code.as_str(), message = %self.message, "request failed");
        } else if status.is_server_error() {
            match &self.source {
                Some(source) => {
                    tracing::error!(code = self.code.as_str(), error = format!("{source:#}"), "request failed")
                }
                None => {
                    tracing::error!(code = self.code.as_str(), message = %self.message, "request failed")
                }
            }
        }
        let mut response = status.into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response.extensions_mut().insert(ErrorPayload {
            code: self.code,
            message: self.message,
            field: self.field,
            security: self.security,
        });
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialize_as_their_wire_names() {
        use strum::VariantArray;
        for code in ErrorCode::VARIANTS {
            assert_eq!(serde_json::to_value(code).expect("json"), serde_json::json!(code.as_str()), "{code:?}");
        }
        assert_eq!(ErrorCode::RlsContextFailed.as_str(), "RLS_CONTEXT_FAILED");
        assert_eq!(ErrorCode::NotOrgMember.as_str(), "NOT_ORG_MEMBER");
    }

    #[test]
    fn response_carries_status_retry_after_and_payload() {
        let resp = AppError::new(ErrorCode::DatabaseUnavailable, "db down").with_retry_after(2).into_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "2");
        let payload = resp.extensions().get::<ErrorPayload>().expect("payload");
        let body = payload.body("req-1");
        assert_eq!(body.error, "Service Unavailable");
        assert_eq!(body.code, "DATABASE_UNAVAILABLE");
        assert_eq!(body.request_id, "req-1");
    }
}
