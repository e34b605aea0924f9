//! Organizations: mine, create (the creator becomes OWNER and the new org becomes the current one; at most
//! `ORG_MAX_PER_USER` owned per user), read.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::Row;
use tokio_postgres::types::Type;
use uuid::Uuid;

use super::pagination::{Page, PageQuery, fetch_page};
use crate::db::Tx;
use crate::error::{AppError, ErrorCode};
use crate::http::extract::{ApiJson, ApiQuery, Validate};
use crate::org::{OrgRole, OrgTx, Viewer};
use crate::principal::UserTx;
use crate::state::AppState;

/// An organization as seen by one of its members.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Organization {
    pub id: Uuid,
    pub name: String,
    pub slug: String,
    /// ACTIVE | INACTIVE | SUSPENDED
    pub status: String,
    /// The caller's role in it.
    pub role: OrgRole,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Active members (single-organization reads only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member_count: Option<i64>,
    /// Used as the keyset of the list.
    #[serde(skip)]
    pub joined_key: DateTime<Utc>,
}

const COLUMNS: &str = "o.id, o.name, o.slug, o.status, m.role, o.created_at, o.updated_at, m.created_at";

fn organization(row: &Row) -> Organization {
    Organization {
        id: row.get(0),
        name: row.get(1),
        slug: row.get(2),
        status: row.get(3),
        role: OrgRole::parse(row.get(4)).unwrap_or(OrgRole::Viewer),
        created_at: row.get(5),
        updated_at: row.get(6),
        joined_key: row.get(7),
        member_count: row.try_get(8).ok(),
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateOrganization {
    #[schema(min_length = 1, max_length = 200, pattern = "[^ \t\n\r]")]
    pub name: String,
    /// Lower-case letters, digits and single hyphens; derived from the name when absent.
    #[schema(min_length = 1, max_length = 64, pattern = "^[a-z0-9]+(-[a-z0-9]+)*$")]
    pub slug: Option<String>,
}

impl Validate for CreateOrganization {
    fn validate(&mut self) -> Result<(), AppError> {
        self.name = crate::http::extract::text_field("name", &self.name, 200)?;
        let slug = match self.slug.take() {
            Some(s) => s,
            // A name with no letter or digit to derive from: a generated slug.
            None => Some(slugify(&self.name))
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| format!("org-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])),
        };
        if !valid_slug(&slug) {
            return Err(AppError::validation(
                "slug",
                "slug must be 1 to 64 lower-case letters or digits, separated by single hyphens",
            ));
        }
        self.slug = Some(slug);
        Ok(())
    }
}

pub(crate) fn valid_slug(slug: &str) -> bool {
    !slug.is_empty()
        && slug.len() <= 64
        && slug
            .split('-')
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
}

pub(crate) fn slugify(name: &str) -> String {
    let mut slug = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let mut slug: String = slug.trim_end_matches('-').chars().take(64).collect();
    while slug.ends_with('-') {
        slug.pop();
    }
    slug
}

/// The organizations the caller is an active member of.
#[utoipa::path(get, path = "/api/organizations", tag = "organizations", params(PageQuery),
    responses((status = 200, body = Page<Organization>)),
    extensions(("x-audit-action" = json!("organizations.list")), ("x-audit-entity" = json!("organization")), ("x-rate-limit" = json!("user"))),
    security(("bearer" = [])))]
pub(crate) async fn list(
    ctx: UserTx,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> Result<Json<Page<Organization>>, AppError> {
    let result = fetch_page(
        &ctx.tx,
        &format!(
            "SELECT {COLUMNS} FROM organization_memberships m
               JOIN organizations o ON o.id = m.organization_id
              WHERE m.user_id = current_user_id() AND m.status = 'ACTIVE'
                AND {{after}}
              ORDER BY m.created_at, o.id
              LIMIT {{limit}}"
        ),
        "(m.created_at, o.id) > ($1, $2)",
        &[],
        page.keyset(),
        organization,
        |o: &Organization| (o.joined_key, o.id),
    )
    .await?;
    ctx.tx.commit().await?;
    Ok(Json(result))
}

/// Create an organization; the caller becomes its OWNER and it becomes the current organization.
#[utoipa::path(post, path = "/api/organizations", tag = "organizations", request_body = CreateOrganization,
    responses((status = 201, body = Organization, links(
            ("GetOrganization" = (operation_ref = super::links::GET_ORGANIZATION, parameters(("path.orgId" = "$response.body#/id")))),
            ("ListMembers" = (operation_ref = super::links::LIST_MEMBERS, parameters(("path.orgId" = "$response.body#/id")))),
            ("ListKnowledge" = (operation_ref = super::links::LIST_KNOWLEDGE, parameters(("path.orgId" = "$response.body#/id")))),
            ("CreateKnowledge" = (operation_ref = super::links::CREATE_KNOWLEDGE, parameters(("path.orgId" = "$response.body#/id")))),
            ("ListInvitations" = (operation_ref = super::links::LIST_INVITATIONS, parameters(("path.orgId" = "$response.body#/id")))),
            ("CreateInvitation" = (operation_ref = super::links::CREATE_INVITATION, parameters(("path.orgId" = "$response.body#/id")))),
            ("OrganizationAudit" = (operation_ref = super::links::ORG_AUDIT, parameters(("path.orgId" = "$response.body#/id")))))),
        (status = 409, body = crate::error::ErrorBody)),
    extensions(("x-audit-action" = json!("organizations.create")), ("x-audit-entity" = json!("organization")), ("x-rate-limit" = json!("user"))),
    security(("bearer" = [])))]
