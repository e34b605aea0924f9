//! Keyset pagination with a bounded page size.
//!
//! Lists are ordered by `(created_at, id)` and continue after a cursor (`<microseconds>_<id as hex>` of the
//! last row's key; opaque to clients), so a page costs the same at any depth and concurrent inserts never shift
//! or duplicate rows. Every string of the cursor's declared pattern (`^[0-9]{1,17}_[0-9a-f]{32}$`) decodes: at
//! most 17 digits of microseconds stay inside the years Postgres holds, so a client that sends what the document
//! allows never gets a cursor error.

use axum::Json;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::Row;
use tokio_postgres::types::Type;
use uuid::Uuid;

use crate::db::{Param, Statement, Tx};
use crate::error::AppError;
use crate::http::extract::{ApiQuery, Validate};
use crate::org::{MinRole, OrgOpen};

pub(crate) const DEFAULT_LIMIT: i64 = 20;
pub(crate) const MAX_LIMIT: i64 = 100;

/// `?limit=&cursor=`
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct PageQuery {
    /// Page size, 1 to 100 (default 20).
    #[param(nullable = false, minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// The `nextCursor` of the previous page.
    #[param(nullable = false, pattern = "^[0-9]{1,17}_[0-9a-f]{32}$")]
    pub cursor: Option<String>,
    #[serde(skip)]
    #[param(ignore)]
    pub after: Option<(DateTime<Utc>, Uuid)>,
}

impl Validate for PageQuery {
    fn validate(&mut self) -> Result<(), AppError> {
        self.after = checked(self.limit, self.cursor.as_deref())?;
        Ok(())
    }
}

/// A page's `limit` (1 to [`MAX_LIMIT`]) and `cursor` checked: the key to continue after.
pub(crate) fn checked(limit: Option<i64>, cursor: Option<&str>) -> Result<Option<(DateTime<Utc>, Uuid)>, AppError> {
    if let Some(limit) = limit
        && !(1..=MAX_LIMIT).contains(&limit)
    {
        return Err(AppError::validation("limit", format!("limit must be between 1 and {MAX_LIMIT}")));
    }
    cursor.map(|c| decode_cursor(c).ok_or_else(|| AppError::validation("cursor", "invalid cursor"))).transpose()
}

impl PageQuery {
    pub(crate) fn limit(&self) -> i64 {
        self.limit.unwrap_or(DEFAULT_LIMIT)
    }

    pub(crate) fn keyset(&self) -> Keyset {
        Keyset { after: self.after, limit: self.limit() }
    }
}

/// Where a page starts (after this key; `None` for the first page) and how many rows it holds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Keyset {
    pub(crate) after: Option<(DateTime<Utc>, Uuid)>,
    pub(crate) limit: i64,
}

/// A keyset page statement, ready to run: the first page and the pages after a cursor are different
/// statements, and the `LIMIT` is a literal, so that the generic plan of a named statement is the plan a custom
/// one would be. A generic plan cannot use `$3 IS NULL OR (created_at, id) < ($3, $4)` as an index condition
/// (only as a filter), and with `LIMIT $n` it assumes a tenth of the rows are fetched (Postgres's
/// `preprocess_limit`), which can turn the top-N index scan into a sort of all of an organization's rows.
/// The limit is a checked integer (2 to 101 rows fetched), so each query has at most 200 statement texts.
pub(crate) struct PageSql<'p> {
    sql: String,
    params: Vec<Param<'p>>,
    limit: i64,
}

impl<'p> PageSql<'p> {
    /// `template` holds `{after}` where the keyset condition goes and `{limit}` for the `LIMIT`'s count.
    /// With `n = params.len()`, `after` (the condition on pages after a cursor) refers to `$n+1` (the key's
    /// `timestamptz`) and `$n+2` (its `uuid`); the first page has `TRUE` there and no key parameters. The
    /// statement fetches one row more than the page, which only says that there is a next page.
    pub(crate) fn new(template: &str, after: &str, params: &[Param<'p>], keyset: &'p Keyset) -> PageSql<'p> {
        let mut all = params.to_vec();
        let condition = match &keyset.after {
            Some((ts, id)) => {
                all.push((ts, Type::TIMESTAMPTZ));
                all.push((id, Type::UUID));
                after
            }
            None => "TRUE",
        };
        let sql = template.replace("{after}", condition).replace("{limit}", &(keyset.limit + 1).to_string());
        PageSql { sql, params: all, limit: keyset.limit }
    }

    pub(crate) fn statement(&self) -> Statement<'_, 'p> {
        (&self.sql, &self.params)
    }

    /// The statement's rows as a [`Page`]; `key` gives the `(created_at, id)` of an item, in the order the
    /// query sorts by.
    pub(crate) fn page<T>(
        &self,
        rows: &[Row],
        item: impl Fn(&Row) -> T,
        key: impl Fn(&T) -> (DateTime<Utc>, Uuid),
    ) -> Page<T> {
        Page::from_items(rows.iter().map(item).collect(), self.limit, key)
    }
}

