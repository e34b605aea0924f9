//! The facts of a request that the audit step gathers on the request path ([`RequestFacts`]), and how the
//! writer turns them into an event ([`RequestFacts::into_event`]): texts truncated and copied in one allocation,
//! the kept prefix of a write request's body, what was omitted and why.

use std::net::IpAddr;
use std::time::Duration;

use axum::http::{HeaderValue, Method, header};
use chrono::{DateTime, Utc};

use crate::audit::sanitize::{Budget, Sanitizer};
use crate::audit::{AuditEvent, AuditNotes, PathEntity, actions, security, truncated};
use crate::security::SecurityKind;

const MAX_USER_AGENT: usize = 256;
const MAX_PATH: usize = 512;
const MAX_QUERY: usize = 2048;

/// What the request context knows of a request when the audit step sees it.
#[derive(Debug, Clone, Copy)]
pub struct Seen<'a> {
    pub request_id: Option<&'a std::sync::Arc<str>>,
    /// The `X-Request-ID` the client sent, if any (kept in the row's metadata, never as its request id).
    pub client_request_id: Option<&'a std::sync::Arc<str>>,
    pub ip: Option<IpAddr>,
    /// The method writes: its body is kept (sanitized) on the row.
    pub is_write: bool,
    /// Larger bodies are refused (413) rather than buffered.
    pub max_body_bytes: usize,
}

/// What the request path knows about a request, for the writer to make its audit row of. Cheap to clone (the
/// kept body is shared): a write committed with its row ([`crate::audit::in_tx`]) makes the row from a copy, so the
/// facts stay for the asynchronous path until the commit has succeeded.
#[derive(Debug, Clone)]
pub struct RequestFacts {
    /// The event's id, chosen up front: the row made in a request's transaction and the one the writer may
    /// make of the same facts afterwards (the commit failed, or its outcome is unknown) are one event, stored
    /// once (`audit_append` inserts `ON CONFLICT DO NOTHING`).
    id: uuid::Uuid,
    created_at: DateTime<Utc>,
    request_id: Option<std::sync::Arc<str>>,
    client_request_id: Option<std::sync::Arc<str>>,
    ip: Option<IpAddr>,
    method: Method,
    text: Texts,
    /// A write request's body: its content type, size, and the first bytes of it kept for the row.
    pub(super) body: Option<CapturedBody>,
    notes: AuditNotes,
    status: u16,
    duration: Duration,
    security: Option<SecurityKind>,
    /// The request's future was dropped before a response (a timeout above this step, or the client went
    /// away): the row has no status and says so.
    pub(super) abandoned: bool,
}

impl RequestFacts {
    /// The request's side, before the handler runs.
    pub fn of(parts: &http::request::Parts, seen: &Seen<'_>) -> RequestFacts {
        RequestFacts {
            id: uuid::Uuid::now_v7(),
            created_at: Utc::now(),
            request_id: seen.request_id.cloned(),
            client_request_id: seen.client_request_id.cloned(),
            ip: seen.ip,
            method: parts.method.clone(),
            text: Texts::of(parts),
            body: None,
            notes: AuditNotes::default(),
            status: 0,
            duration: Duration::ZERO,
            security: None,
            abandoned: false,
        }
    }

    /// Heap bytes held (its share of the audit backlog, with the size of the queued item).
    pub fn weight(&self) -> usize {
        let ids = [&self.request_id, &self.client_request_id].into_iter().flatten().map(|id| id.len()).sum::<usize>();
        let notes = self.notes.entity_id.as_ref().map_or(0, String::len)
            + match &self.notes.path_entity_id {
                Some(PathEntity::Raw(raw)) => raw.len(),
                _ => 0,
            };
        self.text.buf.capacity() + self.body.as_ref().map_or(0, CapturedBody::weight) + ids + notes
    }

    /// Whether body bytes are kept for the row (they wake the writer at once, to be let go of soon).
    pub fn has_body(&self) -> bool {
        self.body.as_ref().is_some_and(|body| !body.kept.is_empty())
    }

    /// Body bytes kept for the row (what sanitizing the row costs, roughly).
    pub fn body_bytes(&self) -> usize {
        self.body.as_ref().map_or(0, |body| body.kept.len())
    }

