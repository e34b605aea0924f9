//! Organization context: which tenant a request acts in, and with which role.
//!
//! [`OrgTx`] is the extractor of every org-scoped route ([`OrgOpen`] for a handler that sends its first query
//! in the same round trip, with the same checks and answers). The organization comes from the `{orgId}` path
//! parameter or, for routes without one, from the user's current organization. In the statement that sets the
//! context and reads the user row (`open_request`) it asks the database for the caller's membership there
//! (`org_access` for the current organization), and maps the answer:
//! none -> `NOT_ORG_MEMBER` (unknown and foreign organizations look the same, and the attempt is a security
//! event), membership not ACTIVE -> `NOT_ORG_MEMBER`, organization not ACTIVE -> `ORG_SUSPENDED`, role
//! below the route's minimum -> `ADMIN_REQUIRED` / `OWNER_REQUIRED` / `FORBIDDEN`. The minimum role is
//! declared in the handler's signature: `OrgTx<Admin>`. Whatever the answer, the request's audit row names the
//! organization asked for, so the admins of a probed organization see the attempt in their own audit log.
//!
//! The database enforces the same rules again through RLS, so a bug here cannot leak another tenant's rows.

use std::marker::PhantomData;
use std::net::IpAddr;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio_postgres::types::Type;
use uuid::Uuid;

use crate::audit::AuditSlot;
use crate::auth::AuthUser;
use crate::db::{FirstRows, MemberAccess, RlsContext, Statement, Tx};
use crate::error::{AppError, ErrorCode};
use crate::http::context::RequestContext;
use crate::principal::{CurrentUser, Open, auth_user, open, open_read};
use crate::ratelimit::{KeyParts, Reported};
use crate::security::SecurityKind;
use crate::state::AppState;
use crate::timing::Timing;

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

/// An org-scoped request whose transaction is not open yet, for a handler that sends its first query in the
/// same round trip as the context and membership check ([`OrgOpen::open_with`]). Everything else, every
/// answer and every error, is [`OrgTx`]'s: `OrgTx` is `OrgOpen::open` without a first query.
pub(crate) struct OrgOpen<R: MinRole = Viewer> {
    state: AppState,
    auth: AuthUser,
    path_org: Option<Uuid>,
    timing: Option<Timing>,
    audit: Option<AuditSlot>,
    reported: Option<Reported>,
    charges_org: bool,
    ip: Option<IpAddr>,
    _role: PhantomData<R>,
}

impl<R: MinRole> FromRequestParts<AppState> for OrgOpen<R> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let context = RequestContext::of(&parts.extensions);
        let route = context.route();
        let path_org =
            route.map(|r| r.params.uuid("orgId")).transpose().map_err(IntoResponse::into_response)?.flatten();
        let auth = auth_user(parts).map_err(IntoResponse::into_response)?.clone();
        Ok(OrgOpen {
            state: state.clone(),
            auth,
            path_org,
            timing: parts.extensions.get::<Timing>().cloned(),
            audit: parts.extensions.get::<AuditSlot>().cloned(),
            reported: parts.extensions.get::<Reported>().cloned(),
            charges_org: route.is_some_and(|r| r.facts.rate.charges_org()),
            ip: context.client_ip(),
            _role: PhantomData,
        })
    }
}

impl<R: MinRole> FromRequestParts<AppState> for OrgTx<R> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        OrgOpen::<R>::from_request_parts(parts, state).await?.open().await
    }
}

impl<R: MinRole> OrgOpen<R> {
    /// The `{orgId}` of the route's path (an internal error on a route without one).
    pub(crate) fn path_org(&self) -> Result<Uuid, AppError> {
        self.path_org.ok_or_else(|| AppError::internal(anyhow::anyhow!("route has no {{orgId}}")))
    }

    /// The answer to a request whose input (`input`: a path id, the query string) is bad: the caller is
    /// checked first, as on every route, so a refused caller gets the refusal (and its security event), any
    /// other the input error.
    pub(crate) async fn refuse_input(self, input: AppError) -> Response {
        match self.open().await {
            Ok(_) => input.into_response(),
            Err(refused) => refused,
        }
    }

    /// Open the transaction and check the caller, as [`OrgTx`] does.
    pub(crate) async fn open(self) -> Result<OrgTx<R>, Response> {
        Ok(self.open_with(None).await?.0)
    }

    /// Open the transaction with `first` pipelined behind the context and membership statement, check the
    /// caller, and return `first`'s rows (`Some` whenever `first` was given). The caller's checks come first:
    /// a refused caller gets the refusal, never `first`'s rows or error. RLS answered `first` with the caller's
    /// own rights, so it could read nothing the caller may not see even before the check.
    pub(crate) async fn open_with(self, first: Option<Statement<'_, '_>>) -> Result<(OrgTx<R>, FirstRows), Response> {
        self.open_as(first, false).await
    }

