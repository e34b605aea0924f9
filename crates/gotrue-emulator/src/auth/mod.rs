//! GoTrue's behaviour, independent of HTTP: grants, sign-up, bearer
//! authentication, admin checks and user administration.
//!
//! The HTTP handlers and the in-process [`crate::Emulator`] methods both call
//! into here, so a user created in-process and one created over the admin API
//! are indistinguishable, and checks happen in the order GoTrue performs
//! them (which decides the error a client sees when several things are
//! wrong at once).
//!
//! One file per flow, each adding methods to [`AppState`](crate::state::AppState):
//! - `grants`: `POST /token` (password and refresh-token grants);
//! - `signup`: `POST /signup`;
//! - `sessions`: starting a session for a user who proved who they are, and
//!   `POST /logout`;
//! - `authentication`: who a request comes from (bearer tokens, API keys,
//!   admin credentials);
//! - `admin_users`: `/admin/users` (create, update, delete, ban);
//! - `user_update`: `PUT /user` (own password and metadata; a new password
//!   ends the user's other sessions);
//!
//! and the building blocks those flows share:
//! - `access_token`: the claims and signature of an access token;
//! - `new_user`: the record of a new user, with its identities;
//! - `validation`: GoTrue's rules for emails, phones and passwords.

mod access_token;
mod admin_users;
mod authentication;
mod grants;
mod new_user;
mod sessions;
mod signup;
mod user_update;
mod validation;

pub(crate) use access_token::Issued;
pub(crate) use admin_users::AdminUserParams;
pub(crate) use sessions::logout_scope;
pub(crate) use signup::SignedUp;
pub(crate) use user_update::UserUpdateParams;

/// The audience and role of every user.
pub(crate) const AUTHENTICATED: &str = "authenticated";
