//! The email flows over HTTP: `/otp`, `/recover`, `/resend`, `/verify`
//! (link and API), and the service-role `/invite` and
//! `/admin/generate_link`. Thin adapters from HTTP to [`crate::auth`].

use axum::Json;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::SharedState;
use super::admin::AdminBody;
use super::gotrue::{RedirectTo, parse_body, query_param, token_response};
use crate::auth::{GenerateLinkParams, OTHER_EMAIL_PENDING, OtpParams, ResendParams, Verified, VerifyParams, Via};
use crate::errors::ApiError;
use crate::views::UserJson;

fn empty_object() -> Response {
    Json(json!({})).into_response()
}

pub(super) async fn otp(State(state): State<SharedState>, to: RedirectTo, body: Bytes) -> Result<Response, ApiError> {
    state.otp(parse_body::<OtpParams>(&body)?, to.as_deref())?;
    Ok(empty_object())
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RecoverParams {
    email: String,
}

pub(super) async fn recover(
    State(state): State<SharedState>,
    to: RedirectTo,
    body: Bytes,
) -> Result<Response, ApiError> {
    state.recover(&parse_body::<RecoverParams>(&body)?.email, to.as_deref())?;
    Ok(empty_object())
}

pub(super) async fn resend(
    State(state): State<SharedState>,
    to: RedirectTo,
    body: Bytes,
) -> Result<Response, ApiError> {
    state.resend(parse_body::<ResendParams>(&body)?, to.as_deref())?;
    Ok(empty_object())
}

pub(super) async fn verify_post(State(state): State<SharedState>, body: Bytes) -> Result<Response, ApiError> {
    let params: VerifyParams = parse_body(&body)?;
    match state.verify(&params, Via::Api)? {
        Verified::Session(issued) => Ok(token_response(&issued)),
        Verified::OtherEmailPending => Ok(Json(json!({ "msg": OTHER_EMAIL_PENDING, "code": "200" })).into_response()),
    }
}

/// OAuth's `error` for a status, as GoTrue's `oauthErrorMap` has it.
fn oauth_error(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "unauthorized_client",
        403 => "access_denied",
        500.. => "server_error",
        _ => "invalid_request",
    }
}

fn see_other(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(value) => (StatusCode::SEE_OTHER, [(header::LOCATION, value)]).into_response(),
        Err(_) => ApiError::internal("unrepresentable redirect URL").into_response(),
    }
}

/// `target` with `fragment` (form-encoded pairs, sorted as Go's
/// `url.Values.Encode` sorts them); `clear_query` drops the target's query.
fn with_fragment(target: &str, mut pairs: Vec<(&str, String)>, clear_query: bool) -> String {
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    let fragment = serde_urlencoded::to_string(&pairs).unwrap_or_default();
    match url::Url::parse(target) {
        Ok(mut url) => {
            if clear_query {
                url.set_query(None);
            }
            url.set_fragment(Some(&fragment));
            url.to_string()
        }
        Err(_) => format!("{target}#{fragment}"),
    }
}

/// `GET /verify`: the link in an email. Success redirects (303) to
/// `redirect_to` with the session in the fragment (implicit flow); a bad or
/// expired link redirects with the error in the fragment; missing
/// parameters are a JSON error, as in GoTrue.
pub(super) async fn verify_get(
    State(state): State<SharedState>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let q = query.as_deref();
    let params = VerifyParams {
        kind: query_param(q, "type").unwrap_or_default(),
        token: query_param(q, "token").unwrap_or_default(),
        redirect_to: query_param(q, "redirect_to").unwrap_or_default(),
        ..VerifyParams::default()
    };
    if params.token.is_empty() {
        return Err(ApiError::validation("Verify requires a token or a token hash"));
    }
    if params.kind.is_empty() {
        return Err(ApiError::validation("Verify requires a verification type"));
    }
    let target = state.redirect_target(Some(&params.redirect_to));
    let location = match state.verify(&params, Via::Link) {
        Ok(Verified::Session(issued)) => with_fragment(
            &target,
            vec![
                ("access_token", issued.access_token.clone()),
                ("expires_at", issued.expires_at.to_string()),
                ("expires_in", issued.expires_in.to_string()),
                ("refresh_token", issued.refresh_token.clone()),
                ("token_type", "bearer".to_owned()),
                ("type", params.kind.clone()),
            ],
            false,
        ),
        Ok(Verified::OtherEmailPending) => {
            with_fragment(&target, vec![("message", OTHER_EMAIL_PENDING.to_owned())], false)
        }
        Err(err) => with_fragment(
            &target,
            vec![
                ("error", oauth_error(err.status).to_owned()),
                ("error_code", err.code.to_owned()),
                ("error_description", err.message.clone()),
            ],
            true,
        ),
    };
    Ok(see_other(&location))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct InviteParams {
    email: String,
    data: Option<Map<String, Value>>,
}

pub(super) async fn invite(
    State(state): State<SharedState>,
    to: RedirectTo,
    AdminBody(params): AdminBody<InviteParams>,
) -> Result<Response, ApiError> {
    let user = state.invite(&params.email, params.data, to.as_deref())?;
    Ok(Json(UserJson::new(&user)).into_response())
}

/// `POST /admin/generate_link`: the user's fields with `action_link`,
/// `email_otp`, `hashed_token`, `verification_type` and `redirect_to`
/// (GoTrue's `GenerateLinkResponse` embeds the user).
pub(super) async fn generate_link(
    State(state): State<SharedState>,
    to: RedirectTo,
    AdminBody(params): AdminBody<GenerateLinkParams>,
) -> Result<Response, ApiError> {
    let generated = state.generate_link(params, to.as_deref())?;
    let mut body = serde_json::to_value(UserJson::new(&generated.user))
        .map_err(|e| ApiError::internal(format!("error encoding the user: {e}")))?;
    let hashed_token = query_param(generated.email.link.split_once('?').map(|(_, q)| q), "token").unwrap_or_default();
    if let Some(map) = body.as_object_mut() {
        map.insert("action_link".into(), json!(generated.email.link));
        map.insert("email_otp".into(), json!(generated.email.code));
        map.insert("hashed_token".into(), json!(hashed_token));
        map.insert("verification_type".into(), json!(generated.email.kind.verification_type()));
        map.insert("redirect_to".into(), json!(generated.redirect_to));
    }
    Ok(Json(body).into_response())
}
