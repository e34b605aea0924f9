//! The current user, loaded inside the request transaction.
//!
//! [`UserTx`] opens the request transaction with the user's RLS context and, in the same round trip, reads
//! the caller's `users` row; a missing row is provisioned (or refused) and the row's e-mail kept in step with
//! the auth service by the rule of [`lifecycle`]; `is_active = false` is `ACCOUNT_DEACTIVATED`, on every
//! request, so a deactivated user is locked out at once whatever any cache says.

mod lifecycle;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::Serialize;
use uuid::Uuid;

use crate::auth::AuthUser;
use crate::db::{FirstRows, MemberAccess, RlsContext, Statement, Tx};
use crate::error::{AppError, ErrorCode};
use crate::state::AppState;

/// Platform-wide role (not an organization role).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PlatformRole {
    Admin,
    User,
    Viewer,
}

impl PlatformRole {
    fn parse(s: &str) -> PlatformRole {
        match s {
            "ADMIN" => PlatformRole::Admin,
            "VIEWER" => PlatformRole::Viewer,
            _ => PlatformRole::User,
        }
    }
}

/// The caller's `users` row.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub id: Uuid,
    /// None for an anonymous user, and for a row whose address another user claimed since.
    pub email: Option<String>,
    pub role: PlatformRole,
    pub is_active: bool,
    pub organization_id: Option<Uuid>,
}

/// A request transaction for the authenticated user, with no organization context.
pub struct UserTx {
    pub tx: Tx,
    pub user: CurrentUser,
    /// What the token said (session, expiry).
    pub auth: AuthUser,
}

/// The verified caller, from the auth layer.
pub(crate) fn auth_user(parts: &Parts) -> Result<&AuthUser, AppError> {
    parts
        .extensions
        .get::<AuthUser>()
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("route is missing the auth layer")))
}

/// An opened request transaction: the checked caller, their membership in the organization asked for (when
/// one was) and the first query's result (looked at only once the caller is known to be allowed).
pub(crate) struct Open {
    pub tx: Tx,
    pub user: CurrentUser,
    pub access: Option<MemberAccess>,
    pub first: FirstRows,
}

/// Open the request transaction for `auth` (and `org`), load and check the user row, and run `first` in the
/// same round trip.
pub(crate) async fn open(
    state: &AppState,
    auth: &AuthUser,
    org: Option<Uuid>,
    first: Option<Statement<'_, '_>>,
) -> Result<Open, AppError> {
    open_as(state, auth, org, first, false).await
}

/// [`open`] for a read: `COMMIT` goes in the opening pipeline ([`crate::db::Db::read`]), so the returned
/// transaction is committed (one round trip) unless the user row must be written first, in which case the
/// request is opened again the ordinary way without `first` (its rows are `None`): the caller runs it after
/// the write, so it reads the row as written.
pub(crate) async fn open_read(
    state: &AppState,
    auth: &AuthUser,
    org: Uuid,
    first: Statement<'_, '_>,
) -> Result<Open, AppError> {
    open_as(state, auth, Some(org), Some(first), true).await
}

async fn open_as(
    state: &AppState,
    auth: &AuthUser,
    org: Option<Uuid>,
    first: Option<Statement<'_, '_>>,
    read: bool,
) -> Result<Open, AppError> {
    lifecycle::admit(auth, &state.config.auth)?;
    let ctx = RlsContext { user_id: auth.id, org_id: org };
    let (mut tx, mut opened, mut first_rows) = match (read, first) {
        (true, Some(first)) => state.db.read(ctx, first).await?,
        (_, first) => state.db.begin(ctx, first).await?,
    };
    let decide =
        |row: Option<&tokio_postgres::Row>| lifecycle::decide(row.map(lifecycle::from_row), auth, &state.config.auth);
    let mut decision = decide(opened.user_row());
    if tx.is_committed() && decision.writes() {
        // The write needs a transaction of its own: the request is opened again (the row read again in it),
        // and `first` is left to run after the write.
        tx.release();
        (tx, opened, first_rows) = state.db.begin(ctx, None).await?;
        decision = decide(opened.user_row());
    }
    let first = first_rows;
    let user = match lifecycle::settle(&tx, decision, auth).await {
        Ok(user) => user,
        Err(e) => {
            if e.code == ErrorCode::EmailNotConfirmed {
                // The verdict came from a cached verification: the next request asks the auth service again, so
                // a user who confirms the address gets in on the next try rather than after the cache TTL.
                state.auth.cache().evict(&auth.token_hash).await;
            }
            return Err(e);
        }
    };
    if !user.is_active {
        return Err(AppError::new(ErrorCode::AccountDeactivated, "this account is deactivated"));
    }
    Ok(Open { tx, user, access: opened.access(), first })
}

impl FromRequestParts<AppState> for UserTx {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let auth = auth_user(parts)?;
        let Open { mut tx, user, .. } = open(state, auth, None, None).await?;
        if let Some(timing) = parts.extensions.get::<crate::timing::Timing>() {
            tx.time_with(timing);
        }
        Ok(UserTx { tx, user, auth: auth.clone() })
    }
}