    /// [`Self::open_with`] for a read-only handler whose `first` query is all it asks of the database:
    /// `COMMIT` goes in the same pipeline, so the whole transaction is one round trip. The returned
    /// transaction is committed (its `commit` is a no-op) unless the user row had to be written first.
    pub(crate) async fn read_with(self, first: Statement<'_, '_>) -> Result<(OrgTx<R>, FirstRows), Response> {
        self.open_as(Some(first), true).await
    }

    async fn open_as(self, first: Option<Statement<'_, '_>>, read: bool) -> Result<(OrgTx<R>, FirstRows), Response> {
        let opened = match (self.path_org, first) {
            (Some(org_id), Some(first)) if read => open_read(&self.state, &self.auth, org_id, first)
                .await
                .map(|o| (o.tx, o.user, o.access, o.first, org_id)),
            (Some(org_id), first) => open(&self.state, &self.auth, Some(org_id), first)
                .await
                .map(|o| (o.tx, o.user, o.access, o.first, org_id)),
            // The organization is known only from the user row: the first query waits for the check.
            (None, _) => current_org(&self.state, &self.auth)
                .await
                .map(|(tx, user, access, org_id)| (tx, user, access, None, org_id)),
        };
        let (mut tx, user, access, first_rows, org_id) = opened.map_err(IntoResponse::into_response)?;
        if let Some(timing) = &self.timing {
            tx.time_with(timing);
        }
        // The organization asked for, whatever the answer: a refused request (a cross-tenant attempt by an
        // outsider, a member short of the role) is on that organization's audit trail, where its admins look.
        if let Some(slot) = &self.audit {
            slot.update(|n| n.organization_id = Some(org_id));
        }
        let former_member = match access {
            None if tx.is_committed() => {
                // The read's transaction is over: the check gets one of its own (a refusal's extra round trip),
                // on the connection the read gives back.
                tx.release();
                let ctx = RlsContext { user_id: self.auth.id, org_id: Some(org_id) };
                let (check, _, _) = self.state.db.begin(ctx, None).await.map_err(IntoResponse::into_response)?;
                recently_member_of(&check, org_id, &self.state).await.map_err(IntoResponse::into_response)?
            }
            None => recently_member_of(&tx, org_id, &self.state).await.map_err(IntoResponse::into_response)?,
            Some(_) => false,
        };
        let role = check_access(access.as_ref(), &user, org_id, R::ROLE, former_member)
            .map_err(IntoResponse::into_response)?;
        if self.charges_org {
            let key = KeyParts { user: Some(user.id), org: Some(org_id), ip: self.ip };
            self.state.rate_limits.charge_org(key, self.reported.as_ref()).await?;
        }
        let first_rows = match (first_rows, first) {
            (None, Some((sql, params))) => Some(tx.query(sql, params).await),
            (rows, _) => rows,
        };
        Ok((OrgTx { tx, user, org: OrgContext { id: org_id, role }, _role: PhantomData }, first_rows))
    }
}

/// For routes without `{orgId}`: the user's current organization, set in a second step.
async fn current_org(
    state: &AppState,
    auth: &AuthUser,
) -> Result<(Tx, CurrentUser, Option<MemberAccess>, Uuid), AppError> {
    let Open { tx, user, .. } = open(state, auth, None, None).await?;
    let org_id = user
        .organization_id
        .ok_or_else(|| AppError::new(ErrorCode::OrganizationRequired, "select or create an organization first"))?;
    tx.query("SELECT set_org_context($1)", &[(&org_id, Type::UUID)]).await?;
    let access = tx.query(ORG_ACCESS, &[(&org_id, Type::UUID)]).await?;
    let access = access.first().and_then(|row| MemberAccess::from_row(row, 0));
    Ok((tx, user, access, org_id))
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
    access: Option<&MemberAccess>,
    user: &CurrentUser,
    org_id: Uuid,
    min: OrgRole,
    former_member: bool,
) -> Result<OrgRole, AppError> {
    let not_member = || AppError::new(ErrorCode::NotOrgMember, "you are not a member of this organization");
    let Some(access) = access else {
        if former_member {
            tracing::debug!(user_id = %user.id, org_id = %org_id, "request for an organization the user recently left");
            return Err(not_member());
        }
        tracing::debug!(user_id = %user.id, org_id = %org_id, "request for an organization the user does not belong to");
        return Err(not_member().security(SecurityKind::CrossTenantAttempt));
    };
    let role = OrgRole::parse(&access.role).ok_or_else(|| AppError::internal(anyhow::anyhow!("unknown org role")))?;
    if access.member_status != "ACTIVE" {
        return Err(not_member());
    }
    if access.org_status != "ACTIVE" {
        return Err(AppError::new(ErrorCode::OrgSuspended, "this organization is suspended or inactive"));
    }
    if role < min {
        return Err(min.required_error());
    }
    Ok(role)
}
