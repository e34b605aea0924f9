//! Walking JSON values (key rules, depth, width and size limits) and turning request bodies into what is stored.

use std::collections::HashMap;
use std::io;

use serde_json::{Map, Value};

use super::bounded;
use super::keys::{KeyClass, classify_key};
use super::meta::{insert_meta, unique_key};
use super::patterns::is_card_number;
use super::{
    Budget, CARD_LABEL, DROPPED_FIELD, MAX_DEPTH, REDACTED, Sanitizer, TRUNCATED, TRUNCATED_KEYS_FIELD,
    UNSCANNED_KEYS_FIELD,
};

/// Whether the walk cuts arrays and objects to their limits, or the parser already did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Widths {
    Apply,
    Applied,
}

impl Sanitizer {
    /// Sanitize any JSON value, within a budget of its own ([`Sanitizer::sanitize_in`] shares one).
    pub fn sanitize(&self, value: &Value) -> Value {
        self.sanitize_in(value, &mut self.budget())
    }

    /// [`Sanitizer::sanitize`], scanning within `budget`.
    pub fn sanitize_in(&self, value: &Value, budget: &mut Budget) -> Value {
        self.finish_value(self.walk(value, 0, Widths::Apply, budget))
    }

    /// The output size limit.
    fn finish_value(&self, out: Value) -> Value {
        let size = serialized_len(&out);
        if size > self.limits.max_output_bytes {
            let mut m = Map::new();
            m.insert("truncated".to_owned(), Value::Bool(true));
            m.insert("size".to_owned(), Value::from(size));
            return Value::Object(m);
        }
        out
    }

    /// A request body as it should be stored: JSON content types (`application/json`, `application/*+json`,
    /// parameters allowed, case-insensitive) that parse → sanitized JSON (parsed with the limits applied, so
    /// any nesting depth is cut rather than refused); anything else (or unparseable JSON) →
    /// `{"contentType": <the content type or null>, "size": <bytes>}` only (never the bytes). Empty body →
    /// `Value::Null`.
    ///
    /// The recorded content type itself goes through [`Sanitizer::text`] (length limit, patterns). Uses a
    /// budget of its own ([`Sanitizer::body_in`] shares one).
    pub fn body(&self, content_type: Option<&str>, body: &[u8]) -> Value {
        self.body_in(content_type, body, &mut self.budget())
    }

    /// [`Sanitizer::body`], scanning within `budget`.
    pub fn body_in(&self, content_type: Option<&str>, body: &[u8], budget: &mut Budget) -> Value {
        if body.is_empty() {
            return Value::Null;
        }
        if content_type.is_some_and(is_json_content_type) {
            let json = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
            if let Some(value) = bounded::parse(json, &self.limits, 0) {
                return self.finish_value(self.walk(&value, 0, Widths::Applied, budget));
            }
        }
        self.opaque_body(content_type, body.len(), budget)
    }

    /// What is stored of a body of `size` bytes of which only the first ones, `prefix`, were kept
    /// (`AUDIT_MAX_BODY_BYTES`): the whole body when nothing was cut ([`Sanitizer::body_in`]); a JSON body cut
    /// back to its last complete member, its open containers closed (see `prefix.rs`), then sanitized like
    /// any body, so a member whose value was cut is left out whole; anything else (or a JSON prefix that
    /// cannot be closed) → `{"contentType", "size"}` with the size of the whole body (never the bytes).
    pub fn body_prefix_in(&self, content_type: Option<&str>, prefix: &[u8], size: usize, budget: &mut Budget) -> Value {
        if prefix.len() >= size {
            return self.body_in(content_type, prefix, budget);
        }
        if content_type.is_some_and(is_json_content_type) {
            let json = prefix.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(prefix);
            if let Some(value) = super::prefix::close(json).and_then(|closed| bounded::parse(&closed, &self.limits, 0))
            {
                return self.finish_value(self.walk(&value, 0, Widths::Applied, budget));
            }
        }
        self.opaque_body(content_type, size, budget)
    }

    /// A body stored as its content type and size only.
    fn opaque_body(&self, content_type: Option<&str>, size: usize, budget: &mut Budget) -> Value {
        let mut m = Map::new();
        let content_type = content_type.map_or(Value::Null, |ct| Value::String(self.text_in(ct, budget)));
        m.insert("contentType".to_owned(), content_type);
        m.insert("size".to_owned(), Value::from(size));
        Value::Object(m)
    }