    /// The outcome's side, once the response is there. The body of a request that matched no route or whose
    /// caller was never authenticated is let go of here: its row keeps the body's size and type only.
    pub fn finished(&mut self, notes: AuditNotes, status: u16, duration: Duration, security: Option<SecurityKind>) {
        if let Some(body) = &mut self.body {
            let omitted = if notes.route.is_none() {
                Some(Omitted::Unmatched)
            } else if notes.user_id.is_none() {
                Some(Omitted::Unauthenticated)
            } else {
                None
            };
            if let Some(reason) = omitted {
                body.omit(reason);
            }
        }
        self.notes = notes;
        self.status = status;
        self.duration = duration;
        self.security = security;
    }

    /// The audit row (the writer's work, off the request path): action and entity from the route, free text
    /// (path, user agent, query) truncated and sanitized, a write body sanitized, the security mark. One scan
    /// budget covers the whole row.
    pub fn into_event(mut self, sanitizer: &Sanitizer) -> AuditEvent {
        let mut budget = sanitizer.budget();
        let route = self.notes.route.as_ref().map(|r| r.path);
        let (action, entity_type) = actions::classify(self.notes.route.as_ref());
        let mut event = AuditEvent::new(action);
        event.id = self.id;
        event.created_at = self.created_at;
        event.entity_type = entity_type.map(Into::into);
        event.entity_id = self.notes.entity_id.take().or(self.notes.path_entity_id.take().map(PathEntity::into_string));
        event.user_id = self.notes.user_id;
        event.organization_id = self.notes.organization_id;
        event.request_id = self.request_id;
        event.ip = self.ip;
        event.path = Some(sanitizer.path_in(self.text.path(), &mut budget).into());
        event.user_agent = self.text.user_agent().map(|ua| sanitizer.text_in(ua, &mut budget));
        event.method = Some(self.method.as_str().into());
        event.status = (!self.abandoned).then_some(i32::from(self.status));
        event.duration_ms = Some(self.duration.as_millis().min(i32::MAX as u128) as i32);
        if let Some(kind) = self.security {
            let details = serde_json::json!({ "status": event.status, "route": route });
            security::mark(&mut event, kind, kind.severity(), details);
        }
        if let serde_json::Value::Object(map) = &mut event.metadata {
            if let Some(route) = route {
                map.insert("route".into(), route.into());
            }
            if self.abandoned {
                map.insert("abandoned".into(), true.into());
            }
            if let Some(client) = &self.client_request_id {
                map.insert("clientRequestId".into(), (**client).into());
            }
            if let Some(q) = self.text.query() {
                map.insert("query".into(), sanitizer.text_in(q, &mut budget).into());
            }
            if let Some(body) = &self.body {
                body.describe(map, sanitizer, &mut budget);
            }
        }
        event
    }
}

/// What the row keeps of a write request's body: its size and content type always, and unless it was left
/// out (see [`Omitted`]) its first `AUDIT_MAX_BODY_BYTES` bytes, copied, so the request's buffer is not held
/// while the event waits for the writer.
#[derive(Debug, Clone)]
pub(super) struct CapturedBody {
    /// Copied and truncated: a header value points into the connection's read buffer.
    content_type: Option<Box<str>>,
    /// The whole body's size (as declared, when it was refused unread).
    size: usize,
    /// A copy (not a slice of the request's buffer), shared by the facts' clones.
    kept: bytes::Bytes,
    omitted: Option<Omitted>,
}

/// Why a body is not on the row (`metadata.bodyOmitted`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Omitted {
    /// `AUDIT_MAX_BODY_BYTES=0`.
    Disabled,
    /// Over the request size limit: refused without being read.
    Unread,
    /// No route matched: nothing could have used it.
    Unmatched,
    /// No caller was authenticated: anybody can send it, so it is not worth its room in the queue.
    Unauthenticated,
}

impl Omitted {
    fn as_str(self) -> &'static str {
        match self {
            Omitted::Disabled => "disabled",
            Omitted::Unread => "unread",
            Omitted::Unmatched => "unmatched",
            Omitted::Unauthenticated => "unauthenticated",
        }
    }
}

/// Longest content type kept (real ones are a few dozen characters).
const MAX_CONTENT_TYPE: usize = 128;

fn content_type_text(value: Option<&HeaderValue>) -> Option<Box<str>> {
    value.and_then(|v| v.to_str().ok()).map(|ct| truncated(ct, MAX_CONTENT_TYPE).into())
}

