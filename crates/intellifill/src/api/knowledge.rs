//! Knowledge sources of an organization: list, create, read, update, delete and full-text search.
//!
//! Every query filters by the organization explicitly (so the page index is used) and RLS filters it again;
//! a foreign or unknown id is a plain 404.

use axum::Json;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::Row;
use tokio_postgres::types::Type;
use uuid::Uuid;

use axum::response::{IntoResponse, Response};

use super::pagination::{Page, PageInput, PageQuery, read_org_page};
use crate::audit::in_tx::AuditedWrite;
use crate::error::AppError;
use crate::http::extract::{ApiJson, ApiQuery, PathIds, Validate};
use crate::org::{Member, OrgOpen, OrgTx, Viewer};

pub(crate) const MAX_TITLE: usize = 500;
pub(crate) const MAX_CONTENT: usize = 1_000_000;
/// The length of a list excerpt, in characters; migration 0010's trigger stores excerpts of this length.
pub(crate) const EXCERPT_CHARS: i32 = 280;

/// A knowledge source.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Knowledge {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub created_by: Option<Uuid>,
    pub title: String,
    pub content: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A knowledge source in a list: the content is shortened to an excerpt.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct KnowledgeSummary {
    pub id: Uuid,
    pub title: String,
    pub excerpt: String,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Search relevance (search results only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rank: Option<f32>,
}

const FULL: &str = "id, organization_id, created_by, title, content, created_at, updated_at";

fn full(row: &Row) -> Knowledge {
    Knowledge {
        id: row.get(0),
        organization_id: row.get(1),
        created_by: row.get(2),
        title: row.get(3),
        content: row.get(4),
        created_at: row.get(5),
        updated_at: row.get(6),
    }
}

fn summary(row: &Row) -> KnowledgeSummary {
    KnowledgeSummary {
        id: row.get(0),
        title: row.get(1),
        excerpt: row.get(2),
        created_by: row.get(3),
        created_at: row.get(4),
        updated_at: row.get(5),
        rank: row.try_get(6).ok(),
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateKnowledge {
    #[schema(min_length = 1, max_length = 500, pattern = "[^ \t\n\r]")]
    pub title: String,
    #[schema(max_length = 1_000_000)]
    pub content: String,
}

fn check_title(title: &mut String) -> Result<(), AppError> {
    *title = crate::http::extract::text_field("title", title, MAX_TITLE)?;
    Ok(())
}

fn check_content(content: &str) -> Result<(), AppError> {
    if content.chars().count() > MAX_CONTENT {
        return Err(AppError::validation("content", format!("content must be at most {MAX_CONTENT} characters")));
    }
    Ok(())
}

impl Validate for CreateKnowledge {
    fn validate(&mut self) -> Result<(), AppError> {
        check_title(&mut self.title)?;
        check_content(&self.content)
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateKnowledge {
    #[schema(min_length = 1, max_length = 500, pattern = "[^ \t\n\r]")]
    pub title: Option<String>,
    #[schema(max_length = 1_000_000)]
    pub content: Option<String>,
}

impl Validate for UpdateKnowledge {
    fn validate(&mut self) -> Result<(), AppError> {
        if let Some(title) = &mut self.title {
            check_title(title)?;
        }
        if let Some(content) = &self.content {
            check_content(content)?;
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct SearchQuery {
    /// Search terms (web-search syntax: words, "phrases", -exclusions, or).
    #[param(required = true, nullable = false, min_length = 1, max_length = 200, pattern = "[^ \t\n\r]")]
    pub q: Option<String>,
    /// Result count, 1 to 100 (default 20).
    #[param(nullable = false, minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
}

impl Validate for SearchQuery {
    fn validate(&mut self) -> Result<(), AppError> {
        self.q = Some(crate::http::extract::text_field("q", self.q.as_deref().unwrap_or_default(), 200)?);
        if let Some(limit) = self.limit
            && !(1..=super::pagination::MAX_LIMIT).contains(&limit)
        {
            return Err(AppError::validation("limit", "limit must be between 1 and 100"));
        }
        Ok(())
    }
}

/// List the organization's knowledge sources, newest first.
#[utoipa::path(get, path = "/api/organizations/{orgId}/knowledge", tag = "knowledge",
    params(("orgId" = Uuid, Path), PageQuery),
    responses((status = 200, body = Page<KnowledgeSummary>)),
    extensions(("x-audit-action" = json!("knowledge.list")), ("x-audit-entity" = json!("knowledge_source")), ("x-rate-limit" = json!("user")), ("x-min-role" = json!("VIEWER"))),
    security(("bearer" = [])))]
pub(crate) async fn list(open: OrgOpen<Viewer>, page: PageInput) -> Result<Json<Page<KnowledgeSummary>>, Response> {
    read_org_page(
        open,
        page,
        "SELECT id, title, coalesce(excerpt, left(content, $2)), created_by, created_at, updated_at
           FROM knowledge_sources
          WHERE organization_id = $1 AND {after}
          ORDER BY created_at DESC, id DESC
          LIMIT {limit}",
        "(created_at, id) < ($3, $4)",
        &[(&EXCERPT_CHARS, Type::INT4)],
        summary,
        |k: &KnowledgeSummary| (k.created_at, k.id),
    )
    .await
}

/// Create a knowledge source (MEMBER or above).
#[utoipa::path(post, path = "/api/organizations/{orgId}/knowledge", tag = "knowledge",
    params(("orgId" = Uuid, Path)), request_body = CreateKnowledge,
    responses((status = 201, body = Knowledge, links(
            ("GetKnowledge" = (operation_ref = super::links::GET_KNOWLEDGE, parameters(("path.orgId" = "$response.body#/organizationId"), ("path.id" = "$response.body#/id")))),
            ("UpdateKnowledge" = (operation_ref = super::links::UPDATE_KNOWLEDGE, parameters(("path.orgId" = "$response.body#/organizationId"), ("path.id" = "$response.body#/id")))),
            ("DeleteKnowledge" = (operation_ref = super::links::DELETE_KNOWLEDGE, parameters(("path.orgId" = "$response.body#/organizationId"), ("path.id" = "$response.body#/id"))))))),
    extensions(("x-audit-action" = json!("knowledge.create")), ("x-audit-entity" = json!("knowledge_source")), ("x-rate-limit" = json!("org-write")), ("x-min-role" = json!("MEMBER"))),
    security(("bearer" = [])))]
pub(crate) async fn create(
    ctx: OrgTx<Member>,
    audit: crate::audit::AuditSlot,
    write: AuditedWrite,
    ApiJson(body): ApiJson<CreateKnowledge>,
) -> Result<(StatusCode, Json<Knowledge>), AppError> {
    let row = ctx
        .tx
        .query_one(
            &format!(
                "INSERT INTO knowledge_sources (organization_id, created_by, title, content)
                 VALUES ($1, current_user_id(), $2, $3) RETURNING {FULL}"
            ),
            &[(&ctx.org.id, Type::UUID), (&body.title, Type::TEXT), (&body.content, Type::TEXT)],
        )
        .await?;
    let created = full(&row);
    audit.update(|n| n.entity_id = Some(created.id.to_string()));
    write.commit(ctx.tx, StatusCode::CREATED).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Read one knowledge source.
#[utoipa::path(get, path = "/api/organizations/{orgId}/knowledge/{id}", tag = "knowledge",
    params(("orgId" = Uuid, Path), ("id" = Uuid, Path)),
    responses((status = 200, body = Knowledge)),
    extensions(("x-audit-action" = json!("knowledge.read")), ("x-audit-entity" = json!("knowledge_source")), ("x-rate-limit" = json!("user")), ("x-min-role" = json!("VIEWER"))),
    security(("bearer" = [])))]
pub(crate) async fn get(open: OrgOpen<Viewer>, ids: PathIds) -> Result<Json<Knowledge>, Response> {
    let id = match ids.uuid("id") {
        Ok(id) => id,
        Err(e) => return Err(open.refuse_input(e).await),
    };
    let org_id = open.path_org().map_err(IntoResponse::into_response)?;
    let sql = format!("SELECT {FULL} FROM knowledge_sources WHERE id = $1 AND organization_id = $2");
    // The whole transaction in one round trip: the row is read with the caller's check and COMMIT.
    let (ctx, rows) = open.read_with((&sql, &[(&id, Type::UUID), (&org_id, Type::UUID)])).await?;
    let rows = rows.expect("the first query was sent").map_err(IntoResponse::into_response)?;
    let row = rows.first().ok_or_else(|| AppError::not_found("knowledge source").into_response())?;
    let found = full(row);
    ctx.tx.commit().await.map_err(IntoResponse::into_response)?;
    Ok(Json(found))
}

/// Change the title and/or content (MEMBER or above).
#[utoipa::path(patch, path = "/api/organizations/{orgId}/knowledge/{id}", tag = "knowledge",
    params(("orgId" = Uuid, Path), ("id" = Uuid, Path)), request_body = UpdateKnowledge,
    responses((status = 200, body = Knowledge)),
    extensions(("x-audit-action" = json!("knowledge.update")), ("x-audit-entity" = json!("knowledge_source")), ("x-rate-limit" = json!("org-write")), ("x-min-role" = json!("MEMBER"))),
    security(("bearer" = [])))]
pub(crate) async fn update(
    ctx: OrgTx<Member>,
    ids: PathIds,
    write: AuditedWrite,
    ApiJson(body): ApiJson<UpdateKnowledge>,
) -> Result<Json<Knowledge>, AppError> {
    let id = ids.uuid("id")?;
    let row = ctx
        .tx
        .query_opt(
            &format!(
                "UPDATE knowledge_sources SET title = coalesce($3, title), content = coalesce($4, content)
                  WHERE id = $1 AND organization_id = $2 RETURNING {FULL}"
            ),
            &[(&id, Type::UUID), (&ctx.org.id, Type::UUID), (&body.title, Type::TEXT), (&body.content, Type::TEXT)],
        )
        .await?
        .ok_or_else(|| AppError::not_found("knowledge source"))?;
    write.commit(ctx.tx, StatusCode::OK).await?;
    Ok(Json(full(&row)))
}

/// Delete a knowledge source (MEMBER or above).
#[utoipa::path(delete, path = "/api/organizations/{orgId}/knowledge/{id}", tag = "knowledge",
    params(("orgId" = Uuid, Path), ("id" = Uuid, Path)),
    responses((status = 204)),
    extensions(("x-audit-action" = json!("knowledge.delete")), ("x-audit-entity" = json!("knowledge_source")), ("x-rate-limit" = json!("org-write")), ("x-min-role" = json!("MEMBER"))),
    security(("bearer" = [])))]
