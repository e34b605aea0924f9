//! The auth layer of the `/api` routes: bearer shape, verification, [`AuthUser`] into the extensions.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{AuthUser, bearer};
use crate::state::AppState;

pub async fn require_auth(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let token = match bearer::from_headers(request.headers()) {
        Ok(token) => token.to_owned(),
        Err(e) => return e.into_response(),
    };
    match state.auth.verify(&token).await {
        Ok(user) => {
            crate::audit::note(request.extensions(), |n| n.user_id = Some(user.id));
            request.extensions_mut().insert::<AuthUser>(user);
            next.run(request).await
        }
        Err(e) => e.into_response(),
    }
}