impl CapturedBody {
    /// The first `keep` bytes of `bytes`, copied.
    pub(super) fn of(content_type: Option<&HeaderValue>, bytes: &[u8], keep: usize) -> CapturedBody {
        let kept = bytes::Bytes::copy_from_slice(bytes.get(..keep).unwrap_or(bytes));
        let omitted = (keep == 0 && !bytes.is_empty()).then_some(Omitted::Disabled);
        CapturedBody { content_type: content_type_text(content_type), size: bytes.len(), kept, omitted }
    }

    /// A body refused before it was read, of the size its `Content-Length` declared.
    pub(super) fn unread(content_type: Option<&HeaderValue>, declared: usize) -> CapturedBody {
        let content_type = content_type_text(content_type);
        CapturedBody { content_type, size: declared, kept: bytes::Bytes::new(), omitted: Some(Omitted::Unread) }
    }

    /// Heap bytes held.
    pub(super) fn weight(&self) -> usize {
        self.kept.len() + self.content_type.as_ref().map_or(0, |ct| ct.len())
    }

    fn omit(&mut self, reason: Omitted) {
        if self.omitted.is_none() && self.size > 0 {
            self.omitted = Some(reason);
        }
        self.kept = bytes::Bytes::new();
    }

    /// Into the row's metadata: `bodyBytes`, `contentType`, and `body` (sanitized; cut bodies marked
    /// `bodyTruncated`) or `bodyOmitted` with the reason.
    fn describe(
        &self,
        map: &mut serde_json::Map<String, serde_json::Value>,
        sanitizer: &Sanitizer,
        budget: &mut Budget,
    ) {
        if self.size == 0 {
            return;
        }
        let content_type = self.content_type.as_deref();
        map.insert("bodyBytes".into(), self.size.into());
        if let Some(ct) = content_type {
            map.insert("contentType".into(), sanitizer.text_in(ct, budget).into());
        }
        if let Some(reason) = self.omitted {
            map.insert("bodyOmitted".into(), reason.as_str().into());
            return;
        }
        if self.kept.len() < self.size {
            map.insert("bodyTruncated".into(), true.into());
        }
        map.insert("body".into(), sanitizer.body_prefix_in(content_type, &self.kept, self.size, budget));
    }
}

/// The request's path, query and user agent, truncated, in one string.
#[derive(Debug, Clone)]
struct Texts {
    buf: String,
    path: usize,
    query: Option<usize>,
    user_agent: Option<usize>,
}

impl Texts {
    fn of(parts: &http::request::Parts) -> Texts {
        let path = truncated(parts.uri.path(), MAX_PATH);
        let query = parts.uri.query().map(|q| truncated(q, MAX_QUERY));
        let user_agent =
            parts.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(|ua| truncated(ua, MAX_USER_AGENT));
        let mut buf = String::with_capacity(path.len() + query.map_or(0, str::len) + user_agent.map_or(0, str::len));
        for part in [Some(path), query, user_agent].into_iter().flatten() {
            buf.push_str(part);
        }
        Texts { buf, path: path.len(), query: query.map(str::len), user_agent: user_agent.map(str::len) }
    }

    fn path(&self) -> &str {
        &self.buf[..self.path]
    }

    fn query(&self) -> Option<&str> {
        self.query.map(|n| &self.buf[self.path..self.path + n])
    }

    fn user_agent(&self) -> Option<&str> {
        let start = self.path + self.query.unwrap_or(0);
        self.user_agent.map(|n| &self.buf[start..start + n])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, user_agent: Option<&str>) -> http::request::Parts {
        let mut request = http::Request::get(uri);
        if let Some(ua) = user_agent {
            request = request.header(header::USER_AGENT, ua);
        }
        request.body(()).expect("request").into_parts().0
    }

    #[test]
    fn texts_keep_path_query_and_user_agent_apart_and_truncated() {
        let t = Texts::of(&parts("/a/b?x=1&y=2", Some("curl/8")));
        assert_eq!((t.path(), t.query(), t.user_agent()), ("/a/b", Some("x=1&y=2"), Some("curl/8")));
        let t = Texts::of(&parts("/a", None));
        assert_eq!((t.path(), t.query(), t.user_agent()), ("/a", None, None));
        let t = Texts::of(&parts("/a?", Some("")));
        assert_eq!((t.path(), t.query(), t.user_agent()), ("/a", Some(""), Some("")));
        let long = format!("/{}?{}", "p".repeat(600), "q".repeat(3000));
        let t = Texts::of(&parts(&long, Some(&"u".repeat(300))));
        assert_eq!(t.path(), &long[..MAX_PATH]);
        assert_eq!(t.query(), Some("q".repeat(MAX_QUERY).as_str()));
        assert_eq!(t.user_agent(), Some("u".repeat(MAX_USER_AGENT).as_str()));
    }

