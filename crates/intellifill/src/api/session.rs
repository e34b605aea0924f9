//! `POST /api/auth/logout` and `GET /api/auth/session`: the caller's own session.
//!
//! Logout is more than a call to the auth service: the token stays cryptographically valid until its `exp`,
//! so this service also puts it (and, by scope, its session or the user's other sessions) on the shared
//! revocation list and broadcasts that, so every instance refuses it at once, in every verification mode.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::bearer;
use crate::auth::verify::LogoutScope;
use crate::error::AppError;
use crate::http::extract::{ApiQuery, Validate};
use crate::principal::UserTx;
use crate::state::AppState;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct LogoutParams {
    /// `local` (this session), `global` (every session, the default, as in GoTrue) or `others`.
    #[param(value_type = String, required = false, pattern = "^(local|global|others)$")]
    pub scope: Option<LogoutScope>,
}

impl Validate for LogoutParams {
    fn validate(&mut self) -> Result<(), AppError> {
        Ok(())
    }
}

/// End the session(s) at the auth service and refuse the token on every instance from now on.
#[utoipa::path(post, path = "/api/auth/logout", tag = "account", params(LogoutParams),
    responses((status = 204, description = "logged out")),
    extensions(("x-audit-action" = json!("auth.logout")), ("x-rate-limit" = json!("auth"))),
    security(("bearer" = [])))]
pub(crate) async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(params): ApiQuery<LogoutParams>,
    ctx: UserTx,
) -> Result<StatusCode, AppError> {
    // The transaction is not needed beyond the account checks it already made.
    drop(ctx.tx);
    let token = bearer::from_headers(&headers)?;
    state.auth.logout(token, &ctx.auth, params.scope.unwrap_or(LogoutScope::Global)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    pub user_id: Uuid,
    /// The e-mail of the caller's `users` row (None: anonymous, or claimed by another user since).
    pub email: Option<String>,
    pub session_id: Option<Uuid>,
    /// Seconds since the epoch.
    pub issued_at: i64,
    /// Seconds since the epoch.
    pub expires_at: i64,
    /// Seconds left.
    pub expires_in: i64,
    pub aal: Option<String>,
}

/// Who the token belongs to and when it expires.
#[utoipa::path(get, path = "/api/auth/session", tag = "account",
    responses((status = 200, body = Session)),
    extensions(("x-audit-action" = json!("auth.session")), ("x-rate-limit" = json!("auth"))),
    security(("bearer" = [])))]
pub async fn session(ctx: UserTx) -> Result<Json<Session>, AppError> {
    ctx.tx.commit().await?;
    let a = &ctx.auth;
    Ok(Json(Session {
        user_id: a.id,
        email: ctx.user.email,
        session_id: a.session_id,
        issued_at: a.issued_at,
        expires_at: a.expires_at,
        expires_in: (a.expires_at - chrono::Utc::now().timestamp()).max(0),
        aal: a.aal.as_deref().map(str::to_owned),
    }))
}
