//! Percent-escapes (`%40`, `%2B`, `%20`, ...) as found in query strings, paths and form keys: the scanners look
//! at a decoded view as well, so an address or number hidden behind escapes is still found.

use super::rewrite::{Rewriter, Rewritten};

/// The ASCII byte an escape at `i` stands for (`%` and two hex digits, value below 0x80).
fn escape_at(b: &[u8], i: usize) -> Option<u8> {
    let hex = |c: u8| (c as char).to_digit(16);
    match b.get(i..i + 3)? {
        [b'%', h, l] => {
            let v = hex(*h)? * 16 + hex(*l)?;
            u8::try_from(v).ok().filter(u8::is_ascii)
        }
        _ => None,
    }
}

/// Decode the ASCII escapes of `s`, following the cut; `text: None` when there are none. Escapes of
/// non-ASCII bytes are left as they are (the scanners only need ASCII).
pub(super) fn decode_pass(s: &str, cut: Option<usize>) -> Rewritten {
    let b = s.as_bytes();
    let mut rw = Rewriter::new(s, cut);
    if !b.contains(&b'%') {
        return rw.finish();
    }
    let mut buf = [0u8; 4];
    let mut i = 0;
    while let Some(off) = b.get(i..).and_then(|t| t.iter().position(|&c| c == b'%')) {
        let at = i + off;
        match escape_at(b, at) {
            Some(v) => {
                rw.replace(at, at + 3, char::from(v).encode_utf8(&mut buf));
                i = at + 3;
            }
            None => i = at + 1,
        }
    }
    rw.finish()
}

/// `s` with its ASCII escapes decoded, or `None` when it has none.
pub(super) fn decode_ascii_escapes(s: &str) -> Option<String> {
    decode_pass(s, None).text
}
