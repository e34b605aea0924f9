//! Value patterns found anywhere inside a string: e-mail addresses, checksum-validated IBANs and card numbers
//! (phones and secret-shaped tokens have their own modules). Every scanner is a single left-to-right pass
//! whose work per position is bounded by the longest shape it looks for, so a pass is linear in its input.

use super::phones::{intl_phones, national_phones};
use super::rewrite::{Rewriter, Rewritten, Scrub, alnum_run_end, each_token_start};
use super::tokens::{api_keys, bearer_credentials, jwts};
use super::{CARD_LABEL, EMAIL_LABEL, IBAN_LABEL};

/// E-mail, secret-shaped tokens (JWT, bearer credential, API key), IBAN, card, phone — in that order, each
/// pass on the output of the previous one (a replaced span reads as its label).
pub(super) fn scrub_patterns(scrub: Scrub) -> Scrub {
    // Passes whose trigger is absent are skipped: most text has no digit, `@`, `+` or `%`.
    let has = |scrub: &Scrub, pred: fn(&u8) -> bool| scrub.text.as_bytes().iter().any(pred);
    let mut scrub = scrub;
    if has(&scrub, |c| matches!(c, b'@' | b'%')) {
        scrub = scrub.then(emails);
    }
    scrub = scrub.then(jwts).then(bearer_credentials).then(api_keys);
    if !has(&scrub, u8::is_ascii_digit) {
        return scrub;
    }
    scrub = scrub.then(ibans).then(cards);
    if has(&scrub, |c| matches!(c, b'+' | b'%')) {
        scrub = scrub.then(intl_phones);
    }
    scrub.then(|text, cut| {
        let shapes = iban_shapes(text);
        national_phones(text, cut, &shapes)
    })
}

fn is_local_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '.' | '_' | '%' | '+' | '-')
}

/// The next `@` or `%40` at or after `from`: (position, length).
fn next_at_sign(b: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut i = from;
    while let Some(off) = b.get(i..).and_then(|t| t.iter().position(|&c| c == b'@' || c == b'%')) {
        let at = i + off;
        if b[at] == b'@' {
            return Some((at, 1));
        }
        if b.get(at + 1..at + 3) == Some(b"40") {
            return Some((at, 3));
        }
        i = at + 1;
    }
    None
}

/// End of an e-mail domain starting at `start`: labels of letters, digits and `-` joined by dots, at least
/// two, the last one starting with two or more letters (the address ends after those letters).
fn email_domain_end(text: &str, start: usize) -> Option<usize> {
    let mut pos = start;
    let mut labels = 0;
    let mut best = None;
    loop {
        let mut letters = 0;
        let mut letters_end = pos;
        let mut in_letters = true;
        let mut end = pos;
        for (off, c) in text[pos..].char_indices() {
            if !(c.is_alphanumeric() || c == '-') {
                break;
            }
            end = pos + off + c.len_utf8();
            if in_letters && c.is_alphabetic() {
                letters += 1;
                letters_end = end;
            } else {
                in_letters = false;
            }
        }
        if end == pos {
            break;
        }
        labels += 1;
        if labels >= 2 && letters >= 2 {
            best = Some(letters_end);
        }
        if text.as_bytes().get(end) == Some(&b'.') {
            pos = end + 1;
        } else {
            break;
        }
    }
    best
}

/// `local@domain.tld` and `local%40domain.tld` → `[EMAIL]`.
fn emails(text: &str, cut: Option<usize>) -> Rewritten {
    let b = text.as_bytes();
    let mut rw = Rewriter::new(text, cut);
    let mut from = 0;
    while let Some((at, len)) = next_at_sign(b, from) {
        if let Some(end) = email_domain_end(text, at + len) {
            let floor = rw.last();
            let start = text[floor..at]
                .char_indices()
                .rev()
                .take_while(|&(_, c)| is_local_char(c))
                .last()
                .map_or(at, |(i, _)| floor + i);
            if start < at {
                rw.replace(start, end, EMAIL_LABEL);
                from = end;
                continue;
            }
        }
        from = at + 1;
    }
    rw.finish()
}