pub(crate) async fn create(
    State(state): State<AppState>,
    ctx: UserTx,
    audit: crate::audit::AuditSlot,
    write: crate::audit::in_tx::AuditedWrite,
    ApiJson(body): ApiJson<CreateOrganization>,
) -> Result<(StatusCode, Json<Organization>), AppError> {
    let slug = body.slug.unwrap_or_default();
    // The caller's row serialises the quota check of concurrent creations.
    ctx.tx.query("SELECT 1 FROM users WHERE id = current_user_id() FOR UPDATE", &[]).await?;
    let owned: i64 = ctx
        .tx
        .query_one(
            "SELECT count(*) FROM organization_memberships
              WHERE user_id = current_user_id() AND role = 'OWNER' AND status = 'ACTIVE'",
            &[],
        )
        .await?
        .get(0);
    let max = state.config.orgs.max_per_user;
    if owned >= max {
        return Err(AppError::new(
            ErrorCode::OrgQuotaExceeded,
            format!("you already own {max} organizations, the most one account may own"),
        ));
    }
    let id: Uuid = ctx
        .tx
        .query_one("SELECT create_organization($1, $2)", &[(&body.name, Type::TEXT), (&slug, Type::TEXT)])
        .await?
        .get(0);
    let created = load_organization(&ctx.tx, id).await?;
    audit.update(|n| {
        n.entity_id = Some(id.to_string());
        n.organization_id = Some(id);
    });
    write.commit(ctx.tx, StatusCode::CREATED).await?;
    tracing::info!(org_id = %id, user_id = %ctx.user.id, "organization created");
    Ok((StatusCode::CREATED, Json(created)))
}

/// The organization `id` as the caller (a member of it) sees it.
pub(crate) async fn load_organization(tx: &Tx, id: Uuid) -> Result<Organization, AppError> {
    let row = tx
        .query_one(
            &format!(
                "SELECT {COLUMNS} FROM organizations o
                   JOIN organization_memberships m ON m.organization_id = o.id AND m.user_id = current_user_id()
                  WHERE o.id = $1"
            ),
            &[(&id, Type::UUID)],
        )
        .await?;
    Ok(organization(&row))
}

/// One organization the caller is a member of.
#[utoipa::path(get, path = "/api/organizations/{orgId}", tag = "organizations", params(("orgId" = Uuid, Path)),
    responses((status = 200, body = Organization)),
    extensions(("x-audit-action" = json!("organizations.read")), ("x-audit-entity" = json!("organization")), ("x-rate-limit" = json!("user")), ("x-min-role" = json!("VIEWER"))),
    security(("bearer" = [])))]
pub(crate) async fn get(ctx: OrgTx<Viewer>) -> Result<Json<Organization>, AppError> {
    let row = ctx
        .tx
        .query_one(
            &format!(
                "SELECT {COLUMNS},
                        (SELECT count(*) FROM organization_memberships c
                          WHERE c.organization_id = o.id AND c.status = 'ACTIVE')
                   FROM organizations o
                   JOIN organization_memberships m ON m.organization_id = o.id AND m.user_id = current_user_id()
                  WHERE o.id = $1"
            ),
            &[(&ctx.org.id, Type::UUID)],
        )
        .await?;
    ctx.tx.commit().await?;
    Ok(Json(organization(&row)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_derived_and_checked() {
        assert_eq!(slugify("  Acme Corp. (EU) "), "acme-corp-eu");
        assert_eq!(slugify("Ünïcode ★ only"), "n-code-only");
        assert_eq!(slugify("***"), "");
        assert!(valid_slug("acme-2"));
        assert!(!valid_slug("acme--2"));
        assert!(!valid_slug("-acme"));
        assert!(!valid_slug("Acme"));
        assert!(!valid_slug(&"a".repeat(65)));
    }
}
