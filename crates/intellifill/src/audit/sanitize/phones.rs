//! Phone numbers → `[PHONE]`: international (`+` or `%2B` and 8–15 digits) and national shapes with
//! separators. Candidates are visited left to right and each check reads a bounded window around it.

use super::PHONE_LABEL;
use super::rewrite::{Rewriter, Rewritten, char_at, char_before, digit_run_end, each_token_start, is_word_char};

/// International: `+` or `%2B`, up to two of ` (`, a digit, then 7–14 more digits each after up to two of
/// ` .-()`; the number ends at the last of its first 15 digits that is not followed by a digit. Not glued to
/// a word char on either side.
pub(super) fn intl_phones(text: &str, cut: Option<usize>) -> Rewritten {
    let b = text.as_bytes();
    let mut rw = Rewriter::new(text, cut);
    let mut from = 0;
    while let Some(off) = b.get(from..).and_then(|t| t.iter().position(|&c| c == b'+' || c == b'%')) {
        let at = from + off;
        from = at + 1;
        let body = match b[at] {
            b'+' => at + 1,
            _ if matches!(b.get(at + 1..at + 3), Some(b"2B" | b"2b")) => at + 3,
            _ => continue,
        };
        if char_before(text, at).is_some_and(is_word_char) {
            continue;
        }
        let Some(end) = intl_phone_end(b, body) else { continue };
        if char_at(text, end).is_some_and(is_word_char) {
            continue;
        }
        rw.replace(at, end, PHONE_LABEL);
        from = end;
    }
    rw.finish()
}

fn intl_phone_end(b: &[u8], body: usize) -> Option<usize> {
    let mut pos = body;
    let mut lead = 0;
    while lead < 2 && matches!(b.get(pos), Some(b' ' | b'(')) {
        pos += 1;
        lead += 1;
    }
    if !b.get(pos).is_some_and(u8::is_ascii_digit) {
        return None;
    }
    // Ends of the first 15 digits of the chain.
    let mut digit_ends = [0usize; 15];
    digit_ends[0] = pos + 1;
    let mut count = 1;
    pos += 1;
    while count < 15 {
        let mut p = pos;
        let mut seps = 0;
        while seps < 2 && matches!(b.get(p), Some(b' ' | b'.' | b'-' | b'(' | b')')) {
            p += 1;
            seps += 1;
        }
        if !b.get(p).is_some_and(u8::is_ascii_digit) {
            break;
        }
        digit_ends[count] = p + 1;
        count += 1;
        pos = p + 1;
    }
    (8..=count).rev().map(|n| digit_ends[n - 1]).find(|&e| !b.get(e).is_some_and(u8::is_ascii_digit))
}

/// National shapes (the whole digit runs, a last group of four):
/// `(NN–NNNNN)` `[ .-]?` `NNN–NNNN` `[ .-]` `NNNN`, `NN–NNNNN [ .-] NNN–NNNN [ .-] NNNN`, `0NN–0NNNN [ -] N{6,8}`.
fn national_phone_end(b: &[u8], i: usize) -> Option<usize> {
    let sep = |p: usize| matches!(b.get(p), Some(b' ' | b'.' | b'-'));
    let run = |p: usize| digit_run_end(b, p) - p;
    // Run of `len` digits at `p` followed by a separator: the position after the separator.
    let group_then_sep = |p: usize, lens: std::ops::RangeInclusive<usize>| {
        let n = run(p);
        (lens.contains(&n) && sep(p + n)).then_some(p + n + 1)
    };
    let last_four = |p: usize| (run(p) == 4).then_some(p + 4);
    if b.get(i) == Some(&b'(') {
        let n = run(i + 1);
        if !((2..=5).contains(&n) && b.get(i + 1 + n) == Some(&b')')) {
            return None;
        }
        let mut p = i + 2 + n;
        if sep(p) {
            p += 1;
        }
        return group_then_sep(p, 3..=4).and_then(last_four);
    }
    if let Some(end) = group_then_sep(i, 2..=5).and_then(|p| group_then_sep(p, 3..=4)).and_then(last_four) {
        return Some(end);
    }
    let n = run(i);
    if b.get(i) == Some(&b'0') && (3..=5).contains(&n) && matches!(b.get(i + n), Some(b' ' | b'-')) {
        let tail = run(i + n + 1);
        return (6..=8).contains(&tail).then_some(i + n + 1 + tail);
    }
    None
}

/// National phones, not glued to a longer chain of digits and not inside an IBAN-shaped token (`shapes`:
/// sorted, disjoint; swept along with the candidates).
pub(super) fn national_phones(text: &str, cut: Option<usize>, shapes: &[(usize, usize)]) -> Rewritten {
    let b = text.as_bytes();
    let mut rw = Rewriter::new(text, cut);
    let mut next_shape = 0;
    each_token_start(text, |i| {
        let end = national_phone_end(b, i)?;
        while next_shape < shapes.len() && shapes[next_shape].1 <= i {
            next_shape += 1;
        }
        let in_iban_shape = shapes.get(next_shape).is_some_and(|&(a, _)| a < end);
        let glued = continues_digit_chain(text[..i].chars().rev()) || continues_digit_chain(text[end..].chars());
        if in_iban_shape || glued {
            return None;
        }
        rw.replace(i, end, PHONE_LABEL);
        Some(end)
    });
    rw.finish()
}

/// Does the text continue a digit chain on this side of a national phone candidate?
///
/// `side` yields the chars going away from the candidate. A chain is a word char, one of `-./:` followed by a
/// digit, or a space followed by a bare group of three or more digits (the rest of a longer number, such as a
/// Luhn-failing card `4111 1111 1111 1112`). A separately formatted number (`555-987-6543`, `(555)`) is not a
/// continuation, so lists of phones still work.
fn continues_digit_chain(mut side: impl Iterator<Item = char>) -> bool {
    match side.next() {
        None => false,
        Some(c) if is_word_char(c) => true,
        Some('-' | '.' | '/' | ':') => side.next().is_some_and(|c| c.is_ascii_digit()),
        Some(' ') => {
            let mut token = [0u8; 64];
            let mut n = 0;
            let mut all_digits = true;
            for c in side.take_while(|c| !c.is_whitespace()).take(64) {
                if n < token.len() && c.is_ascii() {
                    token[n] = c as u8;
                    n += 1;
                } else {
                    all_digits = false;
                }
            }
            let trim = |c: &u8| matches!(c, b',' | b'.' | b';' | b':' | b'!' | b'?');
            let group = &token[..n];
            let start = group.iter().position(|c| !trim(c)).unwrap_or(n);
            let end = group.iter().rposition(|c| !trim(c)).map_or(start, |p| p + 1);
            let group = &group[start..end.max(start)];
            all_digits && group.len() >= 3 && group.iter().all(u8::is_ascii_digit)
        }
        Some(_) => false,
    }
}
