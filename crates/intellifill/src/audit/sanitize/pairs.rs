//! `"key": value` pairs (JSON fragments that do not parse), `key=value` pairs (query strings, forms) and
//! `key: value` pairs (log-style text) whose key is secret or personal: the value becomes `[REDACTED]`.

use super::keys::is_sensitive_key;
use super::rewrite::{Rewriter, Rewritten};
use super::{REDACTED, REDACTED_JSON};

/// Longest quoted key considered, in chars.
const MAX_QUOTED_KEY_CHARS: usize = 128;

/// `"key"`, whitespace, `:`, whitespace, then a value: a string (escapes honoured, the closing quote may be
/// missing) or a bare token up to whitespace, `,`, `}` or `]`. Object and array values are left to the keys
/// inside them. A pair with a harmless key is skipped whole, so a string value is never read as keys.
pub(super) fn quoted_pairs(text: &str, cut: Option<usize>) -> Rewritten {
    let b = text.as_bytes();
    let mut rw = Rewriter::new(text, cut);
    let mut from = 0;
    while let Some(off) = b.get(from..).and_then(|t| t.iter().position(|&c| c == b'"')) {
        let quote = from + off;
        from = quote + 1;
        let Some((key_end, value_start)) = quoted_key(text, quote) else { continue };
        let Some(value_end) = value_end(text, value_start) else { continue };
        if is_sensitive_key(&text[quote + 1..key_end]) {
            rw.replace(value_start, value_end, REDACTED_JSON);
        }
        from = value_end;
    }
    rw.finish()
}

/// The key of a pair whose opening quote is at `quote`: (end of the key, start of the value).
fn quoted_key(text: &str, quote: usize) -> Option<(usize, usize)> {
    let mut key_end = None;
    for (n, (off, c)) in text[quote + 1..].char_indices().enumerate() {
        match c {
            '"' if n > 0 => {
                key_end = Some(quote + 1 + off);
                break;
            }
            '"' | '\\' => return None,
            _ if n >= MAX_QUOTED_KEY_CHARS => return None,
            _ => {}
        }
    }
    let key_end = key_end?;
    let after_ws =
        |p: usize| p + text[p..].chars().take_while(|c| c.is_whitespace()).map(char::len_utf8).sum::<usize>();
    let colon = after_ws(key_end + 1);
    (text.as_bytes().get(colon) == Some(&b':')).then(|| (key_end, after_ws(colon + 1)))
}

/// End of a pair's value starting at `start`, or `None` when no value starts there.
fn value_end(text: &str, start: usize) -> Option<usize> {
    let b = text.as_bytes();
    match *b.get(start)? {
        b'"' => {
            let mut i = start + 1;
            while let Some(&c) = b.get(i) {
                match c {
                    b'"' => return Some(i + 1),
                    // An escape covers the next char, unless it is a line break.
                    b'\\' if !matches!(b.get(i + 1), None | Some(b'\n')) => {
                        i += 1 + text[i + 1..].chars().next().map_or(1, char::len_utf8);
                    }
                    b'\\' => return Some(i),
                    _ => i += 1,
                }
            }
            Some(i)
        }
        b',' | b'}' | b']' | b'[' | b'{' => None,
        _ => {
            let end = |c: char| c.is_whitespace() || matches!(c, ',' | '}' | ']');
            let first = text[start..].chars().next()?;
            if end(first) {
                return None;
            }
            Some(text[start..].find(end).map_or(text.len(), |p| start + p))
        }
    }
}

fn is_pair_key_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | '[' | ']' | '%')
}

/// `key=value` (the value ends at `&`, `;`, `#` or whitespace) and `key: value` (the value ends at `,`, `;`,
/// `&` or a line break), spaces and tabs allowed around the separator. After a harmless key the scan goes
/// on right after its separator, so `note: password: x` is still caught.
pub(super) fn text_pairs(text: &str, cut: Option<usize>) -> Rewritten {
    let mut rw = Rewriter::new(text, cut);
    let mut pos = 0;
    while pos < text.len() {
        // The next run of key chars at or after `pos`.
        let Some(key_start) = text[pos..].find(is_pair_key_char).map(|p| pos + p) else { break };
        let key_end = text[key_start..].find(|c| !is_pair_key_char(c)).map_or(text.len(), |p| key_start + p);
        let blanks = |p: usize| p + text.as_bytes()[p..].iter().take_while(|c| matches!(c, b' ' | b'\t')).count();
        let sep_at = blanks(key_end);
        let sep = text.as_bytes().get(sep_at).copied();
        if !matches!(sep, Some(b'=' | b':')) {
            pos = sep_at.max(key_end + 1).min(text.len());
            pos = next_boundary(text, pos);
            continue;
        }
        let value_start = blanks(sep_at + 1);
        if !is_sensitive_key(&text[key_start..key_end]) {
            pos = value_start;
            continue;
        }
        let stop: fn(char) -> bool = if sep == Some(b'=') {
            |c| matches!(c, '&' | ';' | '#') || c.is_whitespace()
        } else {
            |c| matches!(c, ',' | ';' | '&' | '\r' | '\n')
        };
        let value_end = text[value_start..].find(stop).map_or(text.len(), |i| value_start + i);
        rw.replace(value_start, value_end, REDACTED);
        pos = value_end;
    }
    rw.finish()
}

/// `pos`, or the next char boundary after it.
fn next_boundary(text: &str, mut pos: usize) -> usize {
    while pos < text.len() && !text.is_char_boundary(pos) {
        pos += 1;
    }
    pos
}
