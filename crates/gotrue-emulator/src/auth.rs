//! GoTrue's behaviour, independent of HTTP: grants, sign-up, bearer
//! authentication, admin checks and user administration.
//!
//! The HTTP handlers and the in-process [`crate::Emulator`] methods both call
//! into here, so a user created in-process and one created over the admin API
//! are indistinguishable, and checks happen in the order GoTrue performs
//! them (which decides the error a client sees when several things are
//! wrong at once).

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::errors::ApiError;
use crate::go_duration;
use crate::state::AppState;
use crate::store::{AmrEntry, IdentityRecord, LogoutScope, PasswordHash, SessionRecord, UserRecord, merge_metadata};
use crate::views::now;

/// The audience and role of every user.
pub(crate) const AUTHENTICATED: &str = "authenticated";
/// GoTrue's default `GOTRUE_PASSWORD_MIN_LENGTH`.
const MIN_PASSWORD_LENGTH: usize = 6;
/// GoTrue's `MaxPasswordLength`.
const MAX_PASSWORD_LENGTH: usize = 72;
/// Roles GoTrue accepts on admin endpoints (`GOTRUE_JWT_ADMIN_ROLES`).
const ADMIN_ROLES: &[&str] = &["service_role", "supabase_admin"];

/// The claims of a GoTrue access token, in GoTrue's order.
#[derive(Serialize)]
struct AccessTokenClaims<'a> {
    iss: &'a str,
    sub: String,
    aud: &'a str,
    exp: i64,
    iat: i64,
    email: &'a str,
    phone: &'a str,
    app_metadata: &'a Map<String, Value>,
    user_metadata: &'a Map<String, Value>,
    role: &'a str,
    aal: &'static str,
    amr: &'a [AmrEntry],
    session_id: String,
    is_anonymous: bool,
}

/// The outcome of a grant: what `AccessTokenResponse` carries.
pub(crate) struct Issued {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: i64,
    pub expires_at: i64,
    pub session_id: Uuid,
    pub user: UserRecord,
}

/// A request that passed `requireAuthentication`.
pub(crate) struct Authenticated {
    pub user: UserRecord,
    pub session_id: Option<Uuid>,
    pub claims: Map<String, Value>,
}

/// Body of `POST /admin/users` and `PUT /admin/users/{id}`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct AdminUserParams {
    pub id: String,
    pub aud: String,
    pub role: String,
    pub email: String,
    pub phone: String,
    pub password: Option<String>,
    pub password_hash: String,
    pub email_confirm: bool,
    pub phone_confirm: bool,
    pub user_metadata: Option<Map<String, Value>>,
    pub app_metadata: Option<Map<String, Value>>,
    pub ban_duration: String,
}

/// `Bearer <token>` as GoTrue's `bearerRegexp` (`^(?:B|b)earer (\S+$)`) reads it.
pub(crate) fn bearer_token(authorization: Option<&str>) -> Option<&str> {
    let value = authorization?;
    let token = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer "))?;
    (!token.is_empty() && !token.chars().any(char::is_whitespace)).then_some(token)
}

/// `validateEmail`: required, at most 255 characters, plausible format;
/// lower-cased.
fn validate_email(email: &str) -> Result<String, ApiError> {
    if email.is_empty() {
        return Err(ApiError::validation("An email address is required"));
    }
    if email.len() > 255 {
        return Err(ApiError::validation("An email address is too long"));
    }
    let plausible = email.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty()
            && !domain.is_empty()
            && !domain.contains('@')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !email.chars().any(char::is_whitespace)
    });
    if !plausible {
        return Err(ApiError::validation("Unable to validate email address: invalid format"));
    }
    Ok(email.to_lowercase())
}

/// `validatePhone`: E.164 digits without the plus.
fn validate_phone(phone: &str) -> Result<String, ApiError> {
    let phone: String = phone.trim_start_matches('+').chars().filter(|c| *c != ' ').collect();
    let valid =
        phone.len() >= 2 && phone.len() <= 15 && phone.chars().all(|c| c.is_ascii_digit()) && !phone.starts_with('0');
    if valid { Ok(phone) } else { Err(ApiError::validation("Invalid phone number format (E.164 required)")) }
}

