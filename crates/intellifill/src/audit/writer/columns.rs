//! A batch of rows as the column arrays of one `audit_append` call (`unnest` on the database side), borrowing
//! the rows' text, and the NUL characters Postgres refuses taken out.

use std::borrow::Cow;

use bytes::BytesMut;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use crate::audit::AuditEvent;

/// A batch as column arrays for `unnest`, borrowing the events' text (a copy only where a NUL had to go).
pub(crate) struct Columns<'a> {
    id: Vec<uuid::Uuid>,
    created_at: Vec<chrono::DateTime<chrono::Utc>>,
    user_id: Vec<Option<uuid::Uuid>>,
    organization_id: Vec<Option<uuid::Uuid>>,
    action: Vec<Cow<'a, str>>,
    entity_type: Vec<Option<Cow<'a, str>>>,
    entity_id: Vec<Option<Cow<'a, str>>>,
    request_id: Vec<Option<Cow<'a, str>>>,
    method: Vec<Option<Cow<'a, str>>>,
    path: Vec<Option<Cow<'a, str>>>,
    status: Vec<Option<i32>>,
    duration_ms: Vec<Option<i32>>,
    ip: Vec<Option<std::net::IpAddr>>,
    user_agent: Vec<Option<Cow<'a, str>>>,
    severity: Vec<Option<&'static str>>,
    metadata: Vec<Jsonb<'a>>,
}

/// Postgres text and jsonb refuse NUL characters: one such byte must not poison a whole batch.
fn clean(s: &str) -> Cow<'_, str> {
    if s.contains('\0') { Cow::Owned(s.replace('\0', "")) } else { Cow::Borrowed(s) }
}

fn clean_opt<S: std::ops::Deref<Target = str>>(s: &Option<S>) -> Option<Cow<'_, str>> {
    s.as_deref().map(clean)
}

fn has_nul(v: &serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(has_nul),
        Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

fn without_nul(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::String(s) => Value::String(clean(s).into_owned()),
        Value::Array(a) => Value::Array(a.iter().map(without_nul).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (clean(k).into_owned(), without_nul(v))).collect()),
        other => other.clone(),
    }
}

/// A `jsonb` parameter: the event's metadata itself, or a copy without NUL characters.
#[derive(Debug)]
struct Jsonb<'a>(Cow<'a, serde_json::Value>);

impl<'a> Jsonb<'a> {
    fn of(v: &'a serde_json::Value) -> Jsonb<'a> {
        Jsonb(if has_nul(v) { Cow::Owned(without_nul(v)) } else { Cow::Borrowed(v) })
    }
}

impl ToSql for Jsonb<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        self.0.as_ref().to_sql(ty, out)
    }

    fn accepts(ty: &Type) -> bool {
        <serde_json::Value as ToSql>::accepts(ty)
    }

    to_sql_checked!();
}

impl<'a> Columns<'a> {
    pub(crate) fn of(batch: &'a [AuditEvent]) -> Columns<'a> {
        Columns {
            id: batch.iter().map(|e| e.id).collect(),
            created_at: batch.iter().map(|e| e.created_at).collect(),
            user_id: batch.iter().map(|e| e.user_id).collect(),
            organization_id: batch.iter().map(|e| e.organization_id).collect(),
            action: batch.iter().map(|e| clean(&e.action)).collect(),
            entity_type: batch.iter().map(|e| clean_opt(&e.entity_type)).collect(),
            entity_id: batch.iter().map(|e| clean_opt(&e.entity_id)).collect(),
            request_id: batch.iter().map(|e| clean_opt(&e.request_id)).collect(),
            method: batch.iter().map(|e| clean_opt(&e.method)).collect(),
            path: batch.iter().map(|e| clean_opt(&e.path)).collect(),
            status: batch.iter().map(|e| e.status).collect(),
            duration_ms: batch.iter().map(|e| e.duration_ms).collect(),
            ip: batch.iter().map(|e| e.ip).collect(),
            user_agent: batch.iter().map(|e| clean_opt(&e.user_agent)).collect(),
            severity: batch.iter().map(|e| e.severity.map(|s| s.as_str())).collect(),
            metadata: batch.iter().map(|e| Jsonb::of(&e.metadata)).collect(),
        }
    }

    pub(crate) fn params(&self) -> Vec<crate::db::Param<'_>> {
        vec![
            (&self.id, Type::UUID_ARRAY),
            (&self.created_at, Type::TIMESTAMPTZ_ARRAY),
            (&self.user_id, Type::UUID_ARRAY),
            (&self.organization_id, Type::UUID_ARRAY),
            (&self.action, Type::TEXT_ARRAY),
            (&self.entity_type, Type::TEXT_ARRAY),
            (&self.entity_id, Type::TEXT_ARRAY),
            (&self.request_id, Type::TEXT_ARRAY),
            (&self.method, Type::TEXT_ARRAY),
            (&self.path, Type::TEXT_ARRAY),
            (&self.status, Type::INT4_ARRAY),
            (&self.duration_ms, Type::INT4_ARRAY),
            (&self.ip, Type::INET_ARRAY),
            (&self.user_agent, Type::TEXT_ARRAY),
            (&self.severity, Type::TEXT_ARRAY),
            (&self.metadata, Type::JSONB_ARRAY),
        ]
    }
}
