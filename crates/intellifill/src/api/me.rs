//! `GET /api/me`: the caller's account and organizations.

use axum::Json;
use serde::Serialize;
use tokio_postgres::types::Type;
use uuid::Uuid;

use crate::error::AppError;
use crate::org::OrgRole;
use crate::principal::{PlatformRole, UserTx};

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Me {
    pub id: Uuid,
    /// None for an anonymous user, and for an account whose address another user has claimed since.
    pub email: Option<String>,
    pub role: PlatformRole,
    pub is_active: bool,
    pub current_organization_id: Option<Uuid>,
    pub organizations: Vec<Membership>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Membership {
    pub organization_id: Uuid,
    pub name: String,
    pub slug: String,
    pub role: OrgRole,
    /// The organization's status.
    pub status: String,
}

/// The caller's account, with every organization it is an active member of (at most 100).
#[utoipa::path(get, path = "/api/me", tag = "account",
    responses((status = 200, body = Me)),
    extensions(("x-audit-action" = json!("me.read")), ("x-audit-entity" = json!("user")), ("x-rate-limit" = json!("user"))),
    security(("bearer" = [])))]
pub(crate) async fn get(ctx: UserTx) -> Result<Json<Me>, AppError> {
    let rows = ctx
        .tx
        .query(
            "SELECT o.id, o.name, o.slug, m.role, o.status
               FROM organization_memberships m JOIN organizations o ON o.id = m.organization_id
              WHERE m.user_id = $1 AND m.status = 'ACTIVE'
              ORDER BY m.created_at, o.id LIMIT 100",
            &[(&ctx.user.id, Type::UUID)],
        )
        .await?;
    ctx.tx.commit().await?;
    let organizations = rows
        .iter()
        .map(|r| Membership {
            organization_id: r.get(0),
            name: r.get(1),
            slug: r.get(2),
            role: OrgRole::parse(r.get(3)).unwrap_or(OrgRole::Viewer),
            status: r.get(4),
        })
        .collect();
    let u = ctx.user;
    Ok(Json(Me {
        id: u.id,
        email: u.email,
        role: u.role,
        is_active: u.is_active,
        current_organization_id: u.organization_id,
        organizations,
    }))
}
