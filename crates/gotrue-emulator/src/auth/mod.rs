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
//! - `user_update`: `PUT /user` (own password, metadata and email; a new
//!   password ends the user's other sessions);
//! - `otp`: `POST /otp` (magic link / email code), `/recover`, `/resend`;
//! - `verify`: `GET|POST /verify` (links and codes from emails);
//! - `invite`: `POST /invite` and `POST /admin/generate_link`;
//!
//! and the building blocks those flows share:
//! - `access_token`: the claims and signature of an access token;
//! - `new_user`: the record of a new user, with its identities;
//! - `validation`: GoTrue's rules for emails, phones and passwords;
//! - `mail`: one-time tokens and the emails carrying them (into the mailbox).

mod access_token;
mod admin_users;
mod authentication;
mod grants;
mod invite;
mod mail;
mod new_user;
mod otp;
mod sessions;
mod signup;
mod user_update;
mod validation;
mod verify;

pub(crate) use access_token::Issued;
pub(crate) use admin_users::AdminUserParams;
pub(crate) use invite::GenerateLinkParams;
pub(crate) use otp::{OtpParams, ResendParams};
pub(crate) use sessions::logout_scope;
pub(crate) use signup::SignedUp;
pub(crate) use user_update::UserUpdateParams;
pub(crate) use verify::{OTHER_EMAIL_PENDING, Verified, VerifyParams, Via};

/// The audience and role of every user.
pub(crate) const AUTHENTICATED: &str = "authenticated";
