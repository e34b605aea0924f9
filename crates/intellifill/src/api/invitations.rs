//! Invitations: how someone joins an organization, by consent.
//!
//! An ADMIN (or OWNER) invites an e-mail address with a role up to their own (only an OWNER invites an
//! OWNER). The answer never depends on whether the address has an account: nothing is looked up outside the
//! organization (only "is this address already a member here", which the admin can list anyway), and the
//! response carries no user id. The invitee sees the invitations addressed to the e-mail of their account
//! (`GET /api/invitations`), including ones sent before they signed up, and accepts or declines; only
//! acceptance creates the ACTIVE membership (`accept_invitation`, in the database, which locks the
//! invitation: an accept racing a revoke has exactly one winner). Admins list and revoke pending invitations.
//! Expired invitations are neither listed nor accepted; inviting the same address again refreshes the pending
//! invitation (role, inviter, expiry).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::Row;
use tokio_postgres::types::Type;
use uuid::Uuid;

use super::organizations::{Organization, load_organization};
use super::pagination::{Page, PageQuery, fetch_page};
use crate::audit::in_tx::AuditedWrite;
use crate::error::{AppError, ErrorCode};
use crate::http::extract::{ApiJson, ApiQuery, PathIds, Validate};
use crate::org::{Admin, OrgRole, OrgTx};
use crate::principal::UserTx;
use crate::state::AppState;

/// An invitation, as its organization's admins see it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Invitation {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub email: String,
    pub role: OrgRole,
    /// PENDING | ACCEPTED | DECLINED | REVOKED
    pub status: String,
    pub invited_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

const COLUMNS: &str = "i.id, i.organization_id, i.email, i.role, i.status, i.invited_by, i.created_at, i.expires_at";

fn invitation(row: &Row) -> Invitation {
    Invitation {
        id: row.get(0),
        organization_id: row.get(1),
        email: row.get(2),
        role: OrgRole::parse(row.get(3)).unwrap_or(OrgRole::Viewer),
        status: row.get(4),
        invited_by: row.get(5),
        created_at: row.get(6),
        expires_at: row.get(7),
    }
}

/// Whom to invite.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateInvitation {
    #[schema(min_length = 3, max_length = 320, pattern = "^[^@\\s]+@[^@\\s]+$")]
    pub email: String,
    /// Default MEMBER.
    #[schema(value_type = Option<OrgRole>)]
    pub role: Option<String>,
}

/// An e-mail address as far as this service cares: one `@` with something on both sides, no white space.
fn valid_email(email: &str) -> bool {
    let count = email.chars().count();
    (3..=320).contains(&count)
        && !email.chars().any(char::is_whitespace)
        && email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty() && !domain.contains('@'))
}

fn parse_role(raw: &str) -> Result<OrgRole, AppError> {
    OrgRole::parse(raw).ok_or_else(|| AppError::validation("role", "role must be one of OWNER, ADMIN, MEMBER, VIEWER"))
}

impl Validate for CreateInvitation {
    fn validate(&mut self) -> Result<(), AppError> {
        if !valid_email(&self.email) {
            return Err(AppError::validation("email", "email is not a valid address"));
        }
        self.email = self.email.to_lowercase();
        self.role.as_deref().map(parse_role).transpose().map(|_| ())
    }
}

/// Invite an e-mail address (ADMIN or above; OWNER to invite an OWNER). The same answer whether or not the
/// address has an account.
#[utoipa::path(post, path = "/api/organizations/{orgId}/invitations", tag = "invitations",
    params(("orgId" = Uuid, Path)), request_body = CreateInvitation,
    responses((status = 201, body = Invitation, links(
            ("RevokeInvitation" = (operation_ref = super::links::REVOKE_INVITATION, parameters(("path.orgId" = "$response.body#/organizationId"), ("path.id" = "$response.body#/id")))),
            ("AcceptInvitation" = (operation_ref = super::links::ACCEPT_INVITATION, parameters(("path.id" = "$response.body#/id")))),
            ("DeclineInvitation" = (operation_ref = super::links::DECLINE_INVITATION, parameters(("path.id" = "$response.body#/id")))))),
        (status = 409, body = crate::error::ErrorBody,
        description = "already a member (`CONFLICT`), or `INVITATION_QUOTA_EXCEEDED`")),
    extensions(("x-audit-action" = json!("invitations.create")), ("x-audit-entity" = json!("invitation")), ("x-rate-limit" = json!("org-write")), ("x-min-role" = json!("ADMIN"))),
    security(("bearer" = [])))]
