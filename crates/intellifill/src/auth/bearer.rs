//! The shape of a bearer token, checked before anything else looks at it: `Authorization: Bearer <token>`,
//! 20 to 4096 characters, three base64url parts. Anything else is refused without a network call.
//!
//! It runs over a ~1 KB token whenever the token cache does not know the token (a cache hit is the hash of
//! bytes that already passed it: [`token_bytes`] checks only scheme and length, `auth::verify` the rest on a
//! miss), so it works on the header's bytes in passes the compiler vectorizes (no early exit, no branch per
//! byte) and allocates nothing: a byte-at-a-time check costs ~15,000 instructions per request (callgrind,
//! docs/PERFORMANCE.md, "Auth path"), a fifth of the whole middleware stack's.

use axum::http::{HeaderMap, header};

use crate::error::{AppError, ErrorCode};

pub(crate) const MIN_LEN: usize = 20;
pub(crate) const MAX_LEN: usize = 4096;

/// The token in the `Authorization` header, checked: scheme, length bounds and shape.
pub(crate) fn from_headers(headers: &HeaderMap) -> Result<&str, AppError> {
    checked(token_bytes(headers)?)
}

/// The token's bytes in the `Authorization` header: scheme and length bounds checked, not yet its shape.
/// For the token cache, whose hit needs no shape check: its key is the hash of bytes that passed it
/// (`auth::verify`; the check is a pass over ~1 KB on every request otherwise).
pub(crate) fn token_bytes(headers: &HeaderMap) -> Result<&[u8], AppError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(AppError::new(ErrorCode::TokenMissing, "an Authorization: Bearer token is required"));
    };
    let value = value.as_bytes();
    let Some(space) = value.iter().position(|&b| b == b' ') else {
        return Err(malformed("expected `Authorization: Bearer <token>`"));
    };
    if !value[..space].eq_ignore_ascii_case(b"bearer") {
        return Err(malformed("expected `Authorization: Bearer <token>`"));
    }
    let token = value[space + 1..].trim_ascii();
    if token.is_empty() {
        return Err(AppError::new(ErrorCode::TokenMissing, "the bearer token is empty"));
    }
    if token.len() < MIN_LEN || token.len() > MAX_LEN {
        return Err(malformed("the token length is out of bounds"));
    }
    Ok(token)
}

/// `token` as text once its shape is checked.
pub(crate) fn checked(token: &[u8]) -> Result<&str, AppError> {
    check_shape_bytes(token)?;
    // The shape check admits ASCII only, so this cannot fail; it costs one vectorized pass.
    std::str::from_utf8(token).map_err(|_| malformed("the token is not a JWT"))
}

/// Length bounds and three base64url parts.
fn check_shape_bytes(bytes: &[u8]) -> Result<(), AppError> {
    if bytes.len() < MIN_LEN || bytes.len() > MAX_LEN {
        return Err(malformed("the token length is out of bounds"));
    }
    // The two separators (the first and the last dot; the header and signature parts are short), then one
    // pass without early exit over all three parts that admits base64url only, so a dot anywhere else fails
    // it too: that pass vectorizes.
    let (Some(first), Some(last)) = (bytes.iter().position(|&b| b == b'.'), bytes.iter().rposition(|&b| b == b'.'))
    else {
        return Err(malformed("the token is not a JWT"));
    };
    let non_empty = first > 0 && last > first + 1 && last < bytes.len() - 1;
    let outside = |part: &[u8]| part.iter().fold(0u8, |acc, &b| acc | u8::from(!is_base64url(b)));
    if !non_empty || (outside(&bytes[..first]) | outside(&bytes[first + 1..last]) | outside(&bytes[last + 1..])) != 0 {
        return Err(malformed("the token is not a JWT"));
    }
    Ok(())
}

/// The base64url alphabet, without branches.
fn is_base64url(b: u8) -> bool {
    b.is_ascii_digit() | b.is_ascii_uppercase() | b.is_ascii_lowercase() | (b == b'-') | (b == b'_')
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
        // Bytes a header may carry but a token may not (obs-text, a tab inside).
        let raw = |v: &[u8]| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, HeaderValue::from_bytes(v).expect("header"));
            from_headers(&h).map(str::to_owned).map_err(|e| e.code)
        };
        assert_eq!(raw(b"Bearer aaaaaaaaaa.bbbb\xffbbbbb.cccccccccc"), Err(ErrorCode::TokenMalformed));
        assert_eq!(raw(b"Bearer aaaaaaaaaa.bbbb\tbbbbb.cccccccccc"), Err(ErrorCode::TokenMalformed));
        assert_eq!(raw(b"B\xe9arer aaaaaaaaaa.bbbbbbbbbb.cccccccccc"), Err(ErrorCode::TokenMalformed));
        // Surrounding blanks are not part of the token.
        assert_eq!(raw(b"Bearer  aaaaaaaaaa.bbbbbbbbbb.cccccccccc\t"), Ok(good.to_owned()));
    }

    #[test]
    fn token_bytes_checks_scheme_and_bounds_and_leaves_the_shape_to_checked() {
        let code = |v: &str| token_bytes(&headers(v)).expect_err("rejected").code;
        assert_eq!(token_bytes(&HeaderMap::new()).expect_err("missing").code, ErrorCode::TokenMissing);
        assert_eq!(code("Bearer "), ErrorCode::TokenMissing);
        assert_eq!(code("Basic aaaaaaaaaa.bbbbbbbbbb.cccccccccc"), ErrorCode::TokenMalformed);
        assert_eq!(code("Bearer short.a.b"), ErrorCode::TokenMalformed);
        assert_eq!(code(&format!("Bearer {}.b.c", "a".repeat(MAX_LEN))), ErrorCode::TokenMalformed);
        // Within bounds but not a JWT: passed on as bytes, refused by `checked`.
        let garbage = "aaaaaaaaaa.bbbb+bbbbb.cccccccccc";
        let map = headers(&format!("Bearer {garbage}"));
        let bytes = token_bytes(&map).expect("within bounds");
        assert_eq!(bytes, garbage.as_bytes());
        assert_eq!(checked(bytes).expect_err("not base64url").code, ErrorCode::TokenMalformed);
        assert_eq!(
            checked(b"aaaaaaaaaa.bbbbbbbbbb.cccccccccc").expect("a JWT shape"),
            "aaaaaaaaaa.bbbbbbbbbb.cccccccccc"
        );
    }
}
