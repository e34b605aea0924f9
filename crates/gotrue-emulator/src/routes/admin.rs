//! The admin user API (`/admin/users`), which needs the service-role key.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, RawQuery, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::json;
use uuid::Uuid;

use super::SharedState;
use super::gotrue::{authorization, parse_body, query_param};
use crate::auth::{AUTHENTICATED, AdminUserParams};
use crate::errors::ApiError;
use crate::views::{UserJson, UserListJson};

pub(super) fn require_admin(state: &SharedState, headers: &HeaderMap) -> Result<(), ApiError> {
    let apikey = headers.get("apikey").and_then(|v| v.to_str().ok());
    state.require_admin(authorization(headers), apikey)
}

/// The body of a service-role request, parsed as `T`. `requireAdminCredentials` comes before the
/// parse, so a bad key decides the error of a request that is also malformed.
pub(super) struct AdminBody<T>(pub(super) T);

impl<T: DeserializeOwned> FromRequest<SharedState> for AdminBody<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &SharedState) -> Result<Self, Self::Rejection> {
        let headers = request.headers().clone();
        let body = Bytes::from_request(request, state).await.map_err(IntoResponse::into_response)?;
        require_admin(state, &headers).map_err(IntoResponse::into_response)?;
        Ok(AdminBody(parse_body(&body).map_err(IntoResponse::into_response)?))
    }
}

/// `requireAdminCredentials`, then `loadUser`: the `{user_id}` path segment must be the UUID of an
/// existing user. Both come before the body is read, so they decide the error of a bad request to a
/// missing user.
pub(super) struct AdminUserId(Uuid);

impl FromRequestParts<SharedState> for AdminUserId {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &SharedState) -> Result<Self, Self::Rejection> {
        let Path(raw_id) =
            Path::<String>::from_request_parts(parts, state).await.map_err(IntoResponse::into_response)?;
        admin_and_user_id(state, &parts.headers, &raw_id).map(AdminUserId).map_err(IntoResponse::into_response)
    }
}

fn admin_and_user_id(state: &SharedState, headers: &HeaderMap, raw_id: &str) -> Result<Uuid, ApiError> {
    require_admin(state, headers)?;
    let id =
        Uuid::parse_str(raw_id).map_err(|_| ApiError::not_found("validation_failed", "user_id must be an UUID"))?;
    if state.store().user(id).is_none() {
        return Err(ApiError::user_not_found());
    }
    Ok(id)
}

fn page_param(query: Option<&str>, name: &str, default: usize) -> Result<usize, ApiError> {
    match query_param(query, name) {
        None => Ok(default),
        Some(raw) if raw.is_empty() => Ok(default),
        Some(raw) => raw.parse::<usize>().map_err(|e| ApiError::validation(format!("Bad Pagination Parameters: {e}"))),
    }
}

/// GoTrue's `Link` header: `rel="next"` while there is a next page, then
/// `rel="last"` always (supabase-js `admin.listUsers()` reads `total` only
/// when this header is present).
fn pagination_links(base_url: &str, page: usize, per_page: usize, total: usize) -> String {
    let last = total.div_ceil(per_page).max(1);
    let url = format!("{base_url}/auth/v1/admin/users");
    let mut links = Vec::new();
    if page < last {
        links.push(format!("<{url}?page={}&per_page={per_page}>; rel=\"next\"", page + 1));
    }
    links.push(format!("<{url}?page={last}&per_page={per_page}>; rel=\"last\""));
    links.join(", ")
}

pub(super) async fn list(
    State(state): State<SharedState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    require_admin(&state, &headers)?;
    let page = page_param(query.as_deref(), "page", 1)?.max(1);
    let per_page = page_param(query.as_deref(), "per_page", 50)?;
    let store = state.store();
    let users = store.users_newest_first();
    let total = users.len();
    let page_users = if per_page == 0 {
        users
    } else {
        users.into_iter().skip((page - 1).saturating_mul(per_page)).take(per_page).collect()
    };
    let mut response =
        Json(UserListJson { users: page_users.into_iter().map(UserJson::new).collect(), aud: AUTHENTICATED })
            .into_response();
    if let Ok(value) = HeaderValue::from_str(&total.to_string()) {
        response.headers_mut().insert("x-total-count", value);
    }
    if per_page > 0
        && let Ok(value) = HeaderValue::from_str(&pagination_links(&state.base_url, page, per_page, total))
    {
        response.headers_mut().insert(header::LINK, value);
    }
    Ok(response)
}

pub(super) async fn create(
    State(state): State<SharedState>,
    AdminBody(params): AdminBody<AdminUserParams>,
) -> Result<Response, ApiError> {
    let user = state.admin_create_user(params)?;
    Ok(Json(UserJson::new(&user)).into_response())
}

pub(super) async fn get(State(state): State<SharedState>, AdminUserId(id): AdminUserId) -> Result<Response, ApiError> {
    let store = state.store();
    let user = store.user(id).ok_or_else(ApiError::user_not_found)?;
    Ok(Json(UserJson::new(user)).into_response())
}

pub(super) async fn update(
    State(state): State<SharedState>,
    AdminUserId(id): AdminUserId,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params: AdminUserParams = parse_body(&body)?;
    let user = state.admin_update_user(id, params)?;
    Ok(Json(UserJson::new(&user)).into_response())
}

pub(super) async fn delete(
    State(state): State<SharedState>,
    AdminUserId(id): AdminUserId,
    body: Bytes,
) -> Result<Response, ApiError> {
    if !body.is_empty() {
        // `{"should_soft_delete": bool}`; the emulator always hard-deletes,
        // but a malformed body is still rejected like GoTrue does.
        let _: serde_json::Value = parse_body(&body)?;
    }
    state.delete_user(id)?;
    Ok(Json(json!({})).into_response())
}
