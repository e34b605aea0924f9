//! Extractors whose rejections are our error body: JSON bodies, query strings and path ids.
//!
//! Malformed JSON, the wrong content type, an oversized body, a bad UUID in the path, an unknown or
//! mistyped field: each is a 4xx naming what is wrong (`field`), never a 500 and never the framework's
//! plain-text rejection.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::error::{AppError, ErrorCode};

/// Validation after deserialisation; the error names the field.
pub trait Validate {
    fn validate(&mut self) -> Result<(), AppError>;
}

/// A JSON request body, deserialised and validated.
pub struct ApiJson<T>(pub T);

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
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
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
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Validate,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
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
pub struct PathIds(Vec<(String, String)>);

impl PathIds {
    pub fn uuid(&self, name: &str) -> Result<Uuid, AppError> {
        let raw = self
            .0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("route has no {{{name}}} parameter")))?;
        Uuid::parse_str(raw)
            .map_err(|_| AppError::new(ErrorCode::InvalidId, format!("{name} is not a valid UUID")).with_field(name))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for PathIds {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let raw = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|e| AppError::new(ErrorCode::InvalidId, format!("invalid path parameter: {e}")))?;
        Ok(PathIds(raw.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect()))
    }
}

/// `application/json` and `application/<x>+json`, with parameters.
mod mime_type {
    pub struct Essence(String);

    impl std::str::FromStr for Essence {
        type Err = ();
        fn from_str(s: &str) -> Result<Self, ()> {
            let essence = s.split(';').next().ok_or(())?.trim().to_ascii_lowercase();
            Ok(Essence(essence))
        }
    }

    impl Essence {
        pub fn is_json(&self) -> bool {
            self.0 == "application/json" || (self.0.starts_with("application/") && self.0.ends_with("+json"))
        }
    }
}