    #[test]
    fn the_row_keeps_no_personal_data_of_the_path_query_or_user_agent() {
        let uri = "/api/users/jane.doe@example.com/phones/555-123-4567?to=%2B442079460958&token=abc";
        let seen =
            Seen { request_id: None, client_request_id: None, ip: None, is_write: false, max_body_bytes: 1 << 20 };
        let facts = RequestFacts::of(&parts(uri, Some("agent jane@example.org")), &seen);
        let event = facts.into_event(&Sanitizer::default());
        assert_eq!(event.path.as_deref(), Some("/api/users/[EMAIL]/phones/[PHONE]"));
        assert_eq!(event.metadata["query"], "to=[PHONE]&token=[REDACTED]");
        assert_eq!(event.user_agent.as_deref(), Some("agent [EMAIL]"));
    }

    /// The row of a POST with `body` (JSON) kept up to `keep` bytes, as `user` (none: unauthenticated) on
    /// a matched route (or not).
    fn row_of_body(body: &str, keep: usize, user: Option<uuid::Uuid>, matched: bool) -> serde_json::Value {
        let seen =
            Seen { request_id: None, client_request_id: None, ip: None, is_write: true, max_body_bytes: 1 << 20 };
        let mut facts = RequestFacts::of(&parts("/api/things", None), &seen);
        facts.body = Some(CapturedBody::of(Some(&HeaderValue::from_static("application/json")), body.as_bytes(), keep));
        let notes = AuditNotes {
            route: matched.then_some(actions::RouteNote { path: "/api/things", action: "things.create", entity: None }),
            user_id: user,
            ..AuditNotes::default()
        };
        facts.finished(notes, 201, Duration::ZERO, None);
        facts.into_event(&Sanitizer::default()).metadata
    }

    #[test]
    fn a_long_body_keeps_its_complete_first_members_sanitized_and_its_size() {
        let body = r#"{"title":"kept","password":"hunter2","address":{"line":"221B Baker Street","note":"jane@example.org"},"content":"cut here"}"#;
        let keep = body.find("cut").expect("marker");
        let meta = row_of_body(body, keep, Some(uuid::Uuid::nil()), true);
        assert_eq!(meta["bodyTruncated"], true);
        assert_eq!(meta["bodyBytes"], body.len());
        assert_eq!(meta["contentType"], "application/json");
        assert_eq!(meta["body"]["title"], "kept");
        assert_eq!(meta["body"]["address"], "[REDACTED]", "a personal key's object is redacted whole: {meta}");
        assert!(meta["body"].get("content").is_none(), "the member cut in the middle is left out: {meta}");
        let text = meta.to_string();
        for secret in ["hunter2", "Baker", "jane@example.org", "cut"] {
            assert!(!text.contains(secret), "{secret} kept: {text}");
        }
        let whole = row_of_body(body, body.len(), Some(uuid::Uuid::nil()), true);
        assert!(whole.get("bodyTruncated").is_none(), "a body that fits is not marked: {whole}");
        assert_eq!(whole["body"]["content"], "cut here");
    }

    #[test]
    fn unauthenticated_unmatched_and_disabled_bodies_keep_size_and_type_only() {
        let body = r#"{"title":"secret plans"}"#;
        for (keep, user, matched, reason) in [
            (1024, None, true, "unauthenticated"),
            (1024, Some(uuid::Uuid::nil()), false, "unmatched"),
            (0, Some(uuid::Uuid::nil()), true, "disabled"),
        ] {
            let meta = row_of_body(body, keep, user, matched);
            assert_eq!(meta["bodyOmitted"], reason, "{meta}");
            assert_eq!(meta["bodyBytes"], body.len());
            assert_eq!(meta["contentType"], "application/json");
            assert!(meta.get("body").is_none() && !meta.to_string().contains("secret plans"), "{meta}");
        }
    }
}
