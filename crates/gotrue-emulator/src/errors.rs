//! GoTrue's error responses, and the API gateway's.
//!
//! Clients of Supabase Auth branch on the machine-readable error code, so the
//! emulator has to reproduce both body shapes GoTrue emits (the legacy one
//! and the `X-Supabase-Api-Version: 2024-01-01` one) plus the
//! `x-sb-error-code` header. Handlers only construct an [`ApiError`]; which
//! shape is rendered depends on a request header, so the gateway middleware
//! re-renders the error once the response comes back (see
//! [`render_for_version`]). The gateway's own apikey rejections have a
//! different, simpler shape and never carry an error code.

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Header GoTrue reads to choose the error body format.
pub(crate) const API_VERSION_HEADER: &str = "x-supabase-api-version";
/// Header carrying the error code on every GoTrue error response.
pub(crate) const ERROR_CODE_HEADER: &str = "x-sb-error-code";

/// A GoTrue error: HTTP status, machine code and human message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    /// HTTP status of the response.
    pub status: StatusCode,
    /// GoTrue error code, e.g. `bad_jwt`.
    pub code: &'static str,
    /// Human-readable message (`msg` / `message` in the body).
    pub message: String,
    /// Reasons of a `weak_password` error (`weak_password.reasons`).
    pub weak_password_reasons: Option<Vec<String>>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), weak_password_reasons: None }
    }

    pub(crate) fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub(crate) fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    pub(crate) fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    pub(crate) fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    pub(crate) fn validation(message: impl Into<String>) -> Self {
        Self::bad_request("validation_failed", message)
    }

    pub(crate) fn bad_json(err: impl std::fmt::Display) -> Self {
        Self::bad_request("bad_json", format!("Could not parse request body as JSON: {err}"))
    }

    pub(crate) fn no_authorization() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "no_authorization", "This endpoint requires a valid Bearer token")
    }

    pub(crate) fn bad_jwt(detail: impl std::fmt::Display) -> Self {
        Self::forbidden("bad_jwt", format!("invalid JWT: unable to parse or verify signature, {detail}"))
    }

    pub(crate) fn invalid_credentials() -> Self {
        Self::bad_request("invalid_credentials", "Invalid login credentials")
    }

    /// A user id that names no user (admin endpoints, in-process API).
    pub(crate) fn user_not_found() -> Self {
        Self::not_found("user_not_found", "User not found")
    }

    pub(crate) fn not_admin() -> Self {
        Self::forbidden("not_admin", "User not allowed")
    }

    pub(crate) fn weak_password(min_length: usize) -> Self {
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "weak_password",
            message: format!("Password should be at least {min_length} characters."),
            weak_password_reasons: Some(vec!["length".to_owned()]),
        }
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "unexpected_failure", message)
    }

    /// Renders the body GoTrue sends for this error under the given API version.
    fn render(&self, new_format: bool) -> Response {
        let reasons = self.weak_password_reasons.clone().map(|reasons| WeakPassword { reasons });
        let mut response = if new_format {
            (self.status, Json(Body20240101 { code: self.code, message: &self.message, weak_password: reasons }))
                .into_response()
        } else {
            (
                self.status,
                Json(BodyLegacy {
                    code: self.status.as_u16(),
                    error_code: self.code,
                    msg: &self.message,
                    weak_password: reasons,
                }),
            )
                .into_response()
        };
        if let Ok(value) = HeaderValue::from_str(self.code) {
            response.headers_mut().insert(ERROR_CODE_HEADER, value);
        }
        if new_format {
            response.headers_mut().insert(API_VERSION_HEADER, HeaderValue::from_static("2024-01-01"));
        }
        response
    }
}

#[derive(Serialize)]
struct WeakPassword {
    reasons: Vec<String>,
}

/// `{"code": 400, "error_code": "...", "msg": "..."}`, field order as in Go.
#[derive(Serialize)]
struct BodyLegacy<'a> {
    code: u16,
    error_code: &'a str,
    msg: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    weak_password: Option<WeakPassword>,
}

/// `{"code": "...", "message": "..."}` of API version 2024-01-01.
#[derive(Serialize)]
struct Body20240101<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    weak_password: Option<WeakPassword>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = self.render(false);
        response.extensions_mut().insert(self);
        response
    }
}

/// Whether the request asks for the 2024-01-01 error format: GoTrue parses the
/// header as a `YYYY-MM-DD` date and uses the new format from 2024-01-01 on;
/// anything unparsable falls back to the initial format.
pub(crate) fn wants_new_format(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(API_VERSION_HEADER).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    match chrono::NaiveDate::parse_from_str(value.trim(), "%Y-%m-%d") {
        Ok(date) => chrono::NaiveDate::from_ymd_opt(2024, 1, 1).is_some_and(|v| date >= v),
        Err(_) => false,
    }
}

/// Re-renders a handler's [`ApiError`] in the format the request asked for.
pub(crate) fn render_for_version(response: Response, new_format: bool) -> Response {
    if !new_format {
        return response;
    }
    match response.extensions().get::<ApiError>() {
        Some(err) => {
            let err = err.clone();
            let mut rendered = err.render(true);
            rendered.extensions_mut().insert(err);
            rendered
        }
        None => response,
    }
}

/// Why the API gateway refused a request before it reached GoTrue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GatewayRefusal {
    /// No `apikey` header and no `?apikey=` parameter.
    NoKey,
    /// A key that is not one of the project's.
    UnknownKey,
}

/// The API gateway's rejection of a request without a usable `apikey`, as the hosted platform answers it:
/// 401, a body of `message` and `hint` only (no GoTrue error code, no `x-sb-error-code` header).
pub(crate) fn gateway_error(refusal: GatewayRefusal) -> Response {
    let (message, hint) = match refusal {
        GatewayRefusal::NoKey => ("No API key found in request", "No `apikey` request header or url param was found."),
        GatewayRefusal::UnknownKey => {
            ("Invalid API key", "Double check your Supabase `anon` or `service_role` API key.")
        }
    };
    (StatusCode::UNAUTHORIZED, Json(serde_json::json!({ "message": message, "hint": hint }))).into_response()
}