    /// The depth limit in force: [`super::Limits::max_depth`], at most [`MAX_DEPTH`].
    fn max_depth(&self) -> usize {
        self.limits.max_depth.min(MAX_DEPTH)
    }

    pub(super) fn walk(&self, value: &Value, depth: usize, widths: Widths, budget: &mut Budget) -> Value {
        match value {
            Value::String(s) => Value::String(self.clean_string(s, depth, budget)),
            Value::Array(_) | Value::Object(_) if depth >= self.max_depth() => Value::String(TRUNCATED.to_owned()),
            Value::Array(items) => self.walk_array(items, depth, widths, budget),
            Value::Object(map) => self.walk_object(map, depth, widths, budget),
            Value::Number(n) if is_card_number(n) => Value::String(CARD_LABEL.to_owned()),
            Value::Null | Value::Bool(_) | Value::Number(_) => value.clone(),
        }
    }

    fn walk_array(&self, items: &[Value], depth: usize, widths: Widths, budget: &mut Budget) -> Value {
        let max = if widths == Widths::Apply { self.limits.max_array_items } else { usize::MAX };
        let mut out = Vec::with_capacity(items.len().min(max) + 1);
        for (i, item) in items.iter().take(max).enumerate() {
            if budget.is_spent() {
                out.push(Value::String(format!("[+{} items unscanned]", items.len() - i)));
                return Value::Array(out);
            }
            out.push(self.walk(item, depth + 1, widths, budget));
        }
        if items.len() > max {
            out.push(Value::String(format!("[+{} more items]", items.len() - max)));
        }
        Value::Array(out)
    }

    fn walk_object(&self, map: &Map<String, Value>, depth: usize, widths: Widths, budget: &mut Budget) -> Value {
        let max = if widths == Widths::Apply { self.limits.max_object_keys } else { usize::MAX };
        let mut out = Map::new();
        let mut suffixes: HashMap<String, usize> = HashMap::new();
        let mut dropped: Vec<String> = Vec::new();
        let mut unscanned = 0;
        for (i, (key, value)) in map.iter().take(max).enumerate() {
            if budget.is_spent() {
                unscanned = map.len().min(max) - i;
                break;
            }
            let class = classify_key(key);
            if class == KeyClass::Secret {
                dropped.push(self.clean_key(key, budget));
                continue;
            }
            let new_key = unique_key(&out, &mut suffixes, self.clean_key(key, budget));
            let new_value = match class {
                KeyClass::Personal => Value::String(REDACTED.to_owned()),
                _ => self.walk(value, depth + 1, widths, budget),
            };
            out.insert(new_key, new_value);
        }
        if !dropped.is_empty() {
            dropped.sort();
            insert_meta(&mut out, DROPPED_FIELD, Value::Array(dropped.into_iter().map(Value::String).collect()));
        }
        if unscanned > 0 {
            insert_meta(&mut out, UNSCANNED_KEYS_FIELD, Value::from(unscanned));
        }
        if map.len() > max {
            insert_meta(&mut out, TRUNCATED_KEYS_FIELD, Value::from(map.len() - max));
        }
        Value::Object(out)
    }

    /// A string that is itself a JSON object or array: sanitize it as JSON (at the string's own depth).
    pub(super) fn embedded_json(&self, s: &str, depth: usize, budget: &mut Budget) -> Option<String> {
        let t = s.trim();
        let container = (t.starts_with('{') && t.ends_with('}')) || (t.starts_with('[') && t.ends_with(']'));
        if !container {
            return None;
        }
        let parsed = bounded::parse(t.as_bytes(), &self.limits, depth)?;
        budget.take(s.len());
        match self.walk(&parsed, depth, Widths::Applied, budget) {
            Value::String(s) => Some(s),
            other => serde_json::to_string(&other).ok(),
        }
    }
}

/// Is this a JSON media type: `application/json` or `application/*+json`, parameters allowed, any case.
fn is_json_content_type(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json"
        || essence.strip_prefix("application/").and_then(|sub| sub.strip_suffix("+json")).is_some_and(|s| !s.is_empty())
}

/// Counts bytes written, to measure a serialized value without building the string.
struct ByteCounter(usize);

impl io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn serialized_len(value: &Value) -> usize {
    let mut counter = ByteCounter(0);
    match serde_json::to_writer(&mut counter, value) {
        Ok(()) => counter.0,
        // Serializing a `Value` cannot fail; if it ever did, treat the value as too large to store.
        Err(_) => usize::MAX,
    }
}
