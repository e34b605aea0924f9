//! The `users` row of a verified caller: who may have one, when it is made, and whose e-mail it carries.
//!
//! The rule (docs/DEPLOY.md, "User lifecycle"):
//! - an anonymous sign-in is refused (403 `ANONYMOUS_NOT_ALLOWED`) unless `AUTH_ALLOW_ANONYMOUS=true`, on every
//!   request, whether it has a row or not;
//! - with `AUTH_AUTO_PROVISION=true` (the default) a caller without a row gets one on its first request when
//!   the auth service vouches for its e-mail (confirmed, [`vouched_email`]), or when it is an allowed
//!   anonymous user (no e-mail); any other caller is 403 `EMAIL_NOT_CONFIRMED`. With `false` a missing row
//!   is 401 `USER_NOT_PROVISIONED` (the operator makes rows);
//! - the row's e-mail follows the auth service: a vouched e-mail that differs from the row's is claimed, and
//!   the SQL function `claim_current_user` (migration 0005) moves an address from another row only to a
//!   claim newer than that row's (the token's `iat` against the holder's `email_claimed_at`). That is how a
//!   user deleted in Supabase stops locking out the next sign-up with the same address: the old row lets the
//!   address go (kept by id, with its memberships and audit history); the new user gets a row of its own.
//!
//! The check costs nothing on the common path: the row is read in the first round trip of every request
//! (`super::open`), and only a missing row or a different e-mail costs the one extra statement.

use tokio_postgres::Row;
use tokio_postgres::types::Type;

use super::CurrentUser;
use crate::auth::AuthUser;
use crate::config::AuthConfig;
use crate::db::Tx;
use crate::error::{AppError, ErrorCode};

/// The caller's `users` row and the issue time (unix seconds) of the token that last claimed its e-mail.
pub(super) type UserRow = (CurrentUser, Option<i64>);

/// Creates the row when missing and claims `$1` (an e-mail, or NULL) with the token's `iat` (`$2`).
const CLAIM: &str = "SELECT r_id, r_email, r_role, r_is_active, r_organization_id,
        extract(epoch FROM r_email_claimed_at)::int8
   FROM claim_current_user($1, to_timestamp($2::int8))";

pub(super) fn from_row(row: &Row) -> UserRow {
    (
        CurrentUser {
            id: row.get(0),
            email: row.get(1),
            role: super::PlatformRole::parse(row.get(2)),
            is_active: row.get(3),
            organization_id: row.get(4),
        },
        row.get(5),
    )
}

/// The e-mail the auth service vouches for: confirmed, of a user who is not anonymous (remote mode: the
/// auth service's user object; local mode: the token's claims, see `CachedUser::from_claims`).
pub(super) fn vouched_email(auth: &AuthUser) -> Option<&str> {
    (auth.email_confirmed && !auth.is_anonymous && !auth.email.is_empty()).then_some(&*auth.email)
}

/// Refuse what no row can make acceptable, before the database is touched.
pub(super) fn admit(auth: &AuthUser, config: &AuthConfig) -> Result<(), AppError> {
    if auth.is_anonymous && !config.allow_anonymous {
        return Err(AppError::new(
            ErrorCode::AnonymousNotAllowed,
            "anonymous sign-ins cannot use this API: sign up with an e-mail address",
        ));
    }
    Ok(())
}

/// What the rule asks of the caller's row, decided once per request ([`decide`]) and carried out by
/// [`settle`]: a read-only request that already committed looks at [`Decision::writes`] to open a transaction
/// the write can go in.
pub(super) enum Decision {
    /// The row as it is.
    Keep(CurrentUser),
    /// No row, and none may be made for this caller.
    Refuse(AppError),
    /// No row yet: make it (claiming the vouched e-mail, if any).
    Provision,
    /// The row's e-mail is behind the auth service's: claim the vouched one.
    ClaimEmail,
}

impl Decision {
    /// Whether carrying it out writes (a claim), so it needs an open transaction.
    pub(super) fn writes(&self) -> bool {
        matches!(self, Decision::Provision | Decision::ClaimEmail)
    }
}

/// The rule applied to the row `open_request` found (or its absence).
pub(super) fn decide(found: Option<UserRow>, auth: &AuthUser, config: &AuthConfig) -> Decision {
    let email = vouched_email(auth);
    match found {
        Some((user, _)) if !config.auto_provision || !user.is_active => Decision::Keep(user),
        Some((user, claimed_at)) if email_claim_due(&user, claimed_at, email, auth) => Decision::ClaimEmail,
        Some((user, _)) => Decision::Keep(user),
        None if !config.auto_provision => Decision::Refuse(AppError::new(
            ErrorCode::UserNotProvisioned,
            "this account has no user record in this service",
        )),
        None if email.is_none() && !auth.is_anonymous => Decision::Refuse(AppError::new(
            ErrorCode::EmailNotConfirmed,
            "confirm your e-mail address with the authentication service before using this API",
        )),
        None => Decision::Provision,
    }
}

/// A vouched e-mail that differs from the row's, from a token newer than the row's last claim.
fn email_claim_due(user: &CurrentUser, claimed_at: Option<i64>, email: Option<&str>, auth: &AuthUser) -> bool {
    let differs = email.is_some_and(|e| !user.email.as_deref().is_some_and(|have| have.eq_ignore_ascii_case(e)));
    differs && claimed_at.is_none_or(|at| at < auth.issued_at)
}

/// Carry out `decision` in `tx`: the caller's row, made or brought in step when the rule asks for it.
pub(super) async fn settle(tx: &Tx, decision: Decision, auth: &AuthUser) -> Result<CurrentUser, AppError> {
    let email = vouched_email(auth);
    match decision {
        Decision::Keep(user) => Ok(user),
        Decision::Refuse(e) => Err(e),
        Decision::ClaimEmail => {
            let (updated, _) = claim(tx, email, auth).await?;
            let outcome = if updated.email.as_deref() == email { "claimed" } else { "held_by_newer_claim" };
            metrics::counter!("users_email_claims_total", "outcome" => outcome).increment(1);
            tracing::info!(user_id = %auth.id, outcome, "user e-mail brought in step with the auth service");
            Ok(updated)
        }
        Decision::Provision => {
            let (user, _) = claim(tx, email, auth).await?;
            let kind = if auth.is_anonymous { "anonymous" } else { "email" };
            metrics::counter!("users_provisioned_total", "kind" => kind).increment(1);
            tracing::info!(user_id = %auth.id, kind, email_claimed = user.email.is_some(), "user provisioned");
            Ok(user)
        }
    }
}

async fn claim(tx: &Tx, email: Option<&str>, auth: &AuthUser) -> Result<UserRow, AppError> {
    let row = tx.query_one(CLAIM, &[(&email, Type::TEXT), (&auth.issued_at, Type::INT8)]).await?;
    Ok(from_row(&row))
}
