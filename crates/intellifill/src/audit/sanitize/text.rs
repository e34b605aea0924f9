//! The string pipeline applied to every string value, object key and free text: embedded JSON, value patterns,
//! `key=value` / `key: value` / `"key": value` pairs, then the length limit.

use regex::Captures;

use super::keys::is_sensitive_key;
use super::{REDACTED, Sanitizer};

impl Sanitizer {
    /// Sanitize a free-text string (value patterns + length limit): for query strings, user agents etc.
    ///
    /// `key=value` / `key: value` pairs with a secret or personal key also get their value redacted.
    pub fn text(&self, s: &str) -> String {
        self.clean_string(s, 0)
    }

    /// Object keys: value patterns and length limit only.
    pub(super) fn clean_key(&self, key: &str) -> String {
        self.limit_chars(self.scrub_patterns(key))
    }

    /// Full string pipeline: embedded JSON, value patterns, key/value pairs, then the length limit.
    ///
    /// Patterns run before the pairs so that a multi-token value (`iban: GB82 WEST ...`) is replaced whole.
    pub(super) fn clean_string(&self, s: &str, depth: usize) -> String {
        if let Some(json) = self.embedded_json(s, depth) {
            return self.limit_chars(json);
        }
        let s = self.scrub_patterns(s);
        let s = self.redact_quoted_pairs(&s);
        self.limit_chars(self.redact_text_pairs(&s))
    }

    /// Redact the value of `"key": value` pairs (JSON fragments that did not parse) whose key is secret or
    /// personal.
    fn redact_quoted_pairs(&self, s: &str) -> String {
        self.quoted_pair
            .replace_all(s, |caps: &Captures| {
                let (Some(all), Some(k), Some(v)) = (caps.get(0), caps.name("k"), caps.name("v")) else {
                    return caps.get(0).map_or_else(String::new, |m| m.as_str().to_owned());
                };
                if is_sensitive_key(k.as_str()) {
                    format!("{}\"{REDACTED}\"", &all.as_str()[..v.start() - all.start()])
                } else {
                    all.as_str().to_owned()
                }
            })
            .into_owned()
    }

    /// Redact the value of `key=value` (query strings: the value ends at `&`, `;`, `#` or whitespace) and
    /// `key: value` pairs (log-style text: the value ends at `,`, `;`, `&` or a line break) whose key is secret
    /// or personal. After a harmless key the scan resumes right after its separator, so `note: password: x`
    /// is still caught.
    fn redact_text_pairs(&self, s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        let mut last = 0;
        let mut pos = 0;
        while pos < s.len() {
            let Some(caps) = self.text_pair.captures_at(s, pos) else { break };
            let (Some(all), Some(k), Some(sep)) = (caps.get(0), caps.name("k"), caps.name("sep")) else { break };
            if !is_sensitive_key(k.as_str()) {
                pos = all.end();
                continue;
            }
            let stop: fn(char) -> bool = if sep.as_str() == "=" {
                |c| matches!(c, '&' | ';' | '#') || c.is_whitespace()
            } else {
                |c| matches!(c, ',' | ';' | '&' | '\r' | '\n')
            };
            let value_end = s[all.end()..].find(stop).map_or(s.len(), |i| all.end() + i);
            out.push_str(&s[last..all.end()]);
            out.push_str(REDACTED);
            last = value_end;
            pos = value_end;
        }
        out.push_str(&s[last..]);
        out
    }

    /// Cut to `max_string_chars` chars (on a char boundary) with a `…[+N chars]` suffix.
    fn limit_chars(&self, s: String) -> String {
        match s.char_indices().nth(self.limits.max_string_chars) {
            None => s,
            Some((idx, _)) => {
                let cut = s[idx..].chars().count();
                format!("{}…[+{cut} chars]", &s[..idx])
            }
        }
    }
}
