//! Value patterns found anywhere inside a string: e-mail addresses, checksum-validated IBANs and card numbers,
//! and phone numbers.

use regex::Regex;

use super::{CARD_LABEL, EMAIL_LABEL, IBAN_LABEL, PHONE_LABEL, Sanitizer};

impl Sanitizer {
    /// E-mail, IBAN, card, phone — in that order.
    pub(super) fn scrub_patterns(&self, s: &str) -> String {
        let s = self.email.replace_all(s, EMAIL_LABEL);
        let s = replace_validated(&s, &self.iban, IBAN_LABEL, accept_iban);
        let s = self.scrub_cards(&s);
        let s = replace_validated(&s, &self.phone_intl, PHONE_LABEL, accept_intl_phone);
        // IBAN-shaped tokens that failed the checksum are left alone rather than half-reported as phones.
        let iban_shaped: Vec<(usize, usize)> = self
            .iban
            .captures_iter(&s)
            .filter_map(|caps| caps.name("m"))
            .filter(|m| !char_before(&s, m.start()).is_some_and(is_word_char))
            .map(|m| (m.start(), m.end()))
            .collect();
        replace_validated(&s, &self.phone_national, PHONE_LABEL, |text, start, end| {
            let in_iban_shape = iban_shaped.iter().any(|&(a, b)| start < b && a < end);
            if in_iban_shape { None } else { accept_national_phone(text, start, end) }
        })
    }

    /// Within each run of digits separated by single spaces/dashes, replace the leftmost-longest windows of
    /// whole groups holding 13–19 digits that pass Luhn. A window is card-shaped: a single group, or groups of
    /// at least 4 digits with a last group of at least 3 (`4111 1111 1111 1111`, `3782 822463 10005`,
    /// `6304 0000 0000 0000 018`), so space-separated phone numbers do not merge into a "card".
    fn scrub_cards(&self, s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        let mut last = 0;
        for run in self.digit_run.find_iter(s) {
            // (start, end) byte offsets of each digit group of the run.
            let mut groups: Vec<(usize, usize)> = Vec::new();
            let mut group_start = run.start();
            for (i, b) in run.as_str().bytes().enumerate() {
                if !b.is_ascii_digit() {
                    groups.push((group_start, run.start() + i));
                    group_start = run.start() + i + 1;
                }
            }
            groups.push((group_start, run.end()));

            let mut i = 0;
            while i < groups.len() {
                // Windows starting at group i with at most 19 digits (so at most 19 groups): longest first.
                let mut digits: Vec<u8> = Vec::with_capacity(19);
                let mut windows: Vec<(usize, bool)> = Vec::new();
                for (j, &(a, b)) in groups.iter().enumerate().skip(i) {
                    digits.extend_from_slice(&s.as_bytes()[a..b]);
                    if digits.len() > 19 {
                        break;
                    }
                    if digits.len() >= 13 && (j == i || b - a >= 3) {
                        windows.push((j + 1, luhn_valid(&digits)));
                    }
                    // Only the last group of a card may be shorter than 4 digits (4-4-4-4-3, 4-6-5, ...).
                    if b - a < 4 {
                        break;
                    }
                }
                let found = windows.iter().rev().find(|(_, valid)| *valid).map(|&(j, _)| j);
                match found {
                    Some(j) => {
                        out.push_str(&s[last..groups[i].0]);
                        out.push_str(CARD_LABEL);
                        last = groups[j - 1].1;
                        i = j;
                    }
                    None => i += 1,
                }
            }
        }
        out.push_str(&s[last..]);
        out
    }
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

/// ISO 13616 mod-97 check over an IBAN without spaces (ASCII alphanumerics, any case).
pub(super) fn iban_valid(iban: &[u8]) -> bool {
    if !(15..=34).contains(&iban.len()) || !iban.iter().all(u8::is_ascii_alphanumeric) {
        return false;
    }
    let (head, tail) = iban.split_at(4);
    let mut rem = 0u32;
    for &c in tail.iter().chain(head) {
        let v = match c {
            b'0'..=b'9' => u32::from(c - b'0'),
            _ => u32::from(c.to_ascii_uppercase() - b'A') + 10,
        };
        rem = if v >= 10 { (rem * 100 + v) % 97 } else { (rem * 10 + v) % 97 };
    }
    rem == 1
}

fn char_before(text: &str, idx: usize) -> Option<char> {
    text[..idx].chars().next_back()
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
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
            let token: String = side.take_while(|c| !c.is_whitespace()).take(64).collect();
            let group = token.trim_matches(|c: char| matches!(c, ',' | '.' | ';' | ':' | '!' | '?'));
            group.len() >= 3 && group.bytes().all(|b| b.is_ascii_digit())
        }
        Some(_) => false,
    }
}

/// Replace every accepted candidate of `re` (its group `m`) with `label`.
///
/// `accept(text, start, end)` returns the end of the accepted span (it may shorten the candidate) or `None`.
/// After a rejected candidate the search resumes one char after its start, so overlapping candidates are
/// still considered.
fn replace_validated(
    text: &str,
    re: &Regex,
    label: &str,
    accept: impl Fn(&str, usize, usize) -> Option<usize>,
) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    let mut pos = 0;
    while pos < text.len() {
        let Some(m) = re.captures_at(text, pos).and_then(|caps| caps.name("m")) else { break };
        match accept(text, m.start(), m.end()) {
            Some(end) if end > m.start() => {
                out.push_str(&text[last..m.start()]);
                out.push_str(label);
                last = end;
                pos = end;
            }
            _ => pos = m.start() + text[m.start()..].chars().next().map_or(1, char::len_utf8),
        }
    }
    out.push_str(&text[last..]);
    out
}

/// IBAN candidate: not glued to a preceding word char; the longest prefix ending at a group boundary that
/// passes mod-97 wins (a grouped IBAN may be followed by an unrelated 4-letter word).
fn accept_iban(text: &str, start: usize, end: usize) -> Option<usize> {
    if char_before(text, start).is_some_and(is_word_char) {
        return None;
    }
    let candidate = &text[start..end];
    let ends = candidate.match_indices(' ').map(|(i, _)| i).chain(std::iter::once(candidate.len()));
    let mut ends: Vec<usize> = ends.collect();
    ends.reverse();
    ends.into_iter()
        .find(|&e| {
            let compact: Vec<u8> = candidate[..e].bytes().filter(|b| *b != b' ').collect();
            iban_valid(&compact)
        })
        .map(|e| start + e)
}

/// International phone: not glued to word chars on either side.
fn accept_intl_phone(text: &str, start: usize, end: usize) -> Option<usize> {
    let glued =
        char_before(text, start).is_some_and(is_word_char) || text[end..].chars().next().is_some_and(is_word_char);
    (!glued).then_some(end)
}

/// National phone: not part of a longer chain of digits (UUIDs, dates, card-shaped numbers, ...).
fn accept_national_phone(text: &str, start: usize, end: usize) -> Option<usize> {
    let glued = continues_digit_chain(text[..start].chars().rev()) || continues_digit_chain(text[end..].chars());
    (!glued).then_some(end)
}
