//! Organization members: list, change role/status, remove, with last-OWNER protection. Members join
//! through invitations (`api::invitations`), never by being added.
//!
//! Rules (the database's `membership_guard` trigger enforces them again): ADMIN and above manage members; a
//! role is granted or changed only by someone whose rank is at least the new role's and above the target's
//! current one, and an OWNER may change or remove anyone (so only an OWNER grants OWNER or touches an OWNER or
//! another ADMIN); any member may leave (remove themself). The last active OWNER can be neither demoted, suspended
//! nor removed: the check locks the organization's OWNER rows (`FOR UPDATE`), so two owners demoting each
//! other at the same moment cannot both succeed.

use axum::Json;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::Row;
use tokio_postgres::types::Type;
use uuid::Uuid;

use super::pagination::{Page, PageInput, PageQuery, read_org_page};
use crate::audit::in_tx::AuditedWrite;
use crate::db::Tx;
use crate::error::{AppError, ErrorCode};
use crate::http::extract::{ApiJson, PathIds, Validate};
use crate::org::{Admin, OrgContext, OrgOpen, OrgRole, OrgTx, Viewer};

/// A member of an organization.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Member {
    pub user_id: Uuid,
    /// None for an anonymous user, and for an account whose address another user has claimed since.
    pub email: Option<String>,
    pub role: OrgRole,
    /// PENDING | ACTIVE | SUSPENDED | LEFT
    pub status: String,
    pub joined_at: Option<DateTime<Utc>>,
    #[serde(skip)]
    pub key: (DateTime<Utc>, Uuid),
}

const COLUMNS: &str = "m.user_id, u.email, m.role, m.status, m.joined_at, m.created_at, m.id";

fn member(row: &Row) -> Member {
    Member {
        user_id: row.get(0),
        email: row.get(1),
        role: OrgRole::parse(row.get(2)).unwrap_or(OrgRole::Viewer),
        status: row.get(3),
        joined_at: row.get(4),
        key: (row.get(5), row.get(6)),
    }
}

fn parse_role(raw: &str) -> Result<OrgRole, AppError> {
    OrgRole::parse(raw).ok_or_else(|| AppError::validation("role", "role must be one of OWNER, ADMIN, MEMBER, VIEWER"))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateMember {
    #[schema(value_type = Option<OrgRole>)]
    pub role: Option<String>,
    /// ACTIVE | SUSPENDED
    #[schema(pattern = "^(ACTIVE|SUSPENDED)$")]
    pub status: Option<String>,
}

impl Validate for UpdateMember {
    fn validate(&mut self) -> Result<(), AppError> {
        if let Some(role) = &self.role {
            parse_role(role)?;
        }
        if let Some(status) = &self.status
            && !matches!(status.as_str(), "ACTIVE" | "SUSPENDED")
        {
            return Err(AppError::validation("status", "status must be ACTIVE or SUSPENDED"));
        }
        Ok(())
    }
}

/// List members, oldest first.
#[utoipa::path(get, path = "/api/organizations/{orgId}/members", tag = "members",
    params(("orgId" = Uuid, Path), PageQuery), responses((status = 200, body = Page<Member>)),
    extensions(("x-audit-action" = json!("members.list")), ("x-audit-entity" = json!("membership")), ("x-rate-limit" = json!("user")), ("x-min-role" = json!("VIEWER"))),
    security(("bearer" = [])))]
pub(crate) async fn list(open: OrgOpen<Viewer>, page: PageInput) -> Result<Json<Page<Member>>, Response> {
    read_org_page(
        open,
        page,
        &format!(
            "SELECT {COLUMNS} FROM organization_memberships m JOIN users u ON u.id = m.user_id
              WHERE m.organization_id = $1
                AND {{after}}
              ORDER BY m.created_at, m.id LIMIT {{limit}}"
        ),
        "(m.created_at, m.id) > ($2, $3)",
        &[],
        member,
        |m: &Member| m.key,
    )
    .await
}

async fn load_member(tx: &Tx, org: Uuid, user: Uuid) -> Result<Member, AppError> {
    let row = tx
        .query_opt(
            &format!(
                "SELECT {COLUMNS} FROM organization_memberships m JOIN users u ON u.id = m.user_id
                  WHERE m.organization_id = $1 AND m.user_id = $2"
            ),
            &[(&org, Type::UUID), (&user, Type::UUID)],
        )
        .await?
        .ok_or_else(|| AppError::not_found("member"))?;
    Ok(member(&row))
}