/// Runs the [`PageSql`] of `template`, `after`, `params` and `keyset` and returns its rows as a [`Page`].
pub(crate) async fn fetch_page<T>(
    tx: &Tx,
    template: &str,
    after: &str,
    params: &[Param<'_>],
    keyset: Keyset,
    item: impl Fn(&Row) -> T,
    key: impl Fn(&T) -> (DateTime<Utc>, Uuid),
) -> Result<Page<T>, AppError> {
    let query = PageSql::new(template, after, params, &keyset);
    let (sql, params) = query.statement();
    let rows = tx.query(sql, params).await?;
    Ok(query.page(&rows, item, key))
}

/// A list's query string, its error kept to be answered after the caller's check ([`read_org_page`]).
pub(crate) type PageInput = Result<ApiQuery<PageQuery>, AppError>;

/// An organization's list in one round trip ([`OrgOpen::read_with`]): the [`PageSql`] of `template` and `after`
/// goes in the opening pipeline, with the organization of the path as `$1` and `params` after it, and its rows
/// come back as a [`Page`] once the caller is checked. A bad query string (`page`) is answered after the
/// caller's check, as on every route.
pub(crate) async fn read_org_page<R: MinRole, T>(
    open: OrgOpen<R>,
    page: PageInput,
    template: &str,
    after: &str,
    params: &[Param<'_>],
    item: impl Fn(&Row) -> T,
    key: impl Fn(&T) -> (DateTime<Utc>, Uuid),
) -> Result<Json<Page<T>>, Response> {
    let page = match page {
        Ok(ApiQuery(page)) => page,
        Err(e) => return Err(open.refuse_input(e).await),
    };
    let org_id = open.path_org().map_err(IntoResponse::into_response)?;
    let keyset = page.keyset();
    let mut all: Vec<Param<'_>> = vec![(&org_id, Type::UUID)];
    all.extend_from_slice(params);
    let query = PageSql::new(template, after, &all, &keyset);
    let (ctx, rows) = open.read_with(query.statement()).await?;
    let rows = rows.expect("the first query was sent").map_err(IntoResponse::into_response)?;
    let result = query.page(&rows, item, key);
    ctx.tx.commit().await.map_err(IntoResponse::into_response)?;
    Ok(Json(result))
}

/// A page of results.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Page<T> {
    pub data: Vec<T>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// `items` were fetched with `limit + 1`: the extra row only says there is more.
    pub(crate) fn from_items(mut items: Vec<T>, limit: i64, key: impl Fn(&T) -> (DateTime<Utc>, Uuid)) -> Page<T> {
        let more = items.len() as i64 > limit;
        items.truncate(limit as usize);
        let next_cursor = if more { items.last().map(|last| encode_cursor(key(last))) } else { None };
        Page { data: items, next_cursor }
    }
}

pub(crate) fn encode_cursor((ts, id): (DateTime<Utc>, Uuid)) -> String {
    format!("{}_{}", ts.timestamp_micros(), id.simple())
}

/// The key a cursor encodes; `None` for anything [`encode_cursor`] cannot have produced.
pub(crate) fn decode_cursor(cursor: &str) -> Option<(DateTime<Utc>, Uuid)> {
    let (micros, id) = cursor.split_once('_')?;
    let valid = (1..=17).contains(&micros.len())
        && micros.bytes().all(|b| b.is_ascii_digit())
        && id.len() == 32
        && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !valid {
        return None;
    }
    let at = DateTime::from_timestamp_micros(micros.parse().ok()?).filter(|t| (1..=9999).contains(&t.year()))?;
    Some((at, Uuid::parse_str(id).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_garbage_is_rejected() {
        let key = (DateTime::from_timestamp_micros(1_700_000_000_123_456).expect("ts"), Uuid::new_v4());
        assert_eq!(decode_cursor(&encode_cursor(key)), Some(key));
        assert_eq!(decode_cursor("not-a-cursor"), None);
        let forged = |micros: &str| format!("{micros}_{}", Uuid::new_v4().simple());
        assert_eq!(decode_cursor(&forged("-8000000000000000000")), None, "negative");
        assert_eq!(decode_cursor(&forged("9000000000000000000")), None, "year 287,000");
        assert!(decode_cursor(&forged("99999999999999999")).is_some(), "every 17-digit time decodes");
        assert!(decode_cursor(&forged("0")).is_some());
        assert_eq!(decode_cursor(&format!("1_{}", Uuid::new_v4().hyphenated())), None, "hex only");
        let mut q = PageQuery { cursor: Some("zzz".into()), ..Default::default() };
        assert_eq!(q.validate().expect_err("bad").field.as_deref(), Some("cursor"));
        let mut q = PageQuery { limit: Some(101), ..Default::default() };
        assert_eq!(q.validate().expect_err("bad").field.as_deref(), Some("limit"));
    }

    #[test]
    fn page_keeps_limit_and_sets_cursor_only_when_more() {
        let now = DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).expect("ts");
        let rows: Vec<(DateTime<Utc>, Uuid)> = (0..3).map(|_| (now, Uuid::new_v4())).collect();
        let page = Page::from_items(rows.clone(), 2, |r| *r);
        assert_eq!(page.data.len(), 2);
        assert_eq!(page.next_cursor.as_deref().and_then(decode_cursor), Some(rows[1]));
        let last = Page::from_items(rows, 3, |r| *r);
        assert!(last.next_cursor.is_none());
    }
}
