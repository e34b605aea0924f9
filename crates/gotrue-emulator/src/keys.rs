//! The emulator's JWT signing key, its JWKS, and GoTrue-style verification.
//!
//! Supabase projects sign access tokens either with an asymmetric ES256 key
//! (published at `/.well-known/jwks.json` under a `kid`) or with the legacy
//! shared HS256 secret (nothing published). The product verifies tokens
//! itself, so the emulator must produce the same headers and key formats.
//!
//! Verification is hand-rolled on top of `jsonwebtoken::crypto::verify`
//! rather than `jsonwebtoken::decode` because GoTrue's `/user` and `/logout`
//! report *why* a token was rejected in the error message, using golang-jwt's
//! wording and check order (segments, alg, key lookup, signature, `exp`/`nbf`
//! with no leeway, `exp` optional), and clients sometimes log or match those.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::EncodePrivateKey;
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::config::Signing;

/// Algorithms golang-jwt knows; an `alg` outside this set is "unavailable",
/// one inside it but not accepted by GoTrue's config is "invalid".
const KNOWN_ALGS: &[&str] = &[
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512",
    "EdDSA", "none",
];

enum Material {
    Es256 { kid: String, encoding: EncodingKey, decoding: DecodingKey, jwk: Value },
    Hs256 { encoding: EncodingKey, decoding: DecodingKey },
}

/// Signing and verification key of one emulator instance.
pub(crate) struct Keys {
    material: Material,
}

impl Keys {
    /// Generates a fresh P-256 key (ES256) or wraps the shared secret (HS256).
    pub(crate) fn new(signing: &Signing) -> anyhow::Result<Self> {
        let material = match signing {
            Signing::Es256 => {
                let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
                let der =
                    secret.to_pkcs8_der().map_err(|e| anyhow::anyhow!("encoding the P-256 key as PKCS#8: {e}"))?;
                let point = secret.public_key().to_encoded_point(false);
                let (Some(x), Some(y)) = (point.x(), point.y()) else {
                    anyhow::bail!("P-256 public key has no affine coordinates");
                };
                let x = URL_SAFE_NO_PAD.encode(x);
                let y = URL_SAFE_NO_PAD.encode(y);
                let kid = uuid::Uuid::new_v4().to_string();
                let decoding = DecodingKey::from_ec_components(&x, &y)?;
                let jwk = json!({
                    "alg": "ES256",
                    "crv": "P-256",
                    "ext": true,
                    "key_ops": ["verify"],
                    "kid": kid,
                    "kty": "EC",
                    "use": "sig",
                    "x": x,
                    "y": y,
                });
                Material::Es256 { kid, encoding: EncodingKey::from_ec_der(der.as_bytes()), decoding, jwk }
            }
            Signing::Hs256 { secret } => {
                if secret.is_empty() {
                    anyhow::bail!("the HS256 secret must not be empty");
                }
                Material::Hs256 {
                    encoding: EncodingKey::from_secret(secret.as_bytes()),
                    decoding: DecodingKey::from_secret(secret.as_bytes()),
                }
            }
        };
        Ok(Self { material })
    }

    pub(crate) fn algorithm(&self) -> Algorithm {
        match self.material {
            Material::Es256 { .. } => Algorithm::ES256,
            Material::Hs256 { .. } => Algorithm::HS256,
        }
    }

    pub(crate) fn kid(&self) -> Option<String> {
        match &self.material {
            Material::Es256 { kid, .. } => Some(kid.clone()),
            Material::Hs256 { .. } => None,
        }
    }

    /// The JWKS document; GoTrue never publishes symmetric keys.
    pub(crate) fn jwks(&self) -> Value {
        match &self.material {
            Material::Es256 { jwk, .. } => json!({ "keys": [jwk] }),
            Material::Hs256 { .. } => json!({ "keys": [] }),
        }
    }

    /// The header GoTrue puts on its access tokens.
    pub(crate) fn header(&self) -> Header {
        let mut header = Header::new(self.algorithm());
        header.typ = Some("JWT".to_owned());
        header.kid = self.kid();
        header
    }

    fn encoding(&self) -> &EncodingKey {
        match &self.material {
            Material::Es256 { encoding, .. } | Material::Hs256 { encoding, .. } => encoding,
        }
    }

    /// Signs arbitrary claims under an arbitrary header with this key.
    pub(crate) fn sign<T: Serialize>(&self, header: &Header, claims: &T) -> jsonwebtoken::errors::Result<String> {
        jsonwebtoken::encode(header, claims, self.encoding())
    }

