//! Organization members: list, add, change role/status, remove, with last-OWNER protection.
//!
//! Rules: ADMIN and above manage members; only an OWNER may grant the OWNER role or change or remove an
//! OWNER; any member may leave (remove themself). The last active OWNER can be neither demoted, suspended
//! nor removed: the check locks the organization's OWNER rows (`FOR UPDATE`), so two owners demoting each
//! other at the same moment cannot both succeed.

use axum::Json;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::Row;
use tokio_postgres::types::Type;
use uuid::Uuid;

use super::pagination::{Page, PageQuery, fetch_page};
use crate::db::Tx;
use crate::error::{AppError, ErrorCode};
use crate::http::extract::{ApiJson, ApiQuery, PathIds, Validate};
use crate::org::{Admin, OrgContext, OrgRole, OrgTx, Viewer};

/// A member of an organization.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Member {
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

/// Who to add: an existing user by e-mail, or by id; exactly one of the two.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum AddMember {
    ByEmail(AddByEmail),
    ById(AddById),
}

/// An existing user by e-mail.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddByEmail {
    #[schema(min_length = 3, max_length = 320, pattern = "@")]
    pub email: String,
    /// Default MEMBER.
    #[schema(value_type = Option<OrgRole>)]
    pub role: Option<String>,
}

/// A user by id.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AddById {
    pub user_id: Uuid,
    /// Default MEMBER.
    #[schema(value_type = Option<OrgRole>)]
    pub role: Option<String>,
}

impl AddMember {
    fn role(&self) -> Option<&str> {
        match self {
            AddMember::ByEmail(b) => b.role.as_deref(),
            AddMember::ById(b) => b.role.as_deref(),
        }
    }
}

impl Validate for AddMember {
    fn validate(&mut self) -> Result<(), AppError> {
        if let AddMember::ByEmail(b) = self
            && (!b.email.contains('@') || b.email.chars().count() > 320)
        {
            return Err(AppError::validation("email", "email is not a valid address"));
        }
        self.role().map(parse_role).transpose().map(|_| ())
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMember {
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
pub async fn list(ctx: OrgTx<Viewer>, ApiQuery(page): ApiQuery<PageQuery>) -> Result<Json<Page<Member>>, AppError> {
    let result = fetch_page(
        &ctx.tx,
        &format!(
            "SELECT {COLUMNS} FROM organization_memberships m JOIN users u ON u.id = m.user_id
              WHERE m.organization_id = $1
                AND ($2::timestamptz IS NULL OR (m.created_at, m.id) > ($2, $3))
              ORDER BY m.created_at, m.id LIMIT $4"
        ),
        &[(&ctx.org.id, Type::UUID)],
        page.keyset(),
        member,
        |m: &Member| m.key,
    )
    .await?;
    ctx.tx.commit().await?;
    Ok(Json(result))
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

fn require_owner_for(caller: &OrgContext, touches_owner: bool) -> Result<(), AppError> {
    if touches_owner && caller.role < OrgRole::Owner {
        return Err(OrgRole::Owner.required_error());
    }
    Ok(())
}

/// Add an existing user to the organization (ADMIN or above; OWNER to add an OWNER).
#[utoipa::path(post, path = "/api/organizations/{orgId}/members", tag = "members",
    params(("orgId" = Uuid, Path)), request_body = AddMember,
    responses((status = 201, body = Member), (status = 409, body = crate::error::ErrorBody)),
    extensions(("x-audit-action" = json!("members.add")), ("x-audit-entity" = json!("membership")), ("x-rate-limit" = json!("org-write")), ("x-min-role" = json!("ADMIN"))),
    security(("bearer" = [])))]
pub async fn add(ctx: OrgTx<Admin>, ApiJson(body): ApiJson<AddMember>) -> Result<(StatusCode, Json<Member>), AppError> {
    let role = body.role().map(parse_role).transpose()?.unwrap_or(OrgRole::Member);
    require_owner_for(&ctx.org, role == OrgRole::Owner)?;
    let user_id = match &body {
        AddMember::ById(b) => b.user_id,
        AddMember::ByEmail(b) => ctx
            .tx
            .query_one("SELECT find_user_id_by_email($1)", &[(&b.email, Type::TEXT)])
            .await?
            .get::<_, Option<Uuid>>(0)
            .ok_or_else(|| AppError::not_found("user").with_field("email"))?,
    };
    let added = ctx
        .tx
        .query_opt(
            "INSERT INTO organization_memberships (user_id, organization_id, role, status, invited_by, joined_at)
             VALUES ($1, $2, $3, 'ACTIVE', current_user_id(), now())
             ON CONFLICT (user_id, organization_id) DO UPDATE SET role = EXCLUDED.role, status = 'ACTIVE'
              WHERE organization_memberships.status = 'LEFT'
             RETURNING id",
            &[(&user_id, Type::UUID), (&ctx.org.id, Type::UUID), (&role.as_str(), Type::TEXT)],
        )
        .await?;
    if added.is_none() {
        return Err(AppError::new(ErrorCode::Conflict, "the user is already a member").with_field("userId"));
    }
    let m = load_member(&ctx.tx, ctx.org.id, user_id).await?;
    ctx.tx.commit().await?;
    Ok((StatusCode::CREATED, Json(m)))
}

/// Change a member's role or status (ADMIN or above; OWNER when an OWNER is involved).
#[utoipa::path(patch, path = "/api/organizations/{orgId}/members/{userId}", tag = "members",
    params(("orgId" = Uuid, Path), ("userId" = Uuid, Path)), request_body = UpdateMember,
    responses((status = 200, body = Member), (status = 409, body = crate::error::ErrorBody)),
    extensions(("x-audit-action" = json!("members.update")), ("x-audit-entity" = json!("membership")), ("x-rate-limit" = json!("org-write")), ("x-min-role" = json!("ADMIN"))),
    security(("bearer" = [])))]
