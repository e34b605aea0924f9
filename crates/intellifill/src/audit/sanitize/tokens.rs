//! Secret-shaped tokens found under any key and inside free text: JWTs (`[JWT]`), the credential after
//! `Bearer` and API-key-shaped tokens (`[TOKEN]`).
//!
//! API-key-shaped: a run of URL-safe chars (`A-Z a-z 0-9 _ -`) that starts with a known secret prefix
//! (`sk_live_`, `sb_secret_`, `ghp_`, `xoxb-`, ... followed by 16 or more chars; `AKIA` and 16 upper-case
//! alphanumerics), or of 32 or more chars that look random (upper and lower case, changing char class
//! often), or a run of 32 or more hex digits mixing digits and letters. A standard base64
//! token (`+` and `/` inside, `=` padding) is judged as a whole by the same randomness rule. Words joined by
//! dashes, camel-case identifiers, UUIDs and paths do not look random and are kept.

use super::rewrite::{Rewriter, Rewritten, is_word_char};
use super::{JWT_LABEL, TOKEN_LABEL};

/// Prefixes of provider secrets (Stripe, Supabase, GitHub, Slack, GitLab, OpenAI, Google).
const SECRET_PREFIXES: &[&str] = &[
    "sk_live_",
    "sk_test_",
    "rk_live_",
    "rk_test_",
    "pk_live_",
    "pk_test_",
    "sb_secret_",
    "sb_publishable_",
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "xoxb-",
    "xoxp-",
    "xoxa-",
    "glpat-",
    "sk-",
    "AIza",
];

/// Chars after a secret prefix for the token to count as one.
const MIN_AFTER_PREFIX: usize = 16;
/// Length from which a random-looking run is a token.
const MIN_RANDOM_LEN: usize = 32;

fn is_url_safe(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

fn url_safe_end(b: &[u8], i: usize) -> usize {
    i + b.get(i..).map_or(0, |t| t.iter().take_while(|c| is_url_safe(**c)).count())
}

/// `eyJ...` header, payload and signature (and the two more parts of an encrypted token) joined by dots.
pub(super) fn jwts(text: &str, cut: Option<usize>) -> Rewritten {
    let b = text.as_bytes();
    let mut rw = Rewriter::new(text, cut);
    let mut from = 0;
    while let Some(off) = text.get(from..).and_then(|t| t.find("eyJ")) {
        let start = from + off;
        let header_end = url_safe_end(b, start);
        // Every later `eyJ` inside this run ends its header at the same place: judge the run once.
        from = header_end.max(start + 3);
        if header_end - start < 10 || b.get(header_end) != Some(&b'.') {
            continue;
        }
        let payload_end = url_safe_end(b, header_end + 1);
        if payload_end - header_end - 1 < 2 || b.get(payload_end) != Some(&b'.') {
            continue;
        }
        let mut end = url_safe_end(b, payload_end + 1);
        for _ in 0..2 {
            if b.get(end) == Some(&b'.') && b.get(end + 1).is_some_and(|c| is_url_safe(*c)) {
                end = url_safe_end(b, end + 1);
            } else {
                break;
            }
        }
        rw.replace(start, end, JWT_LABEL);
        from = end;
    }
    rw.finish()
}

fn is_credential_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
}

/// `Bearer <credential>` (any case, credential of 8+ token68 chars) → `Bearer [TOKEN]`.
pub(super) fn bearer_credentials(text: &str, cut: Option<usize>) -> Rewritten {
    let b = text.as_bytes();
    let mut rw = Rewriter::new(text, cut);
    let mut from = 0;
    while let Some(off) = b.get(from..).and_then(|t| t.iter().position(|c| matches!(c, b'b' | b'B'))) {
        let at = from + off;
        from = at + 1;
        if !b.get(at..at + 6).is_some_and(|w| w.eq_ignore_ascii_case(b"bearer"))
            || text[..at].chars().next_back().is_some_and(is_word_char)
        {
            continue;
        }
        let mut start = at + 6;
        while matches!(b.get(start), Some(b' ' | b'\t')) {
            start += 1;
        }
        if start == at + 6 {
            continue;
        }
        let core_end = start + b[start..].iter().take_while(|c| is_credential_char(**c)).count();
        let end = core_end + b[core_end..].iter().take_while(|c| **c == b'=').count();
        if core_end - start >= 8 && start >= rw.last() {
            rw.replace(start, end, TOKEN_LABEL);
            from = end;
        }
    }
    rw.finish()
}

