//! The public GoTrue endpoints: health, JWKS, token grants, sign-up, the
//! current user and logout. Thin adapters from HTTP to [`crate::auth`].

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use super::SharedState;
use crate::auth::{AUTHENTICATED, Issued, SignedUp, UserUpdateParams, logout_scope};
use crate::errors::ApiError;
use crate::views::{TokenResponseJson, UserJson};

/// Version reported by `/health`.
const VERSION: &str = concat!("gotrue-emulator-", env!("CARGO_PKG_VERSION"));

/// GoTrue reads request bodies with `json.Unmarshal`, whatever the
/// content type.
pub(super) fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(ApiError::bad_json)
}

pub(super) fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(query?)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// The `redirect_to` query parameter: where an email's link leads (supabase-js sends `emailRedirectTo` /
/// `redirectTo` this way).
pub(super) struct RedirectTo(Option<String>);

impl RedirectTo {
    pub(super) fn as_deref(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RedirectTo {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(RedirectTo(query_param(parts.uri.query(), "redirect_to")))
    }
}

pub(super) fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())
}

pub(super) fn token_response(issued: &Issued) -> Response {
    Json(TokenResponseJson {
        access_token: &issued.access_token,
        token_type: "bearer",
        expires_in: issued.expires_in,
        expires_at: issued.expires_at,
        refresh_token: &issued.refresh_token,
        user: UserJson::new(&issued.user),
    })
    .into_response()
}

pub(super) async fn health() -> Json<Value> {
    Json(json!({
        "version": VERSION,
        "name": "GoTrue",
        "description": "GoTrue is a user registration and authentication API",
    }))
}

/// `GET /settings`: the project's public auth settings, as this emulator behaves (email sign-in, autoconfirm
/// and anonymous sign-ins as configured, no phone, no external providers, signup open). Behind the gateway
/// it needs only the `apikey`,
/// which makes it the call that checks a key without any user token.
pub(super) async fn settings(State(state): State<SharedState>) -> Json<Value> {
    let external: Map<String, Value> = [
        "anonymous_users",
        "apple",
        "azure",
        "bitbucket",
        "discord",
        "facebook",
        "figma",
        "fly",
        "github",
        "gitlab",
        "google",
        "keycloak",
        "kakao",
        "linkedin",
        "linkedin_oidc",
        "notion",
        "spotify",
        "slack",
        "slack_oidc",
        "workos",
        "twitch",
        "twitter",
        "email",
        "phone",
        "zoom",
    ]
    .into_iter()
    .map(|provider| {
        let on = provider == "email" || (provider == "anonymous_users" && state.signup.anonymous);
        (provider.to_owned(), Value::Bool(on))
    })
    .collect();
    Json(json!({
        "external": external,
        "disable_signup": false,
        "mailer_autoconfirm": state.signup.autoconfirm,
        "phone_autoconfirm": false,
        "sms_provider": "",
        "saml_enabled": false,
    }))
}

pub(super) async fn jwks(State(state): State<SharedState>) -> Response {
    let mut response = Json(state.keys.jwks()).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=600"));
    response
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PasswordGrantParams {
    email: String,
    phone: String,
    password: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RefreshTokenGrantParams {
    refresh_token: String,
}

pub(super) async fn token(
    State(state): State<SharedState>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    let grant_type = query_param(query.as_deref(), "grant_type").unwrap_or_default();
    let issued = match grant_type.as_str() {
        "password" => {
            let params: PasswordGrantParams = parse_body(&body)?;
            state.password_grant(&params.email, &params.phone, &params.password)?
        }
        "refresh_token" => {
            let params: RefreshTokenGrantParams = parse_body(&body)?;
            state.refresh_grant(&params.refresh_token)?
        }
        // id_token, pkce and web3 are real grants, but need providers and
        // flows the emulator does not have.
        _ => {
            return Err(ApiError::bad_request("invalid_credentials", "unsupported_grant_type"));
        }
    };
    Ok(token_response(&issued))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct SignupParams {
    email: String,
    phone: String,
    password: String,
    data: Option<Map<String, Value>>,
}

/// supabase-js sends `emailRedirectTo` as the `redirect_to` query parameter: where the confirmation link
/// leads.
pub(super) async fn signup(
    State(state): State<SharedState>,
    to: RedirectTo,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params: SignupParams = parse_body(&body)?;
    match state.signup(&params.email, &params.phone, &params.password, params.data, to.as_deref())? {
        SignedUp::Session(issued) => Ok(token_response(&issued)),
        SignedUp::Unconfirmed(user) => Ok(Json(UserJson::new(&user)).into_response()),
    }
}

pub(super) async fn user(State(state): State<SharedState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let auth = state.authenticate(authorization(&headers))?;
    let request_aud =
        headers.get("x-jwt-aud").and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty()).unwrap_or(AUTHENTICATED);
    let token_aud = match auth.claims.get("aud") {
        Some(Value::String(aud)) => Some(aud.as_str()),
        Some(Value::Array(auds)) => auds.first().and_then(Value::as_str),
        _ => None,
    };
    if token_aud != Some(request_aud) {
        return Err(ApiError::validation("Token audience doesn't match request audience"));
    }
    Ok(Json(UserJson::new(&auth.user)).into_response())
}

/// `PUT /user`: the caller's own password, metadata and email address.
pub(super) async fn update_user(
    State(state): State<SharedState>,
    headers: HeaderMap,
    to: RedirectTo,
    body: Bytes,
) -> Result<Response, ApiError> {
    let auth = state.authenticate(authorization(&headers))?;
    let params: UserUpdateParams = parse_body(&body)?;
    let user = state.update_user(&auth, params, to.as_deref())?;
    Ok(Json(UserJson::new(&user)).into_response())
}

pub(super) async fn logout(
    State(state): State<SharedState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let auth = state.authenticate(authorization(&headers))?;
    let scope = logout_scope(query_param(query.as_deref(), "scope").as_deref())?;
    state.logout(&auth, scope);
    Ok(StatusCode::NO_CONTENT.into_response())
}