pub(crate) async fn create(
    State(state): State<AppState>,
    ctx: OrgTx<Admin>,
    audit: crate::audit::AuditSlot,
    write: AuditedWrite,
    ApiJson(body): ApiJson<CreateInvitation>,
) -> Result<(StatusCode, Json<Invitation>), AppError> {
    let role = body.role.as_deref().map(parse_role).transpose()?.unwrap_or(OrgRole::Member);
    if role > ctx.org.role {
        return Err(role.required_error());
    }
    // Scoped to this organization: its members are what its admins may know.
    let member = ctx
        .tx
        .query_opt(
            "SELECT 1 FROM organization_memberships m JOIN users u ON u.id = m.user_id
              WHERE m.organization_id = $1 AND lower(u.email) = $2 AND m.status <> 'LEFT'",
            &[(&ctx.org.id, Type::UUID), (&body.email, Type::TEXT)],
        )
        .await?;
    if member.is_some() {
        return Err(AppError::new(ErrorCode::Conflict, "this address is already a member").with_field("email"));
    }
    // The organization's row serialises the quota check of concurrent invitations.
    ctx.tx.query("SELECT 1 FROM organizations WHERE id = $1 FOR NO KEY UPDATE", &[(&ctx.org.id, Type::UUID)]).await?;
    let pending: i64 = ctx
        .tx
        .query_one(
            "SELECT count(*) FROM organization_invitations
              WHERE organization_id = $1 AND status = 'PENDING' AND expires_at > now() AND lower(email) <> $2",
            &[(&ctx.org.id, Type::UUID), (&body.email, Type::TEXT)],
        )
        .await?
        .get(0);
    let max = state.config.orgs.max_pending_invitations;
    if pending >= max {
        return Err(AppError::new(
            ErrorCode::InvitationQuotaExceeded,
            format!("this organization already has {max} pending invitations: revoke some first"),
        ));
    }
    let ttl = state.config.orgs.invitation_ttl.as_secs_f64();
    let row = ctx
        .tx
        .query_one(
            &format!(
                "INSERT INTO organization_invitations AS i (organization_id, email, role, invited_by, expires_at)
                 VALUES ($1, $2, $3, current_user_id(), now() + make_interval(secs => $4))
                 ON CONFLICT (organization_id, lower(email)) WHERE status = 'PENDING'
                 DO UPDATE SET role = EXCLUDED.role, invited_by = EXCLUDED.invited_by, expires_at = EXCLUDED.expires_at
                 RETURNING {COLUMNS}"
            ),
            &[(&ctx.org.id, Type::UUID), (&body.email, Type::TEXT), (&role.as_str(), Type::TEXT), (&ttl, Type::FLOAT8)],
        )
        .await?;
    let made = invitation(&row);
    audit.update(|n| n.entity_id = Some(made.id.to_string()));
    write.commit(ctx.tx, StatusCode::CREATED).await?;
    Ok((StatusCode::CREATED, Json(made)))
}

/// The organization's pending, unexpired invitations, oldest first (ADMIN or above).
#[utoipa::path(get, path = "/api/organizations/{orgId}/invitations", tag = "invitations",
    params(("orgId" = Uuid, Path), PageQuery), responses((status = 200, body = Page<Invitation>)),
    extensions(("x-audit-action" = json!("invitations.list")), ("x-audit-entity" = json!("invitation")), ("x-rate-limit" = json!("user")), ("x-min-role" = json!("ADMIN"))),
    security(("bearer" = [])))]
pub(crate) async fn list(
    ctx: OrgTx<Admin>,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> Result<Json<Page<Invitation>>, AppError> {
    let result = fetch_page(
        &ctx.tx,
        &format!(
            "SELECT {COLUMNS} FROM organization_invitations i
              WHERE i.organization_id = $1 AND i.status = 'PENDING' AND i.expires_at > now()
                AND {{after}}
              ORDER BY i.created_at, i.id LIMIT {{limit}}"
        ),
        "(i.created_at, i.id) > ($2, $3)",
        &[(&ctx.org.id, Type::UUID)],
        page.keyset(),
        invitation,
        |i: &Invitation| (i.created_at, i.id),
    )
    .await?;
    ctx.tx.commit().await?;
    Ok(Json(result))
}

/// Revoke a pending invitation (ADMIN or above; OWNER for an OWNER invitation).
#[utoipa::path(delete, path = "/api/organizations/{orgId}/invitations/{id}", tag = "invitations",
    params(("orgId" = Uuid, Path), ("id" = Uuid, Path)), responses((status = 204)),
    extensions(("x-audit-action" = json!("invitations.revoke")), ("x-audit-entity" = json!("invitation")), ("x-rate-limit" = json!("org-write")), ("x-min-role" = json!("ADMIN"))),
    security(("bearer" = [])))]
