//! Authentication of the `/api` routes: bearer shape, verification, [`AuthUser`] into the extensions.
//!
//! [`authenticate`] is a step of the `/api` route layer (`http::middleware::api_gate`); [`require_auth`] is
//! the same as a layer of its own, for the few routes outside `/api` that need a caller.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{AuthUser, bearer};
use crate::state::AppState;

/// The request with its verified caller, or the error response.
pub async fn authenticate(state: &AppState, mut request: Request) -> Result<Request, Response> {
    let verified = match bearer::from_headers(request.headers()) {
        Ok(token) => state.auth.verify(token).await,
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

pub async fn require_auth(State(state): State<AppState>, request: Request, next: Next) -> Response {
    match authenticate(&state, request).await {
        Ok(request) => next.run(request).await,
        Err(refused) => refused,
    }
}