/// `checkPasswordStrength` with GoTrue's defaults (minimum length only).
fn check_password_strength(password: &str) -> Result<(), ApiError> {
    if password.len() > MAX_PASSWORD_LENGTH {
        return Err(ApiError::validation(format!("Password cannot be longer than {MAX_PASSWORD_LENGTH} characters")));
    }
    if password.len() < MIN_PASSWORD_LENGTH {
        return Err(ApiError::weak_password(MIN_PASSWORD_LENGTH));
    }
    Ok(())
}

/// `ban_duration`: `"none"` lifts a ban, anything else is a Go duration
/// from now. `None` when the field was not given.
fn parse_ban_duration(value: &str, now: DateTime<Utc>) -> Result<Option<Option<DateTime<Utc>>>, ApiError> {
    if value.is_empty() {
        return Ok(None);
    }
    if value == "none" {
        return Ok(Some(None));
    }
    let nanos =
        go_duration::parse(value).map_err(|e| ApiError::validation(format!("invalid format for ban duration: {e}")))?;
    if nanos == 0 {
        return Ok(Some(None));
    }
    let nanos =
        i64::try_from(nanos).map_err(|_| ApiError::validation("invalid format for ban duration: out of range"))?;
    Ok(Some(now.checked_add_signed(TimeDelta::nanoseconds(nanos))))
}

