//! Authentication of a request: bearer shape, verification, [`AuthUser`] into the extensions (a step of the
//! route steps, `http::middleware`, for routes whose declaration has a security requirement).

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;

use super::{AuthUser, Authenticator, bearer};
use crate::error::AppError;

/// The outcome of authenticating a request: at once (a token the in-process cache knows, a malformed
/// header) or after a wait, boxed (`crate::flow`).
#[allow(clippy::large_enum_variant, reason = "the request is handed on by value, once, as the step's own code did")]
pub(crate) enum Authentication<'a> {
    Now(Result<Request, Response>),
    Later(BoxFuture<'a, Result<Request, Response>>),
}

/// The request with its verified caller, or the error response.
pub(crate) fn authenticate(auth: &Authenticator, request: Request) -> Authentication<'_> {
    let known = match bearer::token_bytes(request.headers()) {
        Ok(token) => auth.verify_now(token),
        Err(e) => return Authentication::Now(Err(e.into_response())),
    };
    match known {
        Ok(verified) => Authentication::Now(admit(request, verified)),
        Err(unknown) => Authentication::Later(Box::pin(async move {
            let verified = match bearer::token_bytes(request.headers()) {
                Ok(token) => auth.verify_unknown(token, unknown).await,
                Err(e) => Err(e),
            };
            admit(request, verified)
        })),
    }
}

#[allow(clippy::result_large_err, reason = "the refusal is the response the step returns as it is")]
fn admit(mut request: Request, verified: Result<AuthUser, AppError>) -> Result<Request, Response> {
    match verified {
        Ok(user) => {
            crate::audit::note(request.extensions(), |n| n.user_id = Some(user.id));
            request.extensions_mut().insert::<AuthUser>(user);
            Ok(request)
        }
        Err(e) => Err(e.into_response()),
    }
}