pub async fn update(
    ctx: OrgTx<Admin>,
    ids: PathIds,
    ApiJson(body): ApiJson<UpdateMember>,
) -> Result<Json<Member>, AppError> {
    let user_id = ids.uuid("userId")?;
    let target = load_member(&ctx.tx, ctx.org.id, user_id).await?;
    let new_role = body.role.as_deref().map(parse_role).transpose()?.unwrap_or(target.role);
    let new_status = body.status.clone().unwrap_or_else(|| target.status.clone());
    require_owner_for(&ctx.org, target.role == OrgRole::Owner || new_role == OrgRole::Owner)?;
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
    ctx.tx.commit().await?;
    Ok(Json(m))
}

/// Remove a member (ADMIN or above; OWNER to remove an OWNER); any member may remove themself.
#[utoipa::path(delete, path = "/api/organizations/{orgId}/members/{userId}", tag = "members",
    params(("orgId" = Uuid, Path), ("userId" = Uuid, Path)),
    responses((status = 204), (status = 409, body = crate::error::ErrorBody)),
    extensions(("x-audit-action" = json!("members.remove")), ("x-audit-entity" = json!("membership")), ("x-rate-limit" = json!("org-write")), ("x-min-role" = json!("VIEWER"))),
    security(("bearer" = [])))]
pub async fn remove(ctx: OrgTx<Viewer>, ids: PathIds) -> Result<StatusCode, AppError> {
    let user_id = ids.uuid("userId")?;
    let leaving_self = user_id == ctx.user.id;
    if !leaving_self && ctx.org.role < OrgRole::Admin {
        return Err(OrgRole::Admin.required_error());
    }
    let target = load_member(&ctx.tx, ctx.org.id, user_id).await?;
    if !leaving_self {
        require_owner_for(&ctx.org, target.role == OrgRole::Owner)?;
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
    ctx.tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