/// An IBAN-shaped token starting at `i`: two letters, two digits, then 11–30 alphanumerics (compact) or two
/// to seven space-separated groups of four and an optional last group of one to four. Returns the end of the
/// token and the ends of its groups (where a shorter IBAN could end).
fn iban_candidate(b: &[u8], i: usize) -> Option<(usize, [usize; 9], usize)> {
    let head = b.get(i..i + 4)?;
    if !(head[0].is_ascii_alphabetic()
        && head[1].is_ascii_alphabetic()
        && head[2].is_ascii_digit()
        && head[3].is_ascii_digit())
    {
        return None;
    }
    let mut ends = [0usize; 9];
    let run_end = alnum_run_end(b, i + 4);
    if run_end > i + 4 {
        ends[0] = run_end;
        return (11..=30).contains(&(run_end - i - 4)).then_some((run_end, ends, 1));
    }
    // Grouped: up to eight tokens, each a run of alphanumerics after exactly one space.
    ends[0] = i + 4;
    let mut lens = [0usize; 8];
    let mut count = 0;
    let mut pos = i + 4;
    while count < 8 && b.get(pos) == Some(&b' ') && b.get(pos + 1).is_some_and(u8::is_ascii_alphanumeric) {
        let end = alnum_run_end(b, pos + 1);
        lens[count] = end - pos - 1;
        ends[count + 1] = end;
        count += 1;
        pos = end;
    }
    let full = lens[..count].iter().take(7).take_while(|&&l| l == 4).count();
    if full < 2 {
        return None;
    }
    let groups = if count > full && (1..=4).contains(&lens[full]) { full + 1 } else { full };
    Some((ends[groups], ends, groups + 1))
}

/// The longest prefix of an IBAN-shaped token, ending at a group boundary (`ends`, ascending), that passes
/// mod-97. One pass over the token: the remainder of the part after the first four chars grows char by char,
/// and at each boundary the first four chars are appended to it (ISO 13616 moves them to the end).
fn valid_iban_end(b: &[u8], start: usize, ends: &[usize]) -> Option<usize> {
    let (head_rem, head_scale) = b[start..start + 4].iter().fold((0u32, 1u32), |(rem, scale), &c| {
        let (v, shift) = iban_digit(c);
        ((rem * shift + v) % 97, (scale * shift) % 97)
    });
    let mut rem = 0u32;
    let mut len = 4;
    let mut best = None;
    let mut next = ends.iter().copied().peekable();
    for (i, &c) in b.iter().enumerate().take(*ends.last()?).skip(start + 4) {
        if next.next_if_eq(&i).is_some() && check(rem, head_rem, head_scale, len) {
            best = Some(i);
        }
        if c != b' ' {
            let (v, shift) = iban_digit(c);
            rem = (rem * shift + v) % 97;
            len += 1;
        }
    }
    if check(rem, head_rem, head_scale, len) {
        best = ends.last().copied();
    }
    best
}

/// Does an IBAN of `len` chars whose part after the first four has remainder `rem` pass mod-97?
fn check(rem: u32, head_rem: u32, head_scale: u32, len: usize) -> bool {
    (15..=34).contains(&len) && (rem * head_scale + head_rem) % 97 == 1
}

/// An IBAN char as a number (letters are 10–35) and the power of ten it shifts the number by.
fn iban_digit(c: u8) -> (u32, u32) {
    match c {
        b'0'..=b'9' => (u32::from(c - b'0'), 10),
        _ => (u32::from(c.to_ascii_uppercase() - b'A') + 10, 100),
    }
}

/// IBANs (not glued to a preceding word char; a grouped IBAN may be followed by an unrelated word) → `[IBAN]`.
fn ibans(text: &str, cut: Option<usize>) -> Rewritten {
    let b = text.as_bytes();
    let mut rw = Rewriter::new(text, cut);
    each_token_start(text, |i| {
        let (_, ends, n) = iban_candidate(b, i)?;
        let end = valid_iban_end(b, i, &ends[..n])?;
        rw.replace(i, end, IBAN_LABEL);
        Some(end)
    });
    rw.finish()
}

