//! PII and secret sanitizer for the audit log.
//!
//! # Why
//!
//! Audit rows keep the request bodies of write requests for forensics, but they must never store secrets or
//! personal data: the original TypeScript product leaked passwords and e-mail addresses into its audit table.
//! Everything that ends up in an audit row (request bodies, paths, query strings, user agents, ...) goes
//! through a [`Sanitizer`] first.
//!
//! The module is table-driven (the key tables are in `keys.rs`):
//!
//! * `SECRET_KEYS_EXACT` / `SECRET_KEYS_CONTAINED` / `SECRET_KEYS_SUFFIX`: key names that are secrets. The key
//!   **and** its value are dropped; the object gets a `"_dropped": [..]` array listing the (sorted) original
//!   key names removed at that level, so a reader knows the field was sent without seeing it.
//! * `PERSONAL_KEYS_EXACT` / `PERSONAL_KEYS_CONTAINED`: key names that carry personal data. The key is kept
//!   and its value (whatever its type, objects and arrays included) becomes `"[REDACTED]"`.
//! * `ALLOWED_KEYS`: common, non-personal keys that are never redacted by the personal-key rule even though
//!   they contain a personal word (`filename`, `orgname`, `title`, ...). Their values are still sanitized.
//! * Value patterns, applied to every string that was not already dropped/redacted by its key, wherever the
//!   data appears inside the string (see below); card numbers are also recognised as JSON numbers.
//! * [`Limits`] on depth, string length, array length, object width, serialized size and the bytes scanned
//!   per event, so a hostile body can neither blow up the audit table nor the writer's time.
//!
//! # Key matching
//!
//! Key names are normalised before matching: ASCII percent-escapes decoded (`p%61ss`, `api%5Fkey`, also
//! doubly encoded), lowercased, with `_`, `-`, `.`, `+` and whitespace removed, so `Pass_Word`,
//! `access-token`, `X-Api-Key` and `credit.card.number` become `password`, `accesstoken`, `xapikey` and
//! `creditcardnumber`. An `*_EXACT` entry matches only when the normalised key equals it (short words such as
//! `pin`, `pan`, `name` or `ip` would otherwise match half of all keys); secret exact words also match the
//! key's last word (`user_pw`, `isPrivate`, `user[pin]`, `cache_key`). A `*_CONTAINED` entry matches when the
//! normalised key contains it, a `*_SUFFIX` entry when it ends with it (`password_hash`, `fileHash`). The rules
//! are checked in this order: secret, allow-list, personal. A key longer than 1 KiB is secret unread.
//! Matching errs on the side of caution (`footprint` contains `otp`, `capacity` contains `city`): an
//! over-redacted audit row is an inconvenience, a leaked one is an incident.
//!
//! # Value patterns
//!
//! Applied in this order, each on the output of the previous one, so the more specific patterns win:
//!
//! 1. e-mail: `local@domain.tld` (also the URL-encoded `local%40domain.tld`) → `[EMAIL]`;
//! 2. JWT: three (or five) base64url parts joined by dots, the first starting `eyJ` → `[JWT]`;
//! 3. bearer credential: `Bearer` (any case) and a credential of 8+ chars → `Bearer [TOKEN]`;
//! 4. API-key-shaped tokens → `[TOKEN]`: a known provider prefix (`sk_live_`, `sb_secret_`, `ghp_`, `xoxb-`,
//!    `AKIA`, ...) with 16+ more chars, 32+ hex digits mixing digits and letters, or 32+ base64 / base64url
//!    chars that look random (both letter cases, the char class changing often). UUIDs, slugs, identifiers
//!    and paths do not look random;
//! 5. IBAN: 2 letters, 2 check digits and 11–30 alphanumerics (ASCII, any case), compact or grouped by single
//!    spaces in fours, accepted only if the ISO 13616 mod-97 checksum is 1 → `[IBAN]`;
//! 6. card: 13–19 digits, optionally separated by single spaces or dashes, accepted only if the Luhn check
//!    passes → `[CARD]`. As a JSON number: 13–19 digits, Luhn, a network's leading digit (2–6), so
//!    millisecond and microsecond timestamps stay numbers;
//! 7. phone → `[PHONE]`: international `+` (or URL-encoded `%2B`) followed by 8–15 digits with optional
//!    separators (space, dash, dot, parentheses), or national forms with separators (`(555) 123-4567`,
//!    `555-123-4567`, `555.123.4567`, `020 7946 0958`, `07700 900123`). The national shapes need separators
//!    and a last group of 4 digits, and a candidate glued to a longer number is rejected (a word char on
//!    either side; `-`, `.`, `/` or `:` followed by a digit; a space followed by a bare group of 3+ digits;
//!    or lying inside an IBAN-shaped token whose checksum failed). This keeps UUIDs, ISO dates and
//!    timestamps, versions (`1.2.3`), prices (`19.99`), plain integers (`1700000000`), thousands
//!    (`12.345.678`), Luhn-failing card-shaped numbers and checksum-failing IBANs out.
//!
//! Cards must be card-shaped: one group of 13–19 digits, or groups of at least 4 digits with a last group of
//! at least 3 (`4111 1111 1111 1111`, `3782 822463 10005`), so neighbouring phone numbers do not merge into a
//! "card".
//!
//! Every string goes through this pipeline (values, and [`Sanitizer::text`] for free text):
//!
//! 1. a string that is itself a JSON object or array (`"{\"password\":\"x\"}"`) is parsed, sanitized with
//!    the same rules at the string's depth and re-serialized (nothing else is done to it);
//! 2. the value patterns above;
//! 3. `"key": value` pairs (JSON fragments that do not parse), `key=value` pairs (query strings, the value
//!    ends at `&`, `;`, `#` or whitespace) and `key: value` pairs (log-style text, the value ends at `,`, `;`,
//!    `&` or a line break) whose key is secret or personal get their value replaced by `[REDACTED]`;
//! 4. the length limit (after sanitization, so a cut never exposes part of a pattern).
//!
//! A body of which only the first bytes were kept (`AUDIT_MAX_BODY_BYTES`, [`Sanitizer::body_prefix_in`]) is,
//! when JSON, cut back to its last complete member and closed (`prefix.rs`), then sanitized like a whole body,
//! so the key rules still apply to what is kept and a member cut in the middle is left out whole.
//!
//! A string holding percent-escapes (`555%20123%204567`) is also scanned decoded; when that view finds more,
//! the decoded, sanitized text is stored. [`Sanitizer::path_in`] applies steps 2–3 to each path segment on
//! its own, without the length limit.
//!
//! Object keys go through the value patterns and the length limit too (a map keyed by e-mail address would
//! otherwise leak); if two keys collapse onto the same text, later ones get a `#2`, `#3`, ... suffix. The
//! names listed in `_dropped` are treated the same way. If the input already has a `_dropped`,
//! `_truncatedKeys` or `_unscannedKeys` key, it is moved aside (`_dropped#2`, ...) rather than overwritten.
//!
//! # Cost
//!
//! Linear in the input. Every scanner is one left-to-right pass that looks at a bounded window around each
//! candidate (no regular expressions, no backtracking); overlap checks between passes sweep sorted spans. A
//! [`Budget`] ([`Limits::max_scan_bytes`], 64 KiB by default: eight times the largest stored body) bounds the bytes scanned per event: the audit
//! writer takes one per row and passes it to the path, user agent, query and body. Once spent, the rest of a
//! string becomes `[UNSCANNED: +N bytes]` (the last 256 scanned bytes are only read to see a pattern that
//! straddles the cut whole, never kept), the rest of an array `"[+N items unscanned]"` and the rest of an
//! object `"_unscannedKeys": N`. JSON bodies and JSON inside strings are parsed with the width and depth
//! limits applied by the parser (see `bounded.rs`): items, keys and containers past them are skipped by the
//! tokenizer without being allocated or recursed into, so a wide or 10,000-level body costs its tokenizing
//! only. The walk never goes deeper than 64 levels whatever [`Limits::max_depth`] says.
//!
//! # Known limits
//!
//! * Names, street addresses, birth dates, passport numbers etc. are recognised by their key (or by a
//!   `key=value` / `key: value` pair), not inside arbitrary prose: `"note": "Jane Doe lives at 1 Main St"` keeps
//!   the name and address.
//! * Numbers other than card numbers are never pattern-checked (a phone number sent as a JSON number under a
//!   neutral key survives).
//! * Only ASCII digits are considered by the card, IBAN and phone patterns; `+` for a space in query strings
//!   is not decoded.
//! * A base64 secret without `+` or `/` that is all one letter case, or shorter than 32 chars without a known
//!   prefix, is not recognised by shape (only by its key).
//!
//! # Limits
//!
//! See [`Limits`]. Numbers, booleans and nulls pass through unchanged, unless their key is secret (dropped) or
//! personal (redacted), or they are card numbers.