pub(crate) async fn revoke(ctx: OrgTx<Admin>, ids: PathIds, write: AuditedWrite) -> Result<StatusCode, AppError> {
    let id = ids.uuid("id")?;
    let role = ctx
        .tx
        .query_opt(
            "SELECT role FROM organization_invitations WHERE id = $1 AND organization_id = $2 AND status = 'PENDING'",
            &[(&id, Type::UUID), (&ctx.org.id, Type::UUID)],
        )
        .await?
        .ok_or_else(|| AppError::not_found("invitation"))?;
    let role = OrgRole::parse(role.get(0)).unwrap_or(OrgRole::Owner);
    if role > ctx.org.role {
        return Err(role.required_error());
    }
    // Still pending: an acceptance that committed first wins, and this is then a 404.
    ctx.tx
        .query_opt(
            "UPDATE organization_invitations SET status = 'REVOKED', responded_at = now()
              WHERE id = $1 AND status = 'PENDING' RETURNING id",
            &[(&id, Type::UUID)],
        )
        .await?
        .ok_or_else(|| AppError::not_found("invitation"))?;
    write.commit(ctx.tx, StatusCode::NO_CONTENT).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An invitation addressed to the caller.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MyInvitation {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub organization_name: String,
    pub organization_slug: String,
    pub role: OrgRole,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// The caller's pending invitations.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct MyInvitations {
    /// Oldest first, at most 100.
    pub data: Vec<MyInvitation>,
}

/// The pending, unexpired invitations addressed to the caller's e-mail (sent before or after sign-up).
#[utoipa::path(get, path = "/api/invitations", tag = "invitations",
    responses((status = 200, body = MyInvitations)),
    extensions(("x-audit-action" = json!("invitations.mine")), ("x-audit-entity" = json!("invitation")), ("x-rate-limit" = json!("user"))),
    security(("bearer" = [])))]
pub(crate) async fn mine(ctx: UserTx) -> Result<Json<MyInvitations>, AppError> {
    let rows = ctx
        .tx
        .query(
            "SELECT id, organization_id, organization_name, organization_slug, role, created_at, expires_at
               FROM my_invitations()",
            &[],
        )
        .await?;
    ctx.tx.commit().await?;
    let data = rows
        .iter()
        .map(|r| MyInvitation {
            id: r.get(0),
            organization_id: r.get(1),
            organization_name: r.get(2),
            organization_slug: r.get(3),
            role: OrgRole::parse(r.get(4)).unwrap_or(OrgRole::Viewer),
            created_at: r.get(5),
            expires_at: r.get(6),
        })
        .collect();
    Ok(Json(MyInvitations { data }))
}

/// Accept an invitation addressed to the caller: the caller becomes an ACTIVE member with its role (and,
/// without a current organization, this one becomes it).
#[utoipa::path(post, path = "/api/invitations/{id}/accept", tag = "invitations",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Organization, links(
            ("GetOrganization" = (operation_ref = super::links::GET_ORGANIZATION, parameters(("path.orgId" = "$response.body#/id")))),
            ("ListMembers" = (operation_ref = super::links::LIST_MEMBERS, parameters(("path.orgId" = "$response.body#/id")))))),
        (status = 409, body = crate::error::ErrorBody, description = "already a member (`CONFLICT`)"),
        (status = 410, body = crate::error::ErrorBody, description = "`INVITATION_EXPIRED`")),
    extensions(("x-audit-action" = json!("invitations.accept")), ("x-audit-entity" = json!("invitation")), ("x-rate-limit" = json!("user"))),
    security(("bearer" = [])))]
pub(crate) async fn accept(
    ctx: UserTx,
    ids: PathIds,
    audit: crate::audit::AuditSlot,
    write: AuditedWrite,
) -> Result<Json<Organization>, AppError> {
    let id = ids.uuid("id")?;
    let org: Uuid = ctx.tx.query_one("SELECT accept_invitation($1)", &[(&id, Type::UUID)]).await?.get(0);
    ctx.tx
        .query(
            "UPDATE users SET organization_id = $1 WHERE id = current_user_id() AND organization_id IS NULL",
            &[(&org, Type::UUID)],
        )
        .await?;
    let joined = load_organization(&ctx.tx, org).await?;
    audit.update(|n| n.organization_id = Some(org));
    write.commit(ctx.tx, StatusCode::OK).await?;
    tracing::info!(org_id = %org, user_id = %ctx.user.id, "invitation accepted");
    Ok(Json(joined))
}

/// Decline an invitation addressed to the caller.
#[utoipa::path(post, path = "/api/invitations/{id}/decline", tag = "invitations",
    params(("id" = Uuid, Path)), responses((status = 204)),
    extensions(("x-audit-action" = json!("invitations.decline")), ("x-audit-entity" = json!("invitation")), ("x-rate-limit" = json!("user"))),
    security(("bearer" = [])))]
pub(crate) async fn decline(ctx: UserTx, ids: PathIds, write: AuditedWrite) -> Result<StatusCode, AppError> {
    let id = ids.uuid("id")?;
    ctx.tx.query("SELECT decline_invitation($1)", &[(&id, Type::UUID)]).await?;
    write.commit(ctx.tx, StatusCode::NO_CONTENT).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::valid_email;

    #[test]
    fn addresses_need_one_at_with_both_sides() {
        assert!(valid_email("a@b"));
        assert!(!valid_email("ab"));
        assert!(!valid_email("@b.test"));
        assert!(!valid_email("a@"));
        assert!(!valid_email("a@b@c"));
        assert!(!valid_email("a b@c"));
        assert!(!valid_email(&format!("{}@b", "a".repeat(320))));
    }
}
