//! Sessions: starting one for a user who proved who they are, and ending
//! them with `POST /logout`. Refreshing a session is a grant (`grants`).

use std::sync::MutexGuard;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::access_token::Issued;
use super::authentication::Authenticated;
use crate::errors::ApiError;
use crate::state::AppState;
use crate::store::{LogoutScope, Store};

impl AppState {
    /// `GrantAuthenticatedUser`: records the sign-in, starts a session with
    /// its first refresh token, and signs the session's access token.
    /// `method` is the session's `amr` method (`password`, ...).
    ///
    /// Takes the caller's lock on the store, so the checks that let the user
    /// in and the session start see the same state, and releases it before
    /// signing. `missing` is the error should the user be gone.
    pub(super) fn grant_session(
        &self,
        mut store: MutexGuard<'_, Store>,
        user_id: Uuid,
        method: &str,
        now: DateTime<Utc>,
        missing: fn() -> ApiError,
    ) -> Result<Issued, ApiError> {
        let (session, refresh_token) = store.start_session(user_id, method, now).ok_or_else(missing)?;
        let user = store.user(user_id).cloned().ok_or_else(missing)?;
        drop(store);
        self.issue(user, &session, refresh_token)
    }

    /// `POST /logout` after authentication.
    pub(crate) fn logout(&self, auth: &Authenticated, scope: LogoutScope) {
        self.store().logout(auth.user.id, auth.session_id, scope);
    }
}

/// Parses `?scope=` of `POST /logout`.
pub(crate) fn logout_scope(scope: Option<&str>) -> Result<LogoutScope, ApiError> {
    match scope.unwrap_or("") {
        "" | "global" => Ok(LogoutScope::Global),
        "local" => Ok(LogoutScope::Local),
        "others" => Ok(LogoutScope::Others),
        other => Err(ApiError::validation(format!("Unsupported logout scope {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logout_scopes() {
        assert_eq!(logout_scope(None), Ok(LogoutScope::Global));
        assert_eq!(logout_scope(Some("local")), Ok(LogoutScope::Local));
        assert_eq!(logout_scope(Some("others")), Ok(LogoutScope::Others));
        let err = logout_scope(Some("everywhere")).err();
        assert_eq!(err.map(|e| e.message), Some("Unsupported logout scope \"everywhere\"".to_owned()));
    }
}
