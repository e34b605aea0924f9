//! Parsing JSON (request bodies, JSON inside strings) with the width and depth limits applied by the parser:
//! items and keys past [`Limits::max_array_items`] / [`Limits::max_object_keys`] and containers past the
//! depth limit are skipped by the tokenizer, counted, never allocated. The result carries the markers the
//! walk would add (`"[+N more items]"`, `"_truncatedKeys": N`, `"[TRUNCATED]"`), so a wide body costs its
//! tokenizing only. Objects keep their first keys in the order of the text.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::meta::insert_meta;
use super::{Limits, TRUNCATED, TRUNCATED_KEYS_FIELD};

/// Parse `bytes` as one JSON value within `limits`, the top level at `depth`.
pub(super) fn parse(bytes: &[u8], limits: &Limits, depth: usize) -> Option<Value> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = Bounded { limits, depth }.deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(value)
}

#[derive(Clone, Copy)]
struct Bounded<'a> {
    limits: &'a Limits,
    depth: usize,
}

impl Bounded<'_> {
    fn child(self) -> Self {
        Self { depth: self.depth + 1, ..self }
    }

    fn too_deep(&self) -> bool {
        self.depth >= self.limits.max_depth.min(super::MAX_DEPTH)
    }
}

impl<'de> DeserializeSeed<'de> for Bounded<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Bounded<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        if self.too_deep() {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(Value::String(TRUNCATED.to_owned()));
        }
        let mut items = Vec::new();
        while items.len() < self.limits.max_array_items {
            match seq.next_element_seed(self.child())? {
                Some(item) => items.push(item),
                None => return Ok(Value::Array(items)),
            }
        }
        let mut more = 0usize;
        while seq.next_element::<IgnoredAny>()?.is_some() {
            more += 1;
        }
        if more > 0 {
            items.push(Value::String(format!("[+{more} more items]")));
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        if self.too_deep() {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            return Ok(Value::String(TRUNCATED.to_owned()));
        }
        let mut out = Map::new();
        while out.len() < self.limits.max_object_keys {
            let Some(key) = map.next_key::<String>()? else { return Ok(Value::Object(out)) };
            let value = map.next_value_seed(self.child())?;
            out.insert(key, value);
        }
        let mut more = 0usize;
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {
            more += 1;
        }
        if more > 0 {
            insert_meta(&mut out, TRUNCATED_KEYS_FIELD, Value::from(more));
        }
        Ok(Value::Object(out))
    }
}
