//! Authentication of a request: bearer shape, verification, [`AuthUser`] into the extensions (a step of the
//! route steps, `http::middleware`, for routes whose declaration has a security requirement).

use axum::extract::Request;
use axum::response::{IntoResponse, Response};

use super::{AuthUser, Authenticator, bearer};

/// The request with its verified caller, or the error response.
pub(crate) async fn authenticate(auth: &Authenticator, mut request: Request) -> Result<Request, Response> {
    let verified = match bearer::token_bytes(request.headers()) {
        Ok(token) => auth.verify_bytes(token).await,
        Err(e) => return Err(e.into_response()),
    };
    match verified {
        Ok(user) => {
            crate::audit::note(request.extensions(), |n| n.user_id = Some(user.id));
            request.extensions_mut().insert::<AuthUser>(user);
            Ok(request)
        }
        Err(e) => Err(e.into_response()),
    }
}