/// Refuse when `leaving` is the organization's last active OWNER. Locks the OWNER rows until commit.
async fn ensure_other_owner(tx: &Tx, org: Uuid, leaving: Uuid) -> Result<(), AppError> {
    let owners = tx
        .query(
            "SELECT user_id FROM organization_memberships
              WHERE organization_id = $1 AND role = 'OWNER' AND status = 'ACTIVE' FOR UPDATE",
            &[(&org, Type::UUID)],
        )
        .await?;
    let others = owners.iter().filter(|r| r.get::<_, Uuid>(0) != leaving).count();
    if others == 0 {
        return Err(AppError::new(ErrorCode::LastOwner, "an organization must keep at least one active OWNER"));
    }
    Ok(())
}

/// The rank rule (the database's `membership_guard` holds it too): an OWNER may change or remove anyone;
/// otherwise the caller's rank must be at least the new role's and above the target's current role.
fn require_rank(caller: &OrgContext, current: OrgRole, new: OrgRole) -> Result<(), AppError> {
    if caller.role == OrgRole::Owner || (new <= caller.role && current < caller.role) {
        return Ok(());
    }
    // The caller is an ADMIN (the routes' minimum): only an OWNER outranks what it touched.
    Err(OrgRole::Owner.required_error())
}

/// Change a member's role or status (ADMIN or above, on a lower-ranked member; OWNER for the rest).
#[utoipa::path(patch, path = "/api/organizations/{orgId}/members/{userId}", tag = "members",
    params(("orgId" = Uuid, Path), ("userId" = Uuid, Path)), request_body = UpdateMember,
    responses((status = 200, body = Member), (status = 409, body = crate::error::ErrorBody)),
    extensions(("x-audit-action" = json!("members.update")), ("x-audit-entity" = json!("membership")), ("x-rate-limit" = json!("org-write")), ("x-min-role" = json!("ADMIN"))),
    security(("bearer" = [])))]
pub(crate) async fn update(
    ctx: OrgTx<Admin>,
    ids: PathIds,
    write: AuditedWrite,
    ApiJson(body): ApiJson<UpdateMember>,
) -> Result<Json<Member>, AppError> {
    let user_id = ids.uuid("userId")?;
    let target = load_member(&ctx.tx, ctx.org.id, user_id).await?;
    let new_role = body.role.as_deref().map(parse_role).transpose()?.unwrap_or(target.role);
    let new_status = body.status.clone().unwrap_or_else(|| target.status.clone());
    require_rank(&ctx.org, target.role, new_role)?;
    let stops_being_owner = target.role == OrgRole::Owner && (new_role != OrgRole::Owner || new_status != "ACTIVE");
    if stops_being_owner {
        ensure_other_owner(&ctx.tx, ctx.org.id, user_id).await?;
    }
    ctx.tx
        .query(
            "UPDATE organization_memberships SET role = $3, status = $4 WHERE organization_id = $1 AND user_id = $2",
            &[
                (&ctx.org.id, Type::UUID),
                (&user_id, Type::UUID),
                (&new_role.as_str(), Type::TEXT),
                (&new_status, Type::TEXT),
            ],
        )
        .await?;
    let m = load_member(&ctx.tx, ctx.org.id, user_id).await?;
    write.commit(ctx.tx, StatusCode::OK).await?;
    Ok(Json(m))
}

/// Remove a member (ADMIN or above, a lower-ranked member; OWNER for the rest); any member may leave.
#[utoipa::path(delete, path = "/api/organizations/{orgId}/members/{userId}", tag = "members",
    params(("orgId" = Uuid, Path), ("userId" = Uuid, Path)),
    responses((status = 204), (status = 409, body = crate::error::ErrorBody)),
    extensions(("x-audit-action" = json!("members.remove")), ("x-audit-entity" = json!("membership")), ("x-rate-limit" = json!("org-write")), ("x-min-role" = json!("VIEWER"))),
    security(("bearer" = [])))]
pub(crate) async fn remove(ctx: OrgTx<Viewer>, ids: PathIds, write: AuditedWrite) -> Result<StatusCode, AppError> {
    let user_id = ids.uuid("userId")?;
    let leaving_self = user_id == ctx.user.id;
    if !leaving_self && ctx.org.role < OrgRole::Admin {
        return Err(OrgRole::Admin.required_error());
    }
    let target = load_member(&ctx.tx, ctx.org.id, user_id).await?;
    if !leaving_self {
        require_rank(&ctx.org, target.role, OrgRole::Viewer)?;
    }
    if target.role == OrgRole::Owner && target.status == "ACTIVE" {
        ensure_other_owner(&ctx.tx, ctx.org.id, user_id).await?;
    }
    ctx.tx
        .query(
            "DELETE FROM organization_memberships WHERE organization_id = $1 AND user_id = $2 RETURNING id",
            &[(&ctx.org.id, Type::UUID), (&user_id, Type::UUID)],
        )
        .await?;
    write.commit(ctx.tx, StatusCode::NO_CONTENT).await?;
    Ok(StatusCode::NO_CONTENT)
}
