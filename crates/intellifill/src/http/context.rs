//! The request's facts, resolved once and read by every later step: the client address (`X-Forwarded-For`
//! from trusted proxies only, [`super::client_ip`]), whether the method writes, and, once routing is done,
//! the route's declared facts and its path parameters.
//!
//! [`RequestContext`] is put into the request extensions by the first step of the stack
//! (`super::middleware`); the route step fills in the route ([`RequestContext::set_route`]). It is shared
//! (`Arc`), so a step that keeps a clone across the rest of the stack (request metrics) sees the route once
//! the response is back.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use axum::extract::RawPathParams;
use axum::http::request::Parts;
use axum::http::{Extensions, Method};
use uuid::Uuid;

use super::client_ip::client_ip;
use super::route::RouteFacts;
use crate::config::TrustedProxies;
use crate::error::{AppError, ErrorCode};

/// Whether a method changes something: the one definition (audit body capture, rate-limit classes).
pub(crate) fn is_write(method: &Method) -> bool {
    matches!(*method, Method::POST | Method::PUT | Method::PATCH | Method::DELETE)
}

/// The facts of one request.
#[derive(Debug, Clone)]
pub(crate) struct RequestContext(Arc<Facts>);

#[derive(Debug)]
struct Facts {
    client_ip: Option<IpAddr>,
    is_write: bool,
    route: OnceLock<Route>,
}

/// The matched route: its declaration and its path parameters.
#[derive(Debug)]
pub(crate) struct Route {
    pub facts: &'static RouteFacts,
    pub params: PathParams,
}

impl RequestContext {
    /// Resolved from the request's head.
    pub(crate) fn resolve(parts: &Parts, trusted: &TrustedProxies) -> RequestContext {
        RequestContext(Arc::new(Facts {
            client_ip: client_ip(parts, trusted),
            is_write: is_write(&parts.method),
            route: OnceLock::new(),
        }))
    }

    /// The context of a request (an empty one, with no address, if the stack did not resolve it: a handler
    /// mounted outside the stack, in a benchmark).
    pub(crate) fn of(extensions: &Extensions) -> RequestContext {
        extensions.get::<RequestContext>().cloned().unwrap_or_else(|| {
            RequestContext(Arc::new(Facts { client_ip: None, is_write: false, route: OnceLock::new() }))
        })
    }

    pub(crate) fn client_ip(&self) -> Option<IpAddr> {
        self.0.client_ip
    }

    pub(crate) fn is_write(&self) -> bool {
        self.0.is_write
    }

    /// The matched route, once routing is done (`None` for unmatched requests and before the route step).
    pub(crate) fn route(&self) -> Option<&Route> {
        self.0.route.get()
    }

    /// Set by the route step, once.
    pub(crate) fn set_route(&self, route: Route) {
        let _ = self.0.route.set(route);
    }
}

/// A route's path parameters, decoded once. Every path parameter of the API is a UUID named `orgId`, `userId`
/// or `id` (the route table refuses a declaration with any other), so they are kept in fixed places: no
/// allocation for a valid id.
#[derive(Debug, Default)]
pub(crate) struct PathParams {
    org_id: Option<ParamValue>,
    user_id: Option<ParamValue>,
    id: Option<ParamValue>,
}

/// A path parameter: the UUID it is, or the text that is not one.
type ParamValue = Result<Uuid, Box<str>>;

impl PathParams {
    /// The parameters axum matched.
    pub(crate) fn of(raw: &RawPathParams) -> PathParams {
        let mut params = PathParams::default();
        for (name, value) in raw.iter() {
            let parsed = Uuid::parse_str(value).map_err(|_| value.into());
            match name {
                "orgId" => params.org_id = Some(parsed),
                "userId" => params.user_id = Some(parsed),
                "id" => params.id = Some(parsed),
                _ => {}
            }
        }
        params
    }

    fn slot(&self, name: &str) -> Option<&ParamValue> {
        match name {
            "orgId" => self.org_id.as_ref(),
            "userId" => self.user_id.as_ref(),
            "id" => self.id.as_ref(),
            _ => None,
        }
    }

    /// The parameter `name` as a UUID: 400 `INVALID_ID` when it is not one.
    pub(crate) fn uuid(&self, name: &str) -> Result<Option<Uuid>, AppError> {
        match self.slot(name) {
            None => Ok(None),
            Some(Ok(id)) => Ok(Some(*id)),
            Some(Err(_)) => {
                Err(AppError::new(ErrorCode::InvalidId, format!("{name} is not a valid UUID"))
                    .with_field(name.to_owned()))
            }
        }
    }

    /// The most specific entity the path names (`id`, else `userId`, else `orgId`), for the audit row.
    pub(crate) fn entity(&self) -> Option<PathEntity> {
        [&self.id, &self.user_id, &self.org_id].into_iter().flatten().next().map(|v| match v {
            Ok(id) => PathEntity::Id(*id),
            Err(raw) => PathEntity::Raw(crate::audit::truncated(raw, 64).into()),
        })
    }
}

pub(crate) use crate::audit::PathEntity;