    /// Parses and verifies a bearer token the way GoTrue does, returning its
    /// claims or golang-jwt's description of what is wrong with it.
    pub(crate) fn verify(&self, token: &str, now: i64) -> Result<Map<String, Value>, String> {
        let parts: Vec<&str> = token.split('.').collect();
        let [header_b64, claims_b64, signature_b64] = parts[..] else {
            return Err("token is malformed: token contains an invalid number of segments".into());
        };
        let header: Map<String, Value> =
            decode_segment(header_b64).ok_or("token is malformed: could not base64 decode header").and_then(
                |bytes| serde_json::from_slice(&bytes).map_err(|_| "token is malformed: could not JSON decode header"),
            )?;
        let claims: Map<String, Value> =
            decode_segment(claims_b64).ok_or("token is malformed: could not base64 decode claim").and_then(
                |bytes| serde_json::from_slice(&bytes).map_err(|_| "token is malformed: could not JSON decode claim"),
            )?;
        if !claims_have_valid_types(&claims) {
            return Err("token is malformed: could not JSON decode claim".into());
        }

        let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
        if !KNOWN_ALGS.contains(&alg) {
            return Err("token is unverifiable: signing method (alg) is unavailable".into());
        }
        let expected = match self.algorithm() {
            Algorithm::ES256 => "ES256",
            _ => "HS256",
        };
        if alg != expected {
            return Err(format!("token signature is invalid: signing method {alg} is invalid"));
        }
        if decode_segment(signature_b64).is_none() {
            return Err("token is malformed: could not base64 decode signature".into());
        }

        let key = match &self.material {
            Material::Es256 { kid, decoding, .. } => {
                let token_kid = header.get("kid");
                if token_kid.and_then(Value::as_str) != Some(kid.as_str()) {
                    let shown = match token_kid {
                        Some(Value::String(s)) => s.clone(),
                        Some(other) => other.to_string(),
                        None => "<nil>".to_owned(),
                    };
                    return Err(format!(
                        "token is unverifiable: error while executing keyfunc: unrecognized JWT kid {shown} for algorithm {alg}"
                    ));
                }
                decoding
            }
            Material::Hs256 { decoding, .. } => decoding,
        };

        let message = format!("{header_b64}.{claims_b64}");
        let valid =
            jsonwebtoken::crypto::verify(signature_b64, message.as_bytes(), key, self.algorithm()).unwrap_or(false);
        if !valid {
            let reason = match self.algorithm() {
                Algorithm::ES256 => "crypto/ecdsa: verification error",
                _ => "signature is invalid",
            };
            return Err(format!("token signature is invalid: {reason}"));
        }

        if let Some(exp) = claims.get("exp").and_then(Value::as_f64)
            && (now as f64) >= exp
        {
            return Err("token has invalid claims: token is expired".into());
        }
        if let Some(nbf) = claims.get("nbf").and_then(Value::as_f64)
            && (now as f64) < nbf
        {
            return Err("token has invalid claims: token is not valid yet".into());
        }
        Ok(claims)
    }
}

/// golang-jwt decodes segments as unpadded base64url.
fn decode_segment(segment: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(segment).ok()
}

/// GoTrue unmarshals claims into a typed struct; values of the wrong JSON
/// type make the whole token "malformed".
fn claims_have_valid_types(claims: &Map<String, Value>) -> bool {
    let string_or_absent = |k: &str| claims.get(k).is_none_or(|v| v.is_string() || v.is_null());
    let number_or_absent = |k: &str| claims.get(k).is_none_or(|v| v.is_number() || v.is_null());
    let aud_ok = claims.get("aud").is_none_or(|v| match v {
        Value::String(_) | Value::Null => true,
        Value::Array(items) => items.iter().all(Value::is_string),
        _ => false,
    });
    ["iss", "sub", "email", "phone", "role", "aal", "session_id"].iter().all(|k| string_or_absent(k))
        && ["exp", "iat", "nbf"].iter().all(|k| number_or_absent(k))
        && aud_ok
}

/// Decodes a token's payload without verifying it (for tokens we issued).
pub(crate) fn unverified_claims(token: &str) -> Option<Value> {
    let payload = token.split('.').nth(1)?;
    serde_json::from_slice(&decode_segment(payload)?).ok()
}
