//! Walking JSON values (key rules, depth, width and size limits) and turning request bodies into what is stored.

use std::io;

use serde_json::{Map, Value};

use super::keys::{KeyClass, classify_key};
use super::{DROPPED_FIELD, REDACTED, Sanitizer, TRUNCATED, TRUNCATED_KEYS_FIELD};

impl Sanitizer {
    /// Sanitize any JSON value.
    pub fn sanitize(&self, value: &Value) -> Value {
        let out = self.walk(value, 0);
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
    /// parameters allowed, case-insensitive) that parse → sanitized JSON; anything else (or unparseable JSON)
    /// → `{"contentType": <the content type or null>, "size": <bytes>}` only (never the bytes). Empty body →
    /// `Value::Null`.
    ///
    /// The recorded content type itself goes through [`Sanitizer::text`] (length limit, patterns).
    pub fn body(&self, content_type: Option<&str>, body: &[u8]) -> Value {
        if body.is_empty() {
            return Value::Null;
        }
        if content_type.is_some_and(is_json_content_type) {
            let json = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
            if let Ok(value) = serde_json::from_slice::<Value>(json) {
                return self.sanitize(&value);
            }
        }
        let mut m = Map::new();
        m.insert("contentType".to_owned(), content_type.map_or(Value::Null, |ct| Value::String(self.text(ct))));
        m.insert("size".to_owned(), Value::from(body.len()));
        Value::Object(m)
    }

    pub(super) fn walk(&self, value: &Value, depth: usize) -> Value {
        match value {
            Value::String(s) => Value::String(self.clean_string(s, depth)),
            Value::Array(_) | Value::Object(_) if depth >= self.limits.max_depth => Value::String(TRUNCATED.to_owned()),
            Value::Array(items) => {
                let max = self.limits.max_array_items;
                let mut out: Vec<Value> = items.iter().take(max).map(|item| self.walk(item, depth + 1)).collect();
                if items.len() > max {
                    out.push(Value::String(format!("[+{} more items]", items.len() - max)));
                }
                Value::Array(out)
            }
            Value::Object(map) => self.walk_object(map, depth),
            Value::Null | Value::Bool(_) | Value::Number(_) => value.clone(),
        }
    }

    fn walk_object(&self, map: &Map<String, Value>, depth: usize) -> Value {
        let max = self.limits.max_object_keys;
        let mut out = Map::new();
        let mut dropped: Vec<String> = Vec::new();
        for (key, value) in map.iter().take(max) {
            let class = classify_key(key);
            if class == KeyClass::Secret {
                dropped.push(self.clean_key(key));
                continue;
            }
            let new_value = match class {
                KeyClass::Personal => Value::String(REDACTED.to_owned()),
                _ => self.walk(value, depth + 1),
            };
            let new_key = unique_key(&out, self.clean_key(key));
            out.insert(new_key, new_value);
        }
        if !dropped.is_empty() {
            dropped.sort();
            insert_meta(&mut out, DROPPED_FIELD, Value::Array(dropped.into_iter().map(Value::String).collect()));
        }
        if map.len() > max {
            insert_meta(&mut out, TRUNCATED_KEYS_FIELD, Value::from(map.len() - max));
        }
        Value::Object(out)
    }

    /// A string that is itself a JSON object or array: sanitize it as JSON (at the string's own depth).
    pub(super) fn embedded_json(&self, s: &str, depth: usize) -> Option<String> {
        let t = s.trim();
        let container = (t.starts_with('{') && t.ends_with('}')) || (t.starts_with('[') && t.ends_with(']'));
        if !container {
            return None;
        }
        let parsed: Value = serde_json::from_str(t).ok()?;
        match self.walk(&parsed, depth) {
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

/// A key that is not in `map` yet: `base`, else `base#2`, `base#3`, ...
fn unique_key(map: &Map<String, Value>, base: String) -> String {
    let mut candidate = base.clone();
    let mut n = 1usize;
    while map.contains_key(&candidate) {
        n += 1;
        candidate = format!("{base}#{n}");
    }
    candidate
}

/// Insert one of our metadata fields; an input key of the same name is moved aside, not overwritten.
fn insert_meta(map: &mut Map<String, Value>, name: &str, value: Value) {
    if let Some(existing) = map.remove(name) {
        let aside = unique_key(map, format!("{name}#2"));
        map.insert(aside, existing);
    }
    map.insert(name.to_owned(), value);
}
