//! The shape of a bearer token, checked before anything else looks at it: `Authorization: Bearer <token>`,
//! 20 to 4096 characters, three base64url parts. Anything else is refused without a network call.

use axum::http::{HeaderMap, header};

use crate::error::{AppError, ErrorCode};

pub const MIN_LEN: usize = 20;
pub const MAX_LEN: usize = 4096;

/// Extract the token from the `Authorization` header.
pub fn from_headers(headers: &HeaderMap) -> Result<&str, AppError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(AppError::new(ErrorCode::TokenMissing, "an Authorization: Bearer token is required"));
    };
    let value = value.to_str().map_err(|_| malformed("the Authorization header is not valid text"))?;
    let Some((scheme, token)) = value.split_once(' ') else {
        return Err(malformed("expected `Authorization: Bearer <token>`"));
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(malformed("expected `Authorization: Bearer <token>`"));
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(AppError::new(ErrorCode::TokenMissing, "the bearer token is empty"));
    }
    check_shape(token)?;
    Ok(token)
}

/// Length bounds and three base64url parts. Runs on every authenticated request, so it is one pass over the
/// bytes without early exit (the compiler vectorizes it) and allocates nothing.
pub fn check_shape(token: &str) -> Result<(), AppError> {
    if token.len() < MIN_LEN || token.len() > MAX_LEN {
        return Err(malformed("the token length is out of bounds"));
    }
    let bytes = token.as_bytes();
    let (alphabet_only, dots) = bytes.iter().fold((true, 0usize), |(ok, dots), &b| {
        let base64url = b.is_ascii_alphanumeric() | (b == b'-') | (b == b'_');
        (ok & (base64url | (b == b'.')), dots + usize::from(b == b'.'))
    });
    // Three non-empty parts: two dots, neither at an end nor side by side.
    let parts_non_empty = bytes[0] != b'.' && bytes[bytes.len() - 1] != b'.' && !token.contains("..");
    if !alphabet_only || dots != 2 || !parts_non_empty {
        return Err(malformed("the token is not a JWT"));
    }
    Ok(())
}

fn malformed(message: &'static str) -> AppError {
    AppError::new(ErrorCode::TokenMalformed, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).expect("header"));
        h
    }

    #[test]
    fn shapes_are_classified() {
        let good = "aaaaaaaaaa.bbbbbbbbbb.cccccccccc";
        assert_eq!(from_headers(&headers(&format!("Bearer {good}"))).expect("ok"), good);
        assert_eq!(from_headers(&headers(&format!("bearer {good}"))).expect("ok"), good);
        let code = |v: &str| from_headers(&headers(v)).expect_err("rejected").code;
        assert_eq!(from_headers(&HeaderMap::new()).expect_err("missing").code, ErrorCode::TokenMissing);
        assert_eq!(code("Bearer "), ErrorCode::TokenMissing);
        assert_eq!(code(&format!("Basic {good}")), ErrorCode::TokenMalformed);
        assert_eq!(code("Bearer short.a.b"), ErrorCode::TokenMalformed);
        assert_eq!(code("Bearer aaaaaaaaaa.bbbbbbbbbbcccccccccc"), ErrorCode::TokenMalformed);
        assert_eq!(code("Bearer aaaaaaaaaa.bbbb+bbbbb.cccccccccc"), ErrorCode::TokenMalformed);
        assert_eq!(code(&format!("Bearer {}.b.c", "a".repeat(MAX_LEN))), ErrorCode::TokenMalformed);
        assert_eq!(code("Bearer .aaaaaaaaaa.bbbbbbbbbbcccccccccc"), ErrorCode::TokenMalformed);
        assert_eq!(code("Bearer aaaaaaaaaa.bbbbbbbbbbcccccccccc."), ErrorCode::TokenMalformed);
        assert_eq!(code("Bearer aaaaaaaaaa..bbbbbbbbbbcccccccccc"), ErrorCode::TokenMalformed);
        assert_eq!(code("Bearer aaaaaaaaaa.bbbbb.bbbbb.cccccccccc"), ErrorCode::TokenMalformed);
        assert_eq!(code("Bearer aaaaaaaaaa.bbbbbbbbbb.ccccccccc="), ErrorCode::TokenMalformed);
    }
}
