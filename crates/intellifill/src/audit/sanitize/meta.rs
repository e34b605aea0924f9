//! Keys the sanitizer writes into an object: our metadata fields, and unique names for keys that collide once
//! cleaned.

use std::collections::HashMap;

use serde_json::{Map, Value};

/// A key that is not in `map` yet: `base`, else `base#2`, `base#3`, ...
///
/// `suffixes` remembers the last suffix tried per base (keys are only added while an object is built), so
/// many keys collapsing onto one text cost linear time, not quadratic.
pub(super) fn unique_key(map: &Map<String, Value>, suffixes: &mut HashMap<String, usize>, base: String) -> String {
    if !map.contains_key(&base) {
        return base;
    }
    let n = suffixes.entry(base.clone()).or_insert(1);
    loop {
        *n += 1;
        let candidate = format!("{base}#{n}");
        if !map.contains_key(&candidate) {
            return candidate;
        }
    }
}

/// Insert one of our metadata fields; an input key of the same name is moved aside, not overwritten.
pub(super) fn insert_meta(map: &mut Map<String, Value>, name: &str, value: Value) {
    if let Some(existing) = map.remove(name) {
        let aside = unique_key(map, &mut HashMap::new(), format!("{name}#2"));
        map.insert(aside, existing);
    }
    map.insert(name.to_owned(), value);
}
