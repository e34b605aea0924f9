//! Reading the audit log: an organization's OWNER/ADMIN sees its rows, a platform ADMIN sees every row.
//!
//! The runtime role may only INSERT and SELECT `audit_log` (append-only), and the SELECT policies decide who
//! sees what; these handlers add the filters and keyset pagination (newest first).

use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::Row;
use tokio_postgres::types::Type;
use uuid::Uuid;

use super::pagination::{Keyset, Page, fetch_page};
use crate::db::{Param, Tx};
use crate::error::{AppError, ErrorCode};
use crate::http::extract::{ApiQuery, Validate};
use crate::org::{Admin, OrgTx};
use crate::principal::{PlatformRole, UserTx};

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct AuditQuery {
    /// Only this user's events.
    #[param(nullable = false)]
    pub user_id: Option<Uuid>,
    /// Only this action (`knowledge.create`), or a family with a trailing `*` (`knowledge.*`, `security.*`).
    #[param(nullable = false, min_length = 1, max_length = 64, pattern = "^[a-z._]*\\*?$")]
    pub action: Option<String>,
    /// From this instant (RFC 3339), inclusive.
    #[param(nullable = false)]
    pub from: Option<DateTime<Utc>>,
    /// Until this instant (RFC 3339), exclusive (a window that ends before it starts is empty).
    #[param(nullable = false)]
    pub to: Option<DateTime<Utc>>,
    /// Page size, 1 to 100 (default 50).
    #[param(nullable = false, minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// The `nextCursor` of the previous page.
    #[param(nullable = false, pattern = "^[0-9]{1,17}_[0-9a-f]{32}$")]
    pub cursor: Option<String>,
    #[serde(skip)]
    #[param(ignore)]
    after: Option<(DateTime<Utc>, Uuid)>,
}