/// API-key-shaped tokens → `[TOKEN]`.
pub(super) fn api_keys(text: &str, cut: Option<usize>) -> Rewritten {
    let b = text.as_bytes();
    let mut rw = Rewriter::new(text, cut);
    let mut i = 0;
    while i < b.len() {
        if !is_joined(b[i]) {
            i += 1;
            continue;
        }
        // A run of base64 chars (`+` and `/` included) and its `=` padding.
        let core_end = i + b[i..].iter().take_while(|c| is_joined(**c)).count();
        let end = core_end + b[core_end..].iter().take_while(|c| **c == b'=').count();
        let run = &b[i..core_end];
        if run.iter().any(|c| matches!(c, b'+' | b'/')) && looks_random(run) {
            rw.replace(i, end, TOKEN_LABEL);
        } else {
            url_safe_tokens(b, i, core_end, &mut rw);
        }
        i = end.max(i + 1);
    }
    rw.finish()
}

fn is_joined(c: u8) -> bool {
    is_url_safe(c) || c == b'+' || c == b'/'
}

/// The URL-safe pieces of `b[start..end]` (split at `+` and `/`) that are tokens.
fn url_safe_tokens(b: &[u8], start: usize, end: usize, rw: &mut Rewriter<'_>) {
    let mut i = start;
    while i < end {
        let piece_end = url_safe_end(b, i).min(end);
        let piece = &b[i..piece_end];
        if has_secret_prefix(piece) || looks_random(piece) {
            rw.replace(i, piece_end, TOKEN_LABEL);
        } else {
            // Hex digests inside a dashed or underscored name (`sha256-<hex>`).
            let mut j = i;
            while j < piece_end {
                let word_end = j + b[j..piece_end].iter().take_while(|c| c.is_ascii_alphanumeric()).count();
                if is_hex_token(&b[j..word_end]) {
                    rw.replace(j, word_end, TOKEN_LABEL);
                }
                j = word_end + 1;
            }
        }
        i = piece_end + 1;
    }
}

fn has_secret_prefix(piece: &[u8]) -> bool {
    let aws = piece.len() == 20
        && (piece.starts_with(b"AKIA") || piece.starts_with(b"ASIA"))
        && piece.iter().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    aws || SECRET_PREFIXES.iter().any(|p| piece.len() >= p.len() + MIN_AFTER_PREFIX && piece.starts_with(p.as_bytes()))
}

fn is_hex_token(word: &[u8]) -> bool {
    word.len() >= MIN_RANDOM_LEN
        && word.iter().all(u8::is_ascii_hexdigit)
        && word.iter().any(u8::is_ascii_digit)
        && word.iter().any(u8::is_ascii_alphabetic)
}

/// 32+ chars with upper and lower case letters whose char class (upper, lower, digit, other) changes between
/// at least 3 in 10 neighbouring pairs. Random base64 changes class about two times in three, words and
/// identifiers rarely; single-case runs (UUIDs, slugs) are never random-looking (hex has its own rule).
fn looks_random(run: &[u8]) -> bool {
    if run.len() < MIN_RANDOM_LEN {
        return false;
    }
    let class = |c: u8| match c {
        b'A'..=b'Z' => 0u8,
        b'a'..=b'z' => 1,
        b'0'..=b'9' => 2,
        _ => 3,
    };
    let mut seen = [false; 4];
    let mut changes = 0usize;
    for (k, &c) in run.iter().enumerate() {
        seen[usize::from(class(c))] = true;
        if k > 0 && class(c) != class(run[k - 1]) {
            changes += 1;
        }
    }
    seen[0] && seen[1] && changes * 10 >= (run.len() - 1) * 3
}