fn email_identity(
    user_id: Uuid,
    email: &str,
    extra: Option<&Map<String, Value>>,
    now: DateTime<Utc>,
) -> IdentityRecord {
    let mut data = Map::new();
    data.insert("email".into(), json!(email));
    data.insert("email_verified".into(), json!(false));
    data.insert("phone_verified".into(), json!(false));
    data.insert("sub".into(), json!(user_id.to_string()));
    if let Some(extra) = extra {
        for (k, v) in extra {
            data.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    IdentityRecord {
        id: Uuid::new_v4(),
        provider_id: user_id.to_string(),
        identity_data: data,
        provider: "email".into(),
        last_sign_in_at: Some(now),
        created_at: now,
        updated_at: now,
        email: email.to_owned(),
    }
}

fn phone_identity(user_id: Uuid, phone: &str, now: DateTime<Utc>) -> IdentityRecord {
    let mut data = Map::new();
    data.insert("email_verified".into(), json!(false));
    data.insert("phone".into(), json!(phone));
    data.insert("phone_verified".into(), json!(false));
    data.insert("sub".into(), json!(user_id.to_string()));
    IdentityRecord {
        id: Uuid::new_v4(),
        provider_id: user_id.to_string(),
        identity_data: data,
        provider: "phone".into(),
        last_sign_in_at: Some(now),
        created_at: now,
        updated_at: now,
        email: String::new(),
    }
}

fn providers_metadata(providers: &[&str]) -> Map<String, Value> {
    let mut app = Map::new();
    app.insert("provider".into(), json!(providers.first().copied().unwrap_or("email")));
    app.insert("providers".into(), json!(providers));
    app
}

impl AppState {
    /// Signs the access token of `session` for `user` (`GenerateAccessToken`).
    fn issue(&self, user: UserRecord, session: &SessionRecord, refresh_token: String) -> Result<Issued, ApiError> {
        let iat = Utc::now().timestamp();
        let ttl = i64::try_from(self.access_token_ttl.as_secs()).unwrap_or(i64::MAX / 2);
        let exp = iat.saturating_add(ttl);
        let claims = AccessTokenClaims {
            iss: &self.issuer,
            sub: user.id.to_string(),
            aud: &user.aud,
            exp,
            iat,
            email: &user.email,
            phone: &user.phone,
            app_metadata: &user.app_metadata,
            user_metadata: &user.user_metadata,
            role: &user.role,
            aal: "aal1",
            amr: &session.amr,
            session_id: session.id.to_string(),
            is_anonymous: false,
        };
        let access_token = self
            .keys
            .sign(&self.keys.header(), &claims)
            .map_err(|e| ApiError::internal(format!("error generating jwt token: {e}")))?;
        Ok(Issued {
            access_token,
            refresh_token,
            expires_in: exp - Utc::now().timestamp(),
            expires_at: exp,
            session_id: session.id,
            user,
        })
    }

    /// `grant_type=password` (`ResourceOwnerPasswordGrant`).
    pub(crate) fn password_grant(&self, email: &str, phone: &str, password: &str) -> Result<Issued, ApiError> {
        if !email.is_empty() && !phone.is_empty() {
            return Err(ApiError::validation("Only an email address or phone number should be provided on login."));
        }
        if email.is_empty() {
            return Err(if phone.is_empty() {
                ApiError::validation("missing email or phone")
            } else {
                ApiError::unprocessable("phone_provider_disabled", "Phone logins are disabled")
            });
        }
        let now = now();
        let (user, session, refresh_token) = {
            let mut store = self.store();
            let user = store.user_by_email(email).ok_or_else(ApiError::invalid_credentials)?;
            let Some(hash) = &user.password else {
                return Err(ApiError::invalid_credentials());
            };
            if user.is_banned(now) {
                return Err(ApiError::bad_request("user_banned", "User is banned"));
            }
            if !hash.matches(password) {
                return Err(ApiError::invalid_credentials());
            }
            if user.email_confirmed_at.is_none() {
                return Err(ApiError::bad_request("email_not_confirmed", "Email not confirmed"));
            }
            let user_id = user.id;
            let (session, token) =
                store.start_session(user_id, "password", now).ok_or_else(ApiError::invalid_credentials)?;
            let user = store.user(user_id).cloned().ok_or_else(ApiError::invalid_credentials)?;
            (user, session, token)
        };
        self.issue(user, &session, refresh_token)
    }

    /// `grant_type=refresh_token` (`RefreshTokenGrant`).
    pub(crate) fn refresh_grant(&self, refresh_token: &str) -> Result<Issued, ApiError> {
        let legacy_format =
            refresh_token.len() == 12 && refresh_token.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if !legacy_format {
            // Shorter tokens, and longer ones that are not valid v2 tokens
            // (the emulator issues none), fail validation.
            return Err(ApiError::validation("Refresh token is not valid"));
        }
        let (user, session, token) = self.store().refresh(refresh_token, now())?;
        self.issue(user, &session, token)
    }

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
        if !email.is_empty() && !phone.is_empty() {
            return Err(ApiError::validation("Only an email address or phone number should be provided on signup."));
        }
        if email.is_empty() {
            return Err(if phone.is_empty() {
                ApiError::validation("Sign up only available with email provider")
            } else {
                ApiError::bad_request("phone_provider_disabled", "Phone signups are disabled")
            });
        }
        let email = validate_email(email)?;
        let now = now();
        let (user, session, refresh_token) = {
            let mut store = self.store();
            if store.user_by_email(&email).is_some() {
                return Err(ApiError::unprocessable("user_already_exists", "User already registered"));
            }
            let id = Uuid::new_v4();
            let data = data.unwrap_or_default();
            let mut user = UserRecord {
                id,
                aud: AUTHENTICATED.into(),
                role: AUTHENTICATED.into(),
                email: email.clone(),
                phone: String::new(),
                password: Some(PasswordHash::new(password)),
                email_confirmed_at: None,
                phone_confirmed_at: None,
                last_sign_in_at: None,
                app_metadata: providers_metadata(&["email"]),
                user_metadata: data.clone(),
                identities: vec![email_identity(id, &email, Some(&data), now)],
                created_at: now,
                updated_at: now,
                banned_until: None,
            };
            user.confirm(now);
            store.insert_user(user);
            let (session, token) = store
                .start_session(id, "password", now)
                .ok_or_else(|| ApiError::internal("Database error loading user after sign-up"))?;
            let user = store
                .user(id)
                .cloned()
                .ok_or_else(|| ApiError::internal("Database error loading user after sign-up"))?;
            (user, session, token)
        };
        self.issue(user, &session, refresh_token)
    }

    /// `requireAuthentication`: verifies the bearer token, then loads the
    /// user and the session, then rejects banned users.
    pub(crate) fn authenticate(&self, authorization: Option<&str>) -> Result<Authenticated, ApiError> {
        let token = bearer_token(authorization).ok_or_else(ApiError::no_authorization)?;
        let claims = self.parse_claims(token)?;
        self.load_user_and_session(claims)
    }

    /// `parseJWTClaims`. The gateway swaps an opaque `sb_…` API key used as a
    /// bearer for a role token without `sub`, which is what GoTrue then sees.
    fn parse_claims(&self, token: &str) -> Result<Map<String, Value>, ApiError> {
        if token == self.anon_key {
            return Ok(role_claims("anon"));
        }
        if token == self.service_role_key {
            return Ok(role_claims("service_role"));
        }
        self.keys.verify(token, Utc::now().timestamp()).map_err(ApiError::bad_jwt)
    }

    /// `maybeLoadUserOrSession` plus the ban check.
    fn load_user_and_session(&self, claims: Map<String, Value>) -> Result<Authenticated, ApiError> {
        let sub = claims.get("sub").and_then(Value::as_str).unwrap_or("");
        if sub.is_empty() {
            return Err(ApiError::forbidden("bad_jwt", "invalid claim: missing sub claim"));
        }
        let user_id = Uuid::parse_str(sub)
            .map_err(|_| ApiError::bad_request("bad_jwt", "invalid claim: sub claim must be a UUID"))?;
        let store = self.store();
        let user = store
            .user(user_id)
            .cloned()
            .ok_or_else(|| ApiError::forbidden("user_not_found", "User from sub claim in JWT does not exist"))?;
        let session_id = match claims.get("session_id").and_then(Value::as_str) {
            None | Some("") => None,
            Some(raw) => {
                let id = Uuid::parse_str(raw)
                    .map_err(|_| ApiError::forbidden("bad_jwt", "invalid claim: session_id claim must be a UUID"))?;
                if id.is_nil() {
                    None
                } else {
                    if store.session(id).is_none() {
                        return Err(ApiError::forbidden(
                            "session_not_found",
                            "Session from session_id claim in JWT does not exist",
                        ));
                    }
                    Some(id)
                }
            }
        };
        drop(store);
        if user.is_banned(now()) {
            return Err(ApiError::forbidden("user_banned", "User is banned"));
        }
        Ok(Authenticated { user, session_id, claims })
    }

    /// `POST /logout` after authentication.
    pub(crate) fn logout(&self, auth: &Authenticated, scope: LogoutScope) {
        self.store().logout(auth.user.id, auth.session_id, scope);
    }

    /// `requireAdminCredentials`. Without an `Authorization` header the
    /// gateway turns the `apikey` into the bearer.
    pub(crate) fn require_admin(&self, authorization: Option<&str>, apikey: Option<&str>) -> Result<(), ApiError> {
        let token = match authorization {
            Some(header) => bearer_token(Some(header)).ok_or_else(ApiError::no_authorization)?,
            None => apikey.ok_or_else(ApiError::no_authorization)?,
        };
        let claims = self.parse_claims(token)?;
        let has_session = claims
            .get("session_id")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty() && s != Uuid::nil().to_string());
        if has_session {
            self.load_user_and_session(claims.clone())?;
        }
        let role = claims.get("role").and_then(Value::as_str).unwrap_or("");
        if ADMIN_ROLES.contains(&role) { Ok(()) } else { Err(ApiError::not_admin()) }
    }

    /// `POST /admin/users` (`adminUserCreate`).
    pub(crate) fn admin_create_user(&self, params: AdminUserParams) -> Result<UserRecord, ApiError> {
        if params.email.is_empty() && params.phone.is_empty() {
            return Err(ApiError::validation("Cannot create a user without either an email or phone"));
        }
        let mut store = self.store();
        let mut providers = Vec::new();
        let email = if params.email.is_empty() {
            String::new()
        } else {
            let email = validate_email(&params.email)?;
            if store.email_taken(&email, None) {
                return Err(ApiError::unprocessable(
                    "email_exists",
                    "A user with this email address has already been registered",
                ));
            }
            providers.push("email");
            email
        };
        let phone = if params.phone.is_empty() {
            String::new()
        } else {
            let phone = validate_phone(&params.phone)?;
            if store.users_newest_first().iter().any(|u| u.phone == phone) {
                return Err(ApiError::unprocessable("phone_exists", "Phone number already registered by another user"));
            }
            providers.push("phone");
            phone
        };
        if params.password.is_some() && !params.password_hash.is_empty() {
            return Err(ApiError::validation("Only a password or a password hash should be provided"));
        }
        let password = match params.password.as_deref() {
            Some(p) if !p.is_empty() => {
                if p.len() > MAX_PASSWORD_LENGTH {
                    return Err(ApiError::validation("bcrypt: password length exceeds 72 bytes"));
                }
                Some(PasswordHash::new(p))
            }
            // A password hash cannot be checked here (no bcrypt), and a
            // generated password is unknown to everyone: no password login.
            _ => None,
        };
        let id = if params.id.is_empty() {
            Uuid::new_v4()
        } else {
            let id = Uuid::parse_str(&params.id)
                .map_err(|_| ApiError::validation("ID must conform to the uuid v4 format"))?;
            if id.is_nil() {
                return Err(ApiError::validation("ID cannot be a nil uuid"));
            }
            if store.user(id).is_some() {
                return Err(ApiError::internal("Database error creating new user"));
            }
            id
        };
        let now = now();
        let ban = parse_ban_duration(&params.ban_duration, now)?;
        let mut identities = Vec::new();
        if !email.is_empty() {
            identities.push(email_identity(id, &email, None, now));
        }
        if !phone.is_empty() {
            identities.push(phone_identity(id, &phone, now));
        }
        let mut user = UserRecord {
            id,
            aud: if params.aud.is_empty() { AUTHENTICATED.into() } else { params.aud.clone() },
            role: if params.role.is_empty() { AUTHENTICATED.into() } else { params.role.trim().to_owned() },
            email,
            phone,
            password,
            email_confirmed_at: None,
            phone_confirmed_at: None,
            last_sign_in_at: None,
            app_metadata: providers_metadata(&providers),
            user_metadata: params.user_metadata.clone().unwrap_or_default(),
            identities,
            created_at: now,
            updated_at: now,
            banned_until: None,
        };
        if let Some(app) = &params.app_metadata {
            merge_metadata(&mut user.app_metadata, app);
        }
        if params.email_confirm {
            user.confirm(now);
        }
        if params.phone_confirm {
            user.phone_confirmed_at = Some(now);
        }
        if let Some(until) = ban {
            user.ban(until);
        }
        store.insert_user(user.clone());
        Ok(user)
    }

    /// `PUT /admin/users/{id}` (`adminUserUpdate`). Banning does not end the
    /// user's sessions: GoTrue only sets `banned_until`, and the ban is
    /// enforced on every authenticated request and refresh instead.
    pub(crate) fn admin_update_user(&self, id: Uuid, params: AdminUserParams) -> Result<UserRecord, ApiError> {
        let email = if params.email.is_empty() { None } else { Some(validate_email(&params.email)?) };
        let phone = if params.phone.is_empty() { None } else { Some(validate_phone(&params.phone)?) };
        let now = now();
        let ban = parse_ban_duration(&params.ban_duration, now)?;
        if let Some(password) = &params.password {
            check_password_strength(password)?;
        }
        let mut store = self.store();
        if store.user(id).is_none() {
            return Err(ApiError::not_found("user_not_found", "User not found"));
        }
        if let Some(email) = &email
            && store.email_taken(email, Some(id))
        {
            return Err(ApiError::unprocessable(
                "email_exists",
                "A user with this email address has already been registered",
            ));
        }
        let user = store.user_mut(id).ok_or_else(|| ApiError::not_found("user_not_found", "User not found"))?;
        if !params.role.is_empty() {
            user.role = params.role.trim().to_owned();
        }
        if params.email_confirm {
            user.confirm(now);
        }
        if params.phone_confirm {
            user.phone_confirmed_at = Some(now);
        }
        if let Some(password) = &params.password {
            user.password = Some(PasswordHash::new(password));
        }
        if let Some(email) = email {
            match user.identities.iter_mut().find(|i| i.provider == "email") {
                Some(identity) => {
                    identity.identity_data.insert("email".into(), json!(email));
                    identity.identity_data.insert("email_verified".into(), json!(params.email_confirm));
                    identity.email = email.clone();
                    identity.updated_at = now;
                }
                None => {
                    let mut identity = email_identity(id, &email, None, now);
                    identity.identity_data.insert("email_verified".into(), json!(params.email_confirm));
                    user.identities.push(identity);
                }
            }
            user.email = email;
        }
        if let Some(phone) = phone {
            if !user.identities.iter().any(|i| i.provider == "phone") {
                user.identities.push(phone_identity(id, &phone, now));
            }
            user.phone = phone;
        }
        if let Some(app) = &params.app_metadata {
            merge_metadata(&mut user.app_metadata, app);
        }
        if let Some(meta) = &params.user_metadata {
            merge_metadata(&mut user.user_metadata, meta);
        }
        if let Some(until) = ban {
            user.ban(until);
        }
        user.updated_at = now;
        Ok(user.clone())
    }

    /// `DELETE /admin/users/{id}` (hard delete; sessions go with the user).
    pub(crate) fn delete_user(&self, id: Uuid) -> Result<(), ApiError> {
        self.store().delete_user(id).map(|_| ()).ok_or_else(|| ApiError::not_found("user_not_found", "User not found"))
    }

    /// Sets or lifts (`None`) a user's ban.
    pub(crate) fn ban_user(&self, id: Uuid, until: Option<DateTime<Utc>>) -> Result<(), ApiError> {
        let mut store = self.store();
        let user = store.user_mut(id).ok_or_else(|| ApiError::not_found("user_not_found", "User not found"))?;
        user.ban(until);
        user.updated_at = now();
        Ok(())
    }
}

