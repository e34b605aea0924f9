//! Extractors whose rejections are our error body: JSON bodies, query strings and path ids.
//!
//! Malformed JSON, the wrong content type, an oversized body, a bad UUID in the path, an unknown or
//! mistyped field, a NUL character (U+0000, which Postgres text refuses) in a string: each is a 4xx naming
//! what is wrong (`field`), never a 500 and never the framework's plain-text rejection.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::error::{AppError, ErrorCode};

/// Validation after deserialisation; the error names the field.
pub(crate) trait Validate {
    fn validate(&mut self) -> Result<(), AppError>;
}

/// A JSON request body, deserialised and validated.
pub(crate) struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Validate,
{
    type Rejection = AppError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<mime_type::Essence>().ok())
            .is_some_and(|m| m.is_json());
        if !is_json {
            return Err(AppError::new(ErrorCode::UnsupportedMediaType, "expected Content-Type: application/json"));
        }
        let bytes = Bytes::from_request(request, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                AppError::new(ErrorCode::PayloadTooLarge, "the request body is too large")
            } else {
                AppError::new(ErrorCode::InvalidJson, "the request body could not be read")
            }
        })?;
        let mut value = parse_json::<T>(&bytes)?;
        value.validate()?;
        Ok(ApiJson(value))
    }
}

/// Deserialize, naming the failing field.
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    // Every request body of the API is an object (serde would also read a struct from an array).
    if bytes.iter().find(|b| !b.is_ascii_whitespace()).is_some_and(|b| *b != b'{') {
        return Err(AppError::validation("body", "the body must be a JSON object"));
    }
    if let Some(field) = nul::json_field(bytes) {
        return Err(nul::refused(field));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            AppError::new(ErrorCode::InvalidJson, format!("malformed JSON: {inner}"))
        } else if path == "." {
            AppError::validation("body", format!("invalid body: {inner}"))
        } else {
            AppError::validation(path.clone(), format!("{path}: {inner}"))
        }
    })
}

/// A query string, deserialised and validated.
/// A required text field as its schema declares it (`maxLength` = `max_chars`, pattern `[^ \t\n\r]`): at most
/// `max_chars` characters as sent, not blank; the value kept is trimmed of ASCII spaces, tabs and line breaks
/// (the same characters the pattern names, so the document and the check agree in every regex dialect).
pub(crate) fn text_field(field: &str, value: &str, max_chars: usize) -> Result<String, AppError> {
    let trimmed = value.trim_matches([' ', '\t', '\n', '\r']);
    if trimmed.is_empty() || value.chars().count() > max_chars {
        return Err(AppError::validation(field, format!("{field} must be 1 to {max_chars} characters, not blank")));
    }
    Ok(trimmed.to_owned())
}

pub(crate) struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Validate,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        if let Some(field) = nul::query_field(query) {
            return Err(nul::refused(field));
        }
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        let mut value: T = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." { "query".to_owned() } else { path };
            AppError::validation(field.clone(), format!("{field}: {}", e.into_inner()))
        })?;
        value.validate()?;
        Ok(ApiQuery(value))
    }
}

/// Path parameters, read by name as UUIDs.
pub(crate) struct PathIds(crate::http::context::RequestContext);

impl PathIds {
    /// The path parameter `name` as a UUID: 400 `INVALID_ID` when it is not one.
    pub(crate) fn uuid(&self, name: &str) -> Result<Uuid, AppError> {
        self.0
            .route()
            .map(|r| r.params.uuid(name))
            .transpose()?
            .flatten()
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("route has no {{{name}}} parameter")))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for PathIds {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(PathIds(crate::http::context::RequestContext::of(&parts.extensions)))
    }
}

mod nul {
    use crate::error::AppError;

    pub(super) fn refused(field: String) -> AppError {
        AppError::validation(field.clone(), format!("{field}: NUL characters (U+0000) are not allowed"))
    }

    /// The path (`a.b[0]`, as the other field errors name it) of the first string or key holding a NUL.
    pub(super) fn json_field(bytes: &[u8]) -> Option<String> {
        if !escapes_nul(bytes) {
            return None;
        }
        let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
        find(&value, String::new())
    }

    /// Whether `\u0000` occurs as an escape (not as the text after an escaped backslash).
    fn escapes_nul(bytes: &[u8]) -> bool {
        if !bytes.windows(5).any(|w| w == b"u0000") {
            return false;
        }
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'\\' {
                if bytes[i + 1..].starts_with(b"u0000") {
                    return true;
                }
                i += 2;
            } else {
                i += 1;
            }
        }
        false
    }

    fn find(value: &serde_json::Value, path: String) -> Option<String> {
        use serde_json::Value;
        let here = |path: String| if path.is_empty() { "body".to_owned() } else { path };
        match value {
            Value::String(s) if s.contains('\0') => Some(here(path)),
            Value::Array(items) => items.iter().enumerate().find_map(|(i, v)| find(v, format!("{path}[{i}]"))),
            Value::Object(map) => map.iter().find_map(|(k, v)| {
                let field = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                if k.contains('\0') { Some(here(path.clone())) } else { find(v, field) }
            }),
            _ => None,
        }
    }

    /// The first query parameter whose name or value decodes to a NUL.
    pub(super) fn query_field(query: &str) -> Option<String> {
        if !query.contains("%00") {
            return None;
        }
        form_urlencoded::parse(query.as_bytes())
            .find(|(k, v)| k.contains('\0') || v.contains('\0'))
            .map(|(k, _)| if k.contains('\0') { "query".to_owned() } else { k.into_owned() })
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn nul_is_found_in_strings_keys_and_queries_and_only_there() {
            assert_eq!(json_field(br#"{"title":"a\u0000b"}"#).as_deref(), Some("title"));
            assert_eq!(json_field(br#"{"a":{"b":["x","\u0000"]}}"#).as_deref(), Some("a.b[1]"));
            assert_eq!(json_field(br#"{"k\u0000":1}"#).as_deref(), Some("body"));
            assert_eq!(json_field(br#""\u0000""#).as_deref(), Some("body"));
            // An escaped backslash followed by the text u0000 is no NUL.
            assert_eq!(json_field(br#"{"title":"a\\u0000b"}"#), None);
            assert_eq!(json_field(br#"{"title":"u0000"}"#), None);
            assert_eq!(query_field("q=a%00b&limit=5").as_deref(), Some("q"));
            assert_eq!(query_field("q%00=a").as_deref(), Some("query"));
            assert_eq!(query_field("q=%2500"), None);
            assert_eq!(query_field("q=plain"), None);
        }
    }
}

/// `application/json` and `application/<x>+json`, with parameters.
mod mime_type {
    pub(super) struct Essence(String);

    impl std::str::FromStr for Essence {
        type Err = ();
        fn from_str(s: &str) -> Result<Self, ()> {
            let essence = s.split(';').next().ok_or(())?.trim().to_ascii_lowercase();
            Ok(Essence(essence))
        }
    }

    impl Essence {
        pub(super) fn is_json(&self) -> bool {
            self.0 == "application/json" || (self.0.starts_with("application/") && self.0.ends_with("+json"))
        }
    }
}
