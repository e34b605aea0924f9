//! The string pipeline applied to every string value, object key, path segment and free text: the scan
//! budget, embedded JSON, value patterns, `key=value` / `key: value` / `"key": value` pairs, then the length
//! limit.

use super::pairs::{quoted_pairs, text_pairs};
use super::patterns::scrub_patterns;
use super::percent::decode_pass;
use super::rewrite::Scrub;
use super::{Budget, Sanitizer};

/// Bytes scanned beyond the point where a value cut by the budget ends, so that a pattern straddling that
/// point is still seen whole (and replaced whole) instead of leaving its first part behind.
const CUT_LOOKAHEAD: usize = 256;

/// What a string goes through besides the value patterns.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Rules {
    /// Object keys: patterns only.
    Key,
    /// Values, free text and path segments: patterns and key/value pairs.
    Text,
}

impl Sanitizer {
    /// Sanitize a free-text string (value patterns, key/value pairs, length limit): for query strings, user
    /// agents etc. `key=value` / `key: value` pairs with a secret or personal key get their value redacted.
    ///
    /// Uses a budget of its own; [`Sanitizer::text_in`] shares one across the values of an event.
    pub fn text(&self, s: &str) -> String {
        self.text_in(s, &mut self.budget())
    }

    /// [`Sanitizer::text`], scanning within `budget`.
    pub fn text_in(&self, s: &str, budget: &mut Budget) -> String {
        self.clean_string(s, 0, budget)
    }

    /// A request path: every `/`-separated segment goes through the free-text rules on its own (so a
    /// number in one segment is not read as the continuation of the previous one); no length limit (the
    /// caller bounds the path).
    pub fn path_in(&self, path: &str, budget: &mut Budget) -> String {
        let mut out = String::with_capacity(path.len());
        for (i, segment) in path.split('/').enumerate() {
            if i > 0 {
                out.push('/');
            }
            let (kept, unscanned) = self.scan(segment, Rules::Text, budget);
            out.push_str(&kept);
            if let Some(n) = unscanned {
                out.push_str(&unscanned_marker(n));
            }
        }
        out
    }

    /// Object keys: value patterns and length limit only.
    pub(super) fn clean_key(&self, key: &str, budget: &mut Budget) -> String {
        let (kept, unscanned) = self.scan(key, Rules::Key, budget);
        self.finish(kept, unscanned)
    }

    /// Full string pipeline: embedded JSON, value patterns, key/value pairs, then the length limit.
    pub(super) fn clean_string(&self, s: &str, depth: usize, budget: &mut Budget) -> String {
        if s.len() <= budget.remaining()
            && let Some(json) = self.embedded_json(s, depth, budget)
        {
            return self.limit_chars(json);
        }
        let (kept, unscanned) = self.scan(s, Rules::Text, budget);
        self.finish(kept, unscanned)
    }

    fn finish(&self, kept: String, unscanned: Option<usize>) -> String {
        let kept = self.limit_chars(kept);
        match unscanned {
            None => kept,
            Some(n) => kept + &unscanned_marker(n),
        }
    }

    /// Patterns (then pairs) over as much of `s` as the budget allows: the sanitized text kept, and the
    /// number of bytes of `s` cut after it, if any.
    ///
    /// Patterns run before the pairs so that a multi-token value (`iban: GB82 WEST ...`) is replaced whole.
    /// When `s` holds percent-escapes, a decoded view is scanned too, and wins when it finds more.
    fn scan(&self, s: &str, rules: Rules, budget: &mut Budget) -> (String, Option<usize>) {
        let granted = budget.take(s.len());
        let (end, cut) = if granted == s.len() {
            (s.len(), None)
        } else {
            let end = floor_char_boundary(s, granted);
            (end, Some(floor_char_boundary(s, end.saturating_sub(CUT_LOOKAHEAD))))
        };
        let scanned = &s[..end];
        let run = |scrub: Scrub| {
            let scrub = scrub_patterns(scrub);
            let b = scrub.text.as_bytes();
            let (quotes, separators) = (b.contains(&b'"'), b.iter().any(|c| matches!(c, b'=' | b':')));
            match rules {
                Rules::Text if separators => {
                    let scrub = if quotes { scrub.then(quoted_pairs) } else { scrub };
                    scrub.then(text_pairs)
                }
                _ => scrub,
            }
        };
        let raw = run(Scrub::new(scanned.to_owned(), cut));
        let decoded = decode_pass(scanned, cut);
        // The decoded view is never longer than the scanned text: its cost is covered by the same grant.
        let best = match decoded.text {
            Some(text) => {
                let view = run(Scrub::new(text, decoded.cut));
                if view.hits > raw.hits { view } else { raw }
            }
            _ => raw,
        };
        let mut kept = best.text;
        if let Some(c) = best.cut {
            kept.truncate(c);
        }
        (kept, cut.map(|c| s.len() - c))
    }

    /// Cut to `max_string_chars` chars (on a char boundary) with a `…[+N chars]` suffix.
    pub(super) fn limit_chars(&self, s: String) -> String {
        match s.char_indices().nth(self.limits.max_string_chars) {
            None => s,
            Some((idx, _)) => {
                let cut = s[idx..].chars().count();
                format!("{}…[+{cut} chars]", &s[..idx])
            }
        }
    }
}

/// What stands for the part of a value that the budget did not cover.
pub(super) fn unscanned_marker(bytes: usize) -> String {
    format!("[UNSCANNED: +{bytes} bytes]")
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}