/// Claims of the role tokens the gateway substitutes for opaque API keys.
fn role_claims(role: &str) -> Map<String, Value> {
    let mut claims = Map::new();
    claims.insert("role".into(), json!(role));
    claims
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
    fn bearer_matches_gotrue_regexp() {
        assert_eq!(bearer_token(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer_token(Some("bearer abc")), Some("abc"));
        assert_eq!(bearer_token(Some("BEARER abc")), None);
        assert_eq!(bearer_token(Some("Bearer ")), None);
        assert_eq!(bearer_token(Some("Bearer a b")), None);
        assert_eq!(bearer_token(Some("Basic abc")), None);
        assert_eq!(bearer_token(None), None);
    }

    #[test]
    fn logout_scopes() {
        assert_eq!(logout_scope(None), Ok(LogoutScope::Global));
        assert_eq!(logout_scope(Some("local")), Ok(LogoutScope::Local));
        assert_eq!(logout_scope(Some("others")), Ok(LogoutScope::Others));
        let err = logout_scope(Some("everywhere")).err();
        assert_eq!(err.map(|e| e.message), Some("Unsupported logout scope \"everywhere\"".to_owned()));
    }

    #[test]
    fn email_validation() {
        assert_eq!(validate_email("A@B.io"), Ok("a@b.io".to_owned()));
        assert!(validate_email("").is_err());
        assert!(validate_email("nope").is_err());
        assert!(validate_email("a@").is_err());
    }
}
