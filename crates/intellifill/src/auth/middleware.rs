//! Authentication of the `/api` routes: bearer shape, verification, [`AuthUser`] into the extensions.
//!
//! [`authenticate`] is a step of the `/api` route layer (`http::middleware::ApiGate`); [`RequireAuth`] is
//! the same as a layer of its own, for the few routes outside `/api` that need a caller.

use axum::extract::Request;
use axum::response::{IntoResponse, Response};

use super::{AuthUser, bearer};
use crate::http::step::Step;
use crate::state::AppState;

/// The request with its verified caller, or the error response.
pub async fn authenticate(state: &AppState, mut request: Request) -> Result<Request, Response> {
    let verified = match bearer::token_bytes(request.headers()) {
        Ok(token) => state.auth.verify_bytes(token).await,
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

/// Authentication alone, as a route layer (`http::step::StepLayer::new(RequireAuth, state)`).
#[derive(Debug, Clone, Copy)]
pub struct RequireAuth;

impl Step for RequireAuth {
    async fn run<F>(self, state: &AppState, request: Request, rest: impl FnOnce(Request) -> F + Send) -> Response
    where
        F: Future<Output = Response> + Send,
    {
        match authenticate(state, request).await {
            Ok(request) => rest(request).await,
            Err(refused) => refused,
        }
    }
}
