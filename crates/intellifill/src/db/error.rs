//! Mapping of Postgres errors to client errors: constraint violations are the client's fault (4xx),
//! lost connections and timeouts are an outage (503 with `Retry-After`), anything else is a 500.

use tokio_postgres::error::SqlState;

use crate::error::{AppError, ErrorCode};

pub(crate) fn map_db_error(e: tokio_postgres::Error) -> AppError {
    let Some(db) = e.as_db_error() else {
        // No server answer: the connection is gone or could not be opened.
        return AppError::new(ErrorCode::DatabaseUnavailable, "the database is unavailable")
            .with_retry_after(1)
            .with_source(e);
    };
    let code = db.code();
    // Raised by the migrations' own functions and triggers (0004): the rule that refused, no more.
    match code.code() {
        "IFI01" => return AppError::not_found("invitation"),
        "IFI02" => return AppError::new(ErrorCode::InvitationExpired, "this invitation has expired"),
        "IFI03" => return AppError::new(ErrorCode::Conflict, "you are already a member of this organization"),
        "IFL01" => {
            return AppError::new(ErrorCode::LastOwner, "an organization must keep at least one active OWNER");
        }
        _ => {}
    }
    if *code == SqlState::UNIQUE_VIOLATION {
        let field = db.constraint().map(constraint_field).unwrap_or("id");
        return AppError::new(ErrorCode::Conflict, format!("{field} is already taken")).with_field(field);
    }
    if *code == SqlState::CHECK_VIOLATION || *code == SqlState::NOT_NULL_VIOLATION {
        let field = db.column().or(db.constraint()).map(constraint_field).unwrap_or("body").to_owned();
        return AppError::validation(field, "value is not allowed");
    }
    if *code == SqlState::FOREIGN_KEY_VIOLATION {
        return AppError::new(ErrorCode::NotFound, "a referenced record does not exist");
    }
    if *code == SqlState::INSUFFICIENT_PRIVILEGE {
        // Row-level security said no (or a grant is missing): never more detail than that.
        return AppError::new(ErrorCode::Forbidden, "not allowed").with_source(e);
    }
    if *code == SqlState::QUERY_CANCELED
        || *code == SqlState::ADMIN_SHUTDOWN
        || *code == SqlState::CANNOT_CONNECT_NOW
        || *code == SqlState::TOO_MANY_CONNECTIONS
        || code.code().starts_with("08")
    {
        return AppError::new(ErrorCode::DatabaseUnavailable, "the database is unavailable or too slow")
            .with_retry_after(1)
            .with_source(e);
    }
    AppError::internal(e)
}

/// `organizations_slug_key` -> `slug`; unknown names pass through.
fn constraint_field(constraint: &str) -> &str {
    match constraint {
        "organizations_slug_key" => "slug",
        "users_email_key" => "email",
        "organization_memberships_user_id_organization_id_key" => "userId",
        "organization_invitations_pending_key" => "email",
        other => other,
    }
}
