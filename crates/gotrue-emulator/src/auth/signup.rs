//! `POST /signup`, as a project with email autoconfirm on runs it: the new
//! user is confirmed and signed in at once.

use serde_json::{Map, Value};
use uuid::Uuid;

use super::access_token::Issued;
use super::new_user::NewUser;
use super::validation::{EmailOnly, check_password_strength, email_only, validate_email};
use crate::errors::ApiError;
use crate::state::AppState;
use crate::store::PasswordHash;

impl AppState {
    /// `POST /signup` with email autoconfirm on.
    pub(crate) fn signup(
        &self,
        email: &str,
        phone: &str,
        password: &str,
        data: Option<Map<String, Value>>,
    ) -> Result<Issued, ApiError> {
        if password.is_empty() {
            return Err(ApiError::validation("Signup requires a valid password"));
        }
        check_password_strength(password)?;
        let email = validate_email(email_only(email, phone, EmailOnly::Signup)?)?;
        let now = self.now();
        let mut store = self.store();
        if store.user_by_email(&email).is_some() {
            return Err(ApiError::unprocessable("user_already_exists", "User already registered"));
        }
        let id = Uuid::new_v4();
        let data = data.unwrap_or_default();
        let mut user = NewUser {
            id,
            email,
            phone: String::new(),
            password: Some(PasswordHash::new(password)),
            user_metadata: data.clone(),
            email_identity_extra: Some(&data),
        }
        .into_record(now);
        user.confirm(now);
        store.insert_user(user);
        self.grant_session(store, id, "password", now, || {
            ApiError::internal("Database error loading user after sign-up")
        })
    }
}