impl Validate for AuditQuery {
    fn validate(&mut self) -> Result<(), AppError> {
        self.after = super::pagination::checked(self.limit, self.cursor.as_deref())?;
        if let Some(action) = &self.action {
            let ok = !action.is_empty()
                && action.len() <= 64
                && action.trim_end_matches('*').bytes().all(|b| b.is_ascii_lowercase() || b == b'.' || b == b'_')
                && action.find('*').is_none_or(|i| i == action.len() - 1);
            if !ok {
                return Err(AppError::validation("action", "action is like knowledge.create or knowledge.*"));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AuditEntry {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub user_id: Option<Uuid>,
    pub organization_id: Option<Uuid>,
    pub action: String,
    pub entity_type: Option<String>,
    pub entity_id: Option<String>,
    pub request_id: Option<String>,
    pub method: Option<String>,
    pub path: Option<String>,
    pub status: Option<i32>,
    pub duration_ms: Option<i32>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub severity: Option<String>,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
}

fn entry(r: &Row) -> AuditEntry {
    AuditEntry {
        id: r.get(0),
        created_at: r.get(1),
        user_id: r.get(2),
        organization_id: r.get(3),
        action: r.get(4),
        entity_type: r.get(5),
        entity_id: r.get(6),
        request_id: r.get(7),
        method: r.get(8),
        path: r.get(9),
        status: r.get(10),
        duration_ms: r.get(11),
        ip: r.get(12),
        user_agent: r.get(13),
        severity: r.get(14),
        metadata: r.get(15),
    }
}

const DEFAULT_LIMIT: i64 = 50;

/// Action families `audit_retention_class` (migration 0006) always puts in the `security` class.
const SECURITY_ACTION_PREFIXES: [&str; 4] = ["auth.", "security.", "user.", "audit."];

/// The page query for the filters `q` sets (and `org`): only the conditions of present filters, so that each
/// combination is its own statement whose plan, custom or generic, uses the matching index and prunes
/// partitions by time. Returns the [`super::pagination::PageSql`] template and its condition after a cursor,
/// whose keyset parameters come last; `created_at <= cursor` is there so that the cursor bounds the time index
/// scan and prunes later months (a row comparison does neither).
fn page_query(org: Option<Uuid>, q: &AuditQuery) -> (String, String) {
    let mut conditions = Vec::new();
    let mut n = 0;
    let mut next = || {
        n += 1;
        n
    };
    if org.is_some() {
        conditions.push(format!("organization_id = ${}", next()));
    }
    if q.user_id.is_some() {
        conditions.push(format!("user_id = ${}", next()));
    }
    if let Some(action) = &q.action {
        conditions.push(format!("action LIKE ${}", next()));
        // These actions are always of the security class (`audit_retention_class`, migration 0006): only its
        // partitions are read. Without it, each month of the other classes is scanned to its end for a row
        // that cannot be there (a page of `security.*` over 10M rows: seconds instead of milliseconds).
        if SECURITY_ACTION_PREFIXES.iter().any(|p| action.starts_with(p)) {
            conditions.push("retention_class = 'security'".to_owned());
        }
    }
    if q.from.is_some() {
        conditions.push(format!("created_at >= ${}", next()));
    }
    if q.to.is_some() {
        conditions.push(format!("created_at < ${}", next()));
    }
    let (after_ts, after_id) = (next(), next());
    conditions.push("{after}".to_owned());
    let sql = format!(
        "SELECT id, created_at, user_id, organization_id, action, entity_type, entity_id, request_id, method,
                path, status, duration_ms, host(ip), user_agent, severity, metadata
           FROM audit_log
          WHERE {}
          ORDER BY created_at DESC, id DESC
          LIMIT {{limit}}",
        conditions.join("\n            AND ")
    );
    (sql, format!("created_at <= ${after_ts} AND (created_at, id) < (${after_ts}, ${after_id})"))
}

async fn page(tx: &Tx, org: Option<Uuid>, q: &AuditQuery) -> Result<Page<AuditEntry>, AppError> {
    let action = q.action.as_deref().map(|a| match a.strip_suffix('*') {
        Some(prefix) => format!("{}%", prefix.replace('_', "\\_")),
        None => a.replace('_', "\\_"),
    });
    let (sql, after) = page_query(org, q);
    // An organization's page is planned with its values, also when statements are named
    // (`DATABASE_STATEMENTS=prepared`): how many rows an organization has in each partition varies by orders of
    // magnitude, and the generic plan, made for the average organization, walks whole partitions by time for one
    // that has few rows there (docs/PERFORMANCE.md "Audit at 10M rows"). The admin pages keep generic plans:
    // they were as fast, and planning 51 partitions per call costs ~4 ms.
    if org.is_some() {
        tx.query("SELECT set_config('plan_cache_mode', 'force_custom_plan', true)", &[]).await?;
    }
    let mut params: Vec<Param<'_>> = Vec::with_capacity(5);
    if let Some(org) = &org {
        params.push((org, Type::UUID));
    }
    if let Some(user) = &q.user_id {
        params.push((user, Type::UUID));
    }
    if let Some(action) = &action {
        params.push((action, Type::TEXT));
    }
    if let Some(from) = &q.from {
        params.push((from, Type::TIMESTAMPTZ));
    }
    if let Some(to) = &q.to {
        params.push((to, Type::TIMESTAMPTZ));
    }
    fetch_page(
        tx,
        &sql,
        &after,
        &params,
        Keyset { after: q.after, limit: q.limit.unwrap_or(DEFAULT_LIMIT) },
        entry,
        |e: &AuditEntry| (e.created_at, e.id),
    )
    .await
}

/// The organization's audit log, newest first (OWNER or ADMIN).
#[utoipa::path(get, path = "/api/organizations/{orgId}/audit", tag = "audit",
    params(("orgId" = Uuid, Path), AuditQuery),
    responses((status = 200, body = Page<AuditEntry>)),
    extensions(("x-audit-action" = json!("audit.list")), ("x-audit-entity" = json!("audit_log")), ("x-rate-limit" = json!("user")), ("x-min-role" = json!("ADMIN"))),
    security(("bearer" = [])))]
pub(crate) async fn org_log(
    ctx: OrgTx<Admin>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<Page<AuditEntry>>, AppError> {
    let result = page(&ctx.tx, Some(ctx.org.id), &q).await?;
    ctx.tx.commit().await?;
    Ok(Json(result))
}

/// Every organization's audit log, newest first (platform ADMIN).
#[utoipa::path(get, path = "/api/admin/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = Page<AuditEntry>)),
    extensions(("x-audit-action" = json!("audit.list_all")), ("x-audit-entity" = json!("audit_log")), ("x-rate-limit" = json!("user")), ("x-min-role" = json!("PLATFORM_ADMIN"))),
    security(("bearer" = [])))]
pub(crate) async fn all(ctx: UserTx, ApiQuery(q): ApiQuery<AuditQuery>) -> Result<Json<Page<AuditEntry>>, AppError> {
    if ctx.user.role != PlatformRole::Admin {
        return Err(AppError::new(ErrorCode::Forbidden, "platform administrators only"));
    }
    let result = page(&ctx.tx, None, &q).await?;
    ctx.tx.commit().await?;
    Ok(Json(result))
}
