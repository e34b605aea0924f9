//! Organization context: which tenant a request acts in, and with which role.
//!
//! [`OrgTx`] is the one extractor of every org-scoped route. The organization comes from the `{orgId}` path
//! parameter or, for routes without one, from the user's current organization. In the same round trip as the
//! user row it asks the database (`org_access`) for the caller's membership there, and maps the answer:
//! none -> `NOT_ORG_MEMBER` (unknown and foreign organizations look the same, and the attempt is a security
//! event), membership not ACTIVE -> `NOT_ORG_MEMBER`, organization not ACTIVE -> `ORG_SUSPENDED`, role
//! below the route's minimum -> `ADMIN_REQUIRED` / `OWNER_REQUIRED` / `FORBIDDEN`. The minimum role is
//! declared in the handler's signature: `OrgTx<Admin>`. Whatever the answer, the request's audit row names the
//! organization asked for, so the admins of a probed organization see the attempt in their own audit log.
//!
//! The database enforces the same rules again through RLS, so a bug here cannot leak another tenant's rows.

use std::marker::PhantomData;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio_postgres::types::Type;
use uuid::Uuid;

use crate::db::Tx;
use crate::error::{AppError, ErrorCode};
use crate::http::context::RequestContext;
use crate::principal::{CurrentUser, auth_user, open};
use crate::ratelimit::{KeyParts, Reported};
use crate::security::SecurityKind;
use crate::state::AppState;

/// Organization roles, ordered: OWNER > ADMIN > MEMBER > VIEWER.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrgRole {
    Viewer = 1,
    Member = 2,
    Admin = 3,
    Owner = 4,
}

impl OrgRole {
    pub fn parse(s: &str) -> Option<OrgRole> {
        match s {
            "OWNER" => Some(OrgRole::Owner),
            "ADMIN" => Some(OrgRole::Admin),
            "MEMBER" => Some(OrgRole::Member),
            "VIEWER" => Some(OrgRole::Viewer),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OrgRole::Owner => "OWNER",
            OrgRole::Admin => "ADMIN",
            OrgRole::Member => "MEMBER",
            OrgRole::Viewer => "VIEWER",
        }
    }

    /// The error for a caller whose role is below `self`.
    pub fn required_error(self) -> AppError {
        match self {
            OrgRole::Owner => AppError::new(ErrorCode::OwnerRequired, "this action requires the OWNER role"),
            OrgRole::Admin => AppError::new(ErrorCode::AdminRequired, "this action requires the ADMIN role"),
            OrgRole::Member | OrgRole::Viewer => {
                AppError::new(ErrorCode::Forbidden, format!("this action requires the {} role", self.as_str()))
            }
        }
    }
}

/// A route's minimum organization role, as a type.
pub trait MinRole: Send + Sync + 'static {
    const ROLE: OrgRole;
}
pub struct Viewer;
pub(crate) struct Member;
pub(crate) struct Admin;
impl MinRole for Viewer {
    const ROLE: OrgRole = OrgRole::Viewer;
}
impl MinRole for Member {
    const ROLE: OrgRole = OrgRole::Member;
}
impl MinRole for Admin {
    const ROLE: OrgRole = OrgRole::Admin;
}

/// The organization a request acts in.
#[derive(Debug, Clone, Copy)]
pub struct OrgContext {
    pub id: Uuid,
    pub role: OrgRole,
}

/// A request transaction with user and organization context, for a caller holding at least `R`.
pub struct OrgTx<R: MinRole = Viewer> {
    pub tx: Tx,
    pub user: CurrentUser,
    pub org: OrgContext,
    _role: PhantomData<R>,
}

const ORG_ACCESS: &str = "SELECT org_status, member_role, member_status FROM org_access($1)";