pub(crate) async fn delete(ctx: OrgTx<Member>, ids: PathIds, write: AuditedWrite) -> Result<StatusCode, AppError> {
    let id = ids.uuid("id")?;
    ctx.tx
        .query_opt(
            "DELETE FROM knowledge_sources WHERE id = $1 AND organization_id = $2 RETURNING id",
            &[(&id, Type::UUID), (&ctx.org.id, Type::UUID)],
        )
        .await?
        .ok_or_else(|| AppError::not_found("knowledge source"))?;
    write.commit(ctx.tx, StatusCode::NO_CONTENT).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Full-text search (Postgres `websearch_to_tsquery`), best matches first.
#[utoipa::path(get, path = "/api/organizations/{orgId}/knowledge/search", tag = "knowledge",
    params(("orgId" = Uuid, Path), SearchQuery),
    responses((status = 200, body = Page<KnowledgeSummary>)),
    extensions(("x-audit-action" = json!("knowledge.search")), ("x-audit-entity" = json!("knowledge_source")), ("x-rate-limit" = json!("org-read")), ("x-min-role" = json!("VIEWER"))),
    security(("bearer" = [])))]
pub(crate) async fn search(
    ctx: OrgTx<Viewer>,
    ApiQuery(q): ApiQuery<SearchQuery>,
) -> Result<Json<Page<KnowledgeSummary>>, AppError> {
    let terms = q.q.as_deref().unwrap_or_default();
    let limit = q.limit.unwrap_or(super::pagination::DEFAULT_LIMIT);
    let rows = ctx
        .tx
        .query(
            "SELECT k.id, k.title, coalesce(k.excerpt, left(k.content, $4)), k.created_by, k.created_at, k.updated_at,
                    ts_rank(k.search_vector, query) AS rank
               FROM knowledge_sources k, websearch_to_tsquery('english', $1) query
              WHERE k.organization_id = $2 AND k.search_vector @@ query
              ORDER BY rank DESC, k.created_at DESC, k.id DESC
              LIMIT $3",
            &[(&terms, Type::TEXT), (&ctx.org.id, Type::UUID), (&limit, Type::INT8), (&EXCERPT_CHARS, Type::INT4)],
        )
        .await?;
    ctx.tx.commit().await?;
    Ok(Json(Page { data: rows.iter().map(summary).collect(), next_cursor: None }))
}