mod bounded;
mod json;
mod keys;
mod meta;
mod pairs;
mod patterns;
mod percent;
mod phones;
mod prefix;
#[cfg(test)]
mod proptests;
mod rewrite;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_coverage;
mod text;
mod tokens;

/// Replacement for the value of a personal key (and for secret values found inside free text).
const REDACTED: &str = "[REDACTED]";
/// [`REDACTED`] as a JSON string, for `"key": value` pairs in JSON fragments.
const REDACTED_JSON: &str = "\"[REDACTED]\"";
/// Replacement for a container nested deeper than [`Limits::max_depth`].
const TRUNCATED: &str = "[TRUNCATED]";
/// Key listing the secret keys removed from an object.
const DROPPED_FIELD: &str = "_dropped";
/// Key holding the number of keys cut from an object wider than [`Limits::max_object_keys`].
const TRUNCATED_KEYS_FIELD: &str = "_truncatedKeys";
/// Key holding the number of keys of an object left out because the scan budget was spent.
const UNSCANNED_KEYS_FIELD: &str = "_unscannedKeys";
/// Hard cap on [`Limits::max_depth`]: the walk recurses once per level, so the stack stays small whatever
/// the configuration.
const MAX_DEPTH: usize = 64;

const EMAIL_LABEL: &str = "[EMAIL]";
const IBAN_LABEL: &str = "[IBAN]";
const CARD_LABEL: &str = "[CARD]";
const PHONE_LABEL: &str = "[PHONE]";
const JWT_LABEL: &str = "[JWT]";
const TOKEN_LABEL: &str = "[TOKEN]";