impl<R: MinRole> FromRequestParts<AppState> for OrgTx<R> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let context = RequestContext::of(&parts.extensions);
        let route = context.route();
        let path_org =
            route.map(|r| r.params.uuid("orgId")).transpose().map_err(IntoResponse::into_response)?.flatten();
        let auth = auth_user(parts).map_err(IntoResponse::into_response)?;
        let opened = match path_org {
            Some(org_id) => open(state, auth, Some(org_id), &[(ORG_ACCESS, &[(&org_id, Type::UUID)])])
                .await
                .map(|(tx, user, rows)| (tx, user, rows, org_id)),
            None => current_org(state, auth).await,
        };
        let (mut tx, user, rows, org_id) = opened.map_err(IntoResponse::into_response)?;
        if let Some(timing) = parts.extensions.get::<crate::timing::Timing>() {
            tx.time_with(timing);
        }
        // The organization asked for, whatever the answer: a refused request (a cross-tenant attempt by an
        // outsider, a member short of the role) is on that organization's audit trail, where its admins look.
        crate::audit::note(&parts.extensions, |n| n.organization_id = Some(org_id));
        let former_member = match rows[0].is_empty() {
            true => recently_member_of(&tx, org_id, state).await.map_err(IntoResponse::into_response)?,
            false => false,
        };
        let role =
            check_access(&rows[0], &user, org_id, R::ROLE, former_member).map_err(IntoResponse::into_response)?;
        if route.is_some_and(|r| r.facts.rate.charges_org()) {
            let key = KeyParts { user: Some(user.id), org: Some(org_id), ip: context.client_ip() };
            state.rate_limits.charge_org(key, parts.extensions.get::<Reported>()).await?;
        }
        Ok(OrgTx { tx, user, org: OrgContext { id: org_id, role }, _role: PhantomData })
    }
}

/// For routes without `{orgId}`: the user's current organization, set in a second step.
async fn current_org(
    state: &AppState,
    auth: &crate::auth::AuthUser,
) -> Result<(Tx, CurrentUser, Vec<Vec<tokio_postgres::Row>>, Uuid), AppError> {
    let (tx, user, _) = open(state, auth, None, &[]).await?;
    let org_id = user
        .organization_id
        .ok_or_else(|| AppError::new(ErrorCode::OrganizationRequired, "select or create an organization first"))?;
    tx.query("SELECT set_org_context($1)", &[(&org_id, Type::UUID)]).await?;
    let access = tx.query(ORG_ACCESS, &[(&org_id, Type::UUID)]).await?;
    Ok((tx, user, vec![access], org_id))
}

/// Whether the caller's membership of `org` ended less than `SECURITY_RECENT_MEMBERSHIP_SECONDS` ago (asked
/// only when the caller is not a member now).
async fn recently_member_of(tx: &Tx, org: Uuid, state: &AppState) -> Result<bool, AppError> {
    let window = i32::try_from(state.config.orgs.recent_membership.as_secs()).unwrap_or(i32::MAX);
    if window == 0 {
        return Ok(false);
    }
    let row = tx.query_one("SELECT recently_member_of($1, $2)", &[(&org, Type::UUID), (&window, Type::INT4)]).await?;
    Ok(row.get(0))
}

/// Map the `org_access` answer to a role or the error the caller gets.
///
/// A request for an organization the caller is not a member of is a cross-tenant attempt (a security event,
/// counted towards `cross_tenant_burst`), unless the caller was a member until recently (`former_member`):
/// that is a former member's client still polling, and another tenant (the admin who removed them) must not
/// be able to turn it into an automatic lock of the victim's account.
fn check_access(
    rows: &[tokio_postgres::Row],
    user: &CurrentUser,
    org_id: Uuid,
    min: OrgRole,
    former_member: bool,
) -> Result<OrgRole, AppError> {
    let not_member = || AppError::new(ErrorCode::NotOrgMember, "you are not a member of this organization");
    let Some(row) = rows.first() else {
        if former_member {
            tracing::debug!(user_id = %user.id, org_id = %org_id, "request for an organization the user recently left");
            return Err(not_member());
        }
        tracing::debug!(user_id = %user.id, org_id = %org_id, "request for an organization the user does not belong to");
        return Err(not_member().security(SecurityKind::CrossTenantAttempt));
    };
    let org_status: &str = row.get(0);
    let role = OrgRole::parse(row.get(1)).ok_or_else(|| AppError::internal(anyhow::anyhow!("unknown org role")))?;
    let member_status: &str = row.get(2);
    if member_status != "ACTIVE" {
        return Err(not_member());
    }
    if org_status != "ACTIVE" {
        return Err(AppError::new(ErrorCode::OrgSuspended, "this organization is suspended or inactive"));
    }
    if role < min {
        return Err(min.required_error());
    }
    Ok(role)
}