/// The IBAN-shaped tokens of `text` (checksum or not), sorted and disjoint: national phone shapes inside them
/// are not phones.
fn iban_shapes(text: &str) -> Vec<(usize, usize)> {
    let b = text.as_bytes();
    let mut shapes = Vec::new();
    each_token_start(text, |i| {
        let (end, _, _) = iban_candidate(b, i)?;
        shapes.push((i, end));
        Some(end)
    });
    shapes
}

/// Within each run of digits separated by single spaces/dashes, replace the leftmost-longest windows of
/// whole groups holding 13–19 digits that pass Luhn. A window is card-shaped: a single group, or groups of
/// at least 4 digits with a last group of at least 3 (`4111 1111 1111 1111`, `3782 822463 10005`,
/// `6304 0000 0000 0000 018`), so space-separated phone numbers do not merge into a "card".
fn cards(text: &str, cut: Option<usize>) -> Rewritten {
    let b = text.as_bytes();
    let mut rw = Rewriter::new(text, cut);
    let mut groups: Vec<(usize, usize)> = Vec::new();
    let mut pos = 0;
    while let Some(off) = b.get(pos..).and_then(|t| t.iter().position(u8::is_ascii_digit)) {
        // One run: digits, and single spaces or dashes between digits.
        groups.clear();
        let mut start = pos + off;
        let mut i = start;
        loop {
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            groups.push((start, i));
            if matches!(b.get(i), Some(b' ' | b'-')) && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
                start = i + 1;
                i += 1;
            } else {
                break;
            }
        }
        pos = i;
        replace_card_windows(b, &groups, &mut rw);
    }
    rw.finish()
}

fn replace_card_windows(b: &[u8], groups: &[(usize, usize)], rw: &mut Rewriter<'_>) {
    let mut digits = [0u8; 19];
    let mut i = 0;
    while i < groups.len() {
        // Windows starting at group i with at most 19 digits (so at most 19 groups): the longest valid wins.
        let mut n = 0;
        let mut found = None;
        for (j, &(a, z)) in groups.iter().enumerate().skip(i) {
            if n + (z - a) > digits.len() {
                break;
            }
            digits[n..n + (z - a)].copy_from_slice(&b[a..z]);
            n += z - a;
            if n >= 13 && (j == i || z - a >= 3) && luhn_valid(&digits[..n]) {
                found = Some(j + 1);
            }
            // Only the last group of a card may be shorter than 4 digits (4-4-4-4-3, 4-6-5, ...).
            if z - a < 4 {
                break;
            }
        }
        match found {
            Some(j) => {
                rw.replace(groups[i].0, groups[j - 1].1, CARD_LABEL);
                i = j;
            }
            None => i += 1,
        }
    }
}

/// A JSON number that is a card number: 13–19 digits (an integral float too), Luhn-valid, with a card
/// network's leading digit (2–6; 13-digit cards start with 4). The leading-digit rule keeps millisecond and
/// microsecond timestamps out.
pub(super) fn is_card_number(n: &serde_json::Number) -> bool {
    let s = n.to_string();
    let s = s.strip_prefix('-').unwrap_or(&s);
    let digits = s.strip_suffix(".0").unwrap_or(s).as_bytes();
    (13..=19).contains(&digits.len())
        && digits.iter().all(u8::is_ascii_digit)
        && (b'2'..=b'6').contains(&digits[0])
        && (digits.len() != 13 || digits[0] == b'4')
        && luhn_valid(digits)
}

/// Luhn check over ASCII digits.
pub(super) fn luhn_valid(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d - b'0');
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

/// ISO 13616 mod-97 check over an IBAN without spaces (ASCII alphanumerics, any case): the check the scanner
/// applies, over a whole token.
#[cfg(test)]
pub(super) fn iban_valid(iban: &[u8]) -> bool {
    iban.len() >= 4
        && iban.iter().all(u8::is_ascii_alphanumeric)
        && valid_iban_end(iban, 0, &[iban.len()]) == Some(iban.len())
}