/// Size limits applied by the [`Sanitizer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum container nesting (at most 64). The top-level object/array is level 1; an object or array that
    /// would be at level `max_depth + 1` becomes `"[TRUNCATED]"`. Scalars are never cut by depth.
    pub max_depth: usize,
    /// Strings (after sanitization) longer than this many chars are cut to this many chars and suffixed with
    /// `…[+N chars]`, where `N` is the number of chars cut.
    pub max_string_chars: usize,
    /// Arrays keep their first `max_array_items` items, followed by a `"[+N more items]"` element.
    pub max_array_items: usize,
    /// Objects keep their first `max_object_keys` keys (in the map's iteration order for
    /// [`Sanitizer::sanitize`], in the order of the text for parsed bodies), plus `"_truncatedKeys": N` where
    /// `N` is the number of keys cut.
    pub max_object_keys: usize,
    /// If the serialized sanitized value is larger than this, `{"truncated": true, "size": <bytes>}` is
    /// returned instead.
    pub max_output_bytes: usize,
    /// Bytes of text (string values, keys, free text, path segments) scanned for one event. Once spent, the
    /// rest of a string becomes `[UNSCANNED: +N bytes]`, the rest of an array `"[+N items unscanned]"` and the
    /// rest of an object `"_unscannedKeys": N`; none of it is read.
    pub max_scan_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_depth: 8,
            max_string_chars: 256,
            max_array_items: 50,
            max_object_keys: 100,
            max_output_bytes: 8192,
            max_scan_bytes: 64 * 1024,
        }
    }
}

/// What is left of the bytes one event may have scanned ([`Limits::max_scan_bytes`]). Get one per event
/// from [`Sanitizer::budget`] and pass it to each of the event's values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    remaining: usize,
}

impl Budget {
    /// Bytes that may still be scanned.
    pub fn remaining(&self) -> usize {
        self.remaining
    }

    /// Nothing more may be scanned.
    pub fn is_spent(&self) -> bool {
        self.remaining == 0
    }

    /// Spend up to `bytes`; returns how many were granted.
    fn take(&mut self, bytes: usize) -> usize {
        let granted = bytes.min(self.remaining);
        self.remaining -= granted;
        granted
    }
}

/// Sanitizes JSON values, request bodies and free text for the audit log. Build once, share in an `Arc`.
#[derive(Debug, Clone, Default)]
pub struct Sanitizer {
    limits: Limits,
}

// The sanitizer is shared by every request.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Sanitizer>();
};

impl Sanitizer {
    /// Build a sanitizer with these limits.
    pub fn new(limits: Limits) -> Self {
        Self { limits }
    }

    /// The limits this sanitizer applies.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// A fresh budget for one event.
    pub fn budget(&self) -> Budget {
        Budget { remaining: self.limits.max_scan_bytes }
    }
}
