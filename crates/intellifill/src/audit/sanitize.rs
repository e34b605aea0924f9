//! PII and secret sanitizer for the audit log.
//!
//! # Why
//!
//! Audit rows keep the request bodies of write requests for forensics, but they must never store secrets or
//! personal data: the original TypeScript product leaked passwords and e-mail addresses into its audit table.
//! Everything that ends up in an audit row (request bodies, query strings, user agents, ...) goes through a
//! [`Sanitizer`] first.
//!
//! The module is table-driven:
//!
//! * [`SECRET_KEYS_EXACT`] / [`SECRET_KEYS_CONTAINED`]: key names that are secrets. The key **and** its value are
//!   dropped; the object gets a `"_dropped": [..]` array listing the (sorted) original key names removed at that
//!   level, so a reader knows the field was sent without seeing it.
//! * [`PERSONAL_KEYS_EXACT`] / [`PERSONAL_KEYS_CONTAINED`]: key names that carry personal data. The key is kept
//!   and its value (whatever its type, objects and arrays included) becomes `"[REDACTED]"`.
//! * [`ALLOWED_KEYS`]: common, non-personal keys that are never redacted by the personal-key rule even though
//!   they contain a personal word (`filename`, `orgname`, `title`, ...). Their values are still sanitized.
//! * Value patterns, applied to every string that was not already dropped/redacted by its key, wherever the
//!   data appears inside the string: e-mail addresses (`[EMAIL]`), IBANs with a valid ISO 13616 mod-97
//!   checksum (`[IBAN]`), card numbers passing the Luhn check (`[CARD]`) and phone numbers (`[PHONE]`).
//! * [`Limits`] on depth, string length, array length, object width and serialized size, so a hostile body
//!   cannot blow up the audit table.
//!
//! # Key matching
//!
//! Key names are normalised before matching: lowercased, with `_`, `-`, `.` and whitespace removed, so
//! `Pass_Word`, `access-token`, `X-Api-Key` and `credit.card.number` become `password`, `accesstoken`,
//! `xapikey` and `creditcardnumber`. An `*_EXACT` entry matches only when the normalised key equals it (short
//! words such as `pin`, `pan`, `name` or `ip` would otherwise match half of all keys); a `*_CONTAINED` entry
//! matches when the normalised key contains it. The rules are checked in this order: secret, allow-list,
//! personal. Contained matching errs on the side of caution (`footprint` contains `otp`, `capacity` contains
//! `city`): an over-redacted audit row is an inconvenience, a leaked one is an incident.
//!
//! # Value patterns
//!
//! Applied in this order so the more specific, checksum-validated patterns win:
//!
//! 1. e-mail: `local@domain.tld` (also the URL-encoded `local%40domain.tld`) → `[EMAIL]`;
//! 2. IBAN: 2 letters, 2 check digits and 11–30 alphanumerics (ASCII, any case), compact or grouped by single
//!    spaces in fours, accepted only if the ISO 13616 mod-97 checksum is 1 → `[IBAN]`;
//! 3. card: 13–19 digits, optionally separated by single spaces or dashes, accepted only if the Luhn check
//!    passes → `[CARD]`;
//! 4. phone → `[PHONE]`: international `+` (or URL-encoded `%2B`) followed by 8–15 digits with optional
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
//! 1. a string that is itself a JSON object or array (`"{\"password\":\"x\"}"`) is parsed, sanitized with the
//!    same rules at the string's depth and re-serialized (nothing else is done to it);
//! 2. the value patterns above;
//! 3. `"key": value` pairs (JSON fragments that do not parse), `key=value` pairs (query strings, the value
//!    ends at `&`, `;`, `#` or whitespace) and `key: value` pairs (log-style text, the value ends at `,`, `;`,
//!    `&` or a line break) whose key is secret or personal get their value replaced by `[REDACTED]`;
//! 4. the length limit (after sanitization, so a cut never exposes part of a pattern).
//!
//! Object keys go through the value patterns and the length limit too (a map keyed by e-mail address would
//! otherwise leak); if two keys collapse onto the same text, later ones get a `#2`, `#3`, ... suffix. The
//! names listed in `_dropped` are treated the same way. If the input already has a `_dropped` or
//! `_truncatedKeys` key, it is moved aside to `_dropped#2` / `_truncatedKeys#2` rather than overwritten.
//!
//! # Known limits
//!
//! * Names, street addresses, birth dates, passport numbers etc. are recognised by their key (or by a
//!   `key=value` / `key: value` pair), not inside arbitrary prose: `"note": "Jane Doe lives at 1 Main St"` keeps
//!   the name and address.
//! * Numbers are never pattern-checked (a card number sent as a JSON number under a neutral key survives).
//! * Only ASCII digits are considered by the card, IBAN and phone patterns.
//! * The cost is linear in the input: every string is scanned in full before it is cut to
//!   `max_string_chars`, so the server's request body size limit bounds the work.
//!
//! # Limits
//!
//! See [`Limits`]. Numbers, booleans and nulls pass through unchanged, unless their key is secret (dropped) or
//! personal (redacted).

use std::io;

use regex::{Captures, Regex};
use serde_json::{Map, Value};

/// Replacement for the value of a personal key (and for secret values found inside free text).
pub const REDACTED: &str = "[REDACTED]";
/// Replacement for a container nested deeper than [`Limits::max_depth`].
pub const TRUNCATED: &str = "[TRUNCATED]";
/// Key listing the secret keys removed from an object.
pub const DROPPED_FIELD: &str = "_dropped";
/// Key holding the number of keys cut from an object wider than [`Limits::max_object_keys`].
pub const TRUNCATED_KEYS_FIELD: &str = "_truncatedKeys";

const EMAIL_LABEL: &str = "[EMAIL]";
const IBAN_LABEL: &str = "[IBAN]";
const CARD_LABEL: &str = "[CARD]";
const PHONE_LABEL: &str = "[PHONE]";

/// Secret key names matched on equality with the normalised key. The key and value are dropped.
pub const SECRET_KEYS_EXACT: &[&str] = &["pwd", "auth", "session", "pan", "pin"];

/// Secret key names matched when contained in the normalised key. The key and value are dropped.
///
/// `credential` and `passcode` are additions to the original list.
pub const SECRET_KEYS_CONTAINED: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "passcode",
    "secret",
    "token",
    "apikey",
    "accesskey",
    "privatekey",
    "secretkey",
    "authorization",
    "credential",
    "cookie",
    "sessionid",
    "cardnumber",
    "creditcard",
    "ccnumber",
    "cardno",
    "cvv",
    "cvc",
    "cvv2",
    "securitycode",
    "ssn",
    "socialsecurity",
    "otp",
    "mfacode",
    "signature",
];

/// Personal key names matched on equality with the normalised key. The value becomes `"[REDACTED]"`.
pub const PERSONAL_KEYS_EXACT: &[&str] = &["mail", "tel", "name", "vat", "ip"];

/// Personal key names matched when contained in the normalised key. The value becomes `"[REDACTED]"`.
///
/// `birth` covers `birthdate`, `dateofbirth`, `birthday`, ... The person-name keys `holdername`, `contactname`,
/// `customername`, `recipientname`, `nickname`, `maidenname` and `legalname` are additions to the original
/// list (`name` itself only matches exactly).
pub const PERSONAL_KEYS_CONTAINED: &[&str] = &[
    "email",
    "phone",
    "mobile",
    "telephone",
    "fax",
    "firstname",
    "lastname",
    "fullname",
    "surname",
    "givenname",
    "familyname",
    "middlename",
    "displayname",
    "username",
    "holdername",
    "contactname",
    "customername",
    "recipientname",
    "nickname",
    "maidenname",
    "legalname",
    "address",
    "street",
    "city",
    "postcode",
    "postalcode",
    "zip",
    "zipcode",
    "birth",
    "dob",
    "passport",
    "nationalid",
    "taxid",
    "iban",
    "bic",
    "swift",
    "accountnumber",
    "bankaccount",
    "routingnumber",
    "sortcode",
    "ipaddress",
    "geo",
    "latitude",
    "longitude",
];

/// Allow-list: normalised key names that are never redacted by the personal-key rule.
///
/// These are common, non-personal keys of the API whose names contain (or resemble) a personal word: file
/// names, organisation names (`orgName`, `organizationName`, `organisationName`), titles (`title`,
/// `displayTitle`), `slug`, `content`, `status`, `role` and `type`. Matching is on equality with the
/// normalised key. The allow-list does not override the secret rule, and the values of allow-listed keys are
/// still sanitized (value patterns, nested keys, limits): only the key-based redaction is skipped.
pub const ALLOWED_KEYS: &[&str] = &[
    "filename",
    "orgname",
    "organizationname",
    "organisationname",
    "displaytitle",
    "slug",
    "title",
    "content",
    "status",
    "role",
    "type",
];

/// Size limits applied by the [`Sanitizer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum container nesting. The top-level object/array is level 1; an object or array that would be at
    /// level `max_depth + 1` becomes `"[TRUNCATED]"`. Scalars are never cut by depth.
    pub max_depth: usize,
    /// Strings (after sanitization) longer than this many chars are cut to this many chars and suffixed with
    /// `…[+N chars]`, where `N` is the number of chars cut.
    pub max_string_chars: usize,
    /// Arrays keep their first `max_array_items` items, followed by a `"[+N more items]"` element.
    pub max_array_items: usize,
    /// Objects keep their first `max_object_keys` keys (in the map's iteration order), plus
    /// `"_truncatedKeys": N` where `N` is the number of keys cut.
    pub max_object_keys: usize,
    /// If the serialized sanitized value is larger than this, `{"truncated": true, "size": <bytes>}` is
    /// returned instead.
    pub max_output_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_depth: 8, max_string_chars: 256, max_array_items: 50, max_object_keys: 100, max_output_bytes: 8192 }
    }
}

/// How a key is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyClass {
    /// Key and value dropped.
    Secret,
    /// Allow-listed: never redacted by the personal rule.
    Allowed,
    /// Key kept, value redacted.
    Personal,
    /// Value sanitized recursively.
    Plain,
}

/// Lowercase and remove `_`, `-`, `.` and whitespace.
fn normalise_key(key: &str) -> String {
    key.chars().filter(|c| !matches!(c, '_' | '-' | '.') && !c.is_whitespace()).flat_map(char::to_lowercase).collect()
}

fn classify_key(key: &str) -> KeyClass {
    let norm = normalise_key(key);
    let matches = |exact: &[&str], contained: &[&str]| {
        exact.iter().any(|w| norm == *w) || contained.iter().any(|w| norm.contains(w))
    };
    if matches(SECRET_KEYS_EXACT, SECRET_KEYS_CONTAINED) {
        KeyClass::Secret
    } else if ALLOWED_KEYS.contains(&norm.as_str()) {
        KeyClass::Allowed
    } else if matches(PERSONAL_KEYS_EXACT, PERSONAL_KEYS_CONTAINED) {
        KeyClass::Personal
    } else {
        KeyClass::Plain
    }
}

/// A secret or personal key name (our own replacement labels are not keys).
fn is_sensitive_key(key: &str) -> bool {
    ![EMAIL_LABEL, IBAN_LABEL, CARD_LABEL, PHONE_LABEL, REDACTED, TRUNCATED].contains(&key)
        && matches!(classify_key(key), KeyClass::Secret | KeyClass::Personal)
}

/// Is this a JSON media type: `application/json` or `application/*+json`, parameters allowed, any case.
fn is_json_content_type(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json"
        || essence.strip_prefix("application/").and_then(|sub| sub.strip_suffix("+json")).is_some_and(|s| !s.is_empty())
}

/// Luhn check over ASCII digits.
fn luhn_valid(digits: &[u8]) -> bool {
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
fn iban_valid(iban: &[u8]) -> bool {
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

/// Counts bytes written, to measure a serialized value without building the string.
struct ByteCounter(usize);

impl io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn serialized_len(value: &Value) -> usize {
    let mut counter = ByteCounter(0);
    match serde_json::to_writer(&mut counter, value) {
        Ok(()) => counter.0,
        // Serializing a `Value` cannot fail; if it ever did, treat the value as too large to store.
        Err(_) => usize::MAX,
    }
}

/// A key that is not in `map` yet: `base`, else `base#2`, `base#3`, ...
fn unique_key(map: &Map<String, Value>, base: String) -> String {
    let mut candidate = base.clone();
    let mut n = 1usize;
    while map.contains_key(&candidate) {
        n += 1;
        candidate = format!("{base}#{n}");
    }
    candidate
}

/// Insert one of our metadata fields; an input key of the same name is moved aside, not overwritten.
fn insert_meta(map: &mut Map<String, Value>, name: &str, value: Value) {
    if let Some(existing) = map.remove(name) {
        let aside = unique_key(map, format!("{name}#2"));
        map.insert(aside, existing);
    }
    map.insert(name.to_owned(), value);
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

/// Sanitizes JSON values, request bodies and free text for the audit log. Build once, share in an `Arc`.
#[derive(Debug, Clone)]
pub struct Sanitizer {
    limits: Limits,
    email: Regex,
    iban: Regex,
    digit_run: Regex,
    phone_intl: Regex,
    phone_national: Regex,
    quoted_pair: Regex,
    text_pair: Regex,
}

// The sanitizer is shared by every request.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Sanitizer>();
};

impl Default for Sanitizer {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

impl Sanitizer {
    /// Build a sanitizer; compiles the regexes once.
    pub fn new(limits: Limits) -> Self {
        let re = |pattern: &str| Regex::new(pattern).expect("static sanitizer regex is valid");
        Self {
            limits,
            email: re(r"[\p{L}\p{N}._%+\-]+(?:@|%40)[\p{L}\p{N}\-]+(?:\.[\p{L}\p{N}\-]+)*\.\p{L}{2,}"),
            // Compact, or grouped by single spaces in fours (last group 1-4); must end at a non-alphanumeric.
            iban: re(
                r"(?P<m>[A-Za-z]{2}[0-9]{2}(?:[A-Za-z0-9]{11,30}|(?: [A-Za-z0-9]{4}){2,7}(?: [A-Za-z0-9]{1,4})?))(?:[^A-Za-z0-9]|$)",
            ),
            // Maximal runs of digits separated by single spaces or dashes; card windows are picked inside.
            digit_run: re(r"[0-9](?:[ \-]?[0-9])*"),
            phone_intl: re(r"(?P<m>(?:\+|%2[Bb])[ (]{0,2}[0-9](?:[ .\-()]{0,2}[0-9]){7,14})(?:[^0-9]|$)"),
            phone_national: re(concat!(
                r"(?P<m>\([0-9]{2,5}\)[ .\-]?[0-9]{3,4}[ .\-][0-9]{4}",
                r"|[0-9]{2,5}[ .\-][0-9]{3,4}[ .\-][0-9]{4}",
                r"|0[0-9]{2,4}[ \-][0-9]{6,8})(?:[^0-9]|$)",
            )),
            // `"key": value` in JSON fragments that do not parse; object/array values are left to the inner keys.
            quoted_pair: re(r#""(?P<k>[^"\\]{1,128})"\s*:\s*(?P<v>"(?:[^"\\]|\\.)*"?|[^\s,}\]\[{][^\s,}\]]*)"#),
            // `key=value` (query strings) and `key: value` (log-style text); the value is delimited in code.
            text_pair: re(r"(?P<k>[\p{L}\p{N}_.\-\[\]%]+)[ \t]*(?P<sep>[=:])[ \t]*"),
        }
    }

    /// The limits this sanitizer applies.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Sanitize any JSON value.
    pub fn sanitize(&self, value: &Value) -> Value {
        let out = self.walk(value, 0);
        let size = serialized_len(&out);
        if size > self.limits.max_output_bytes {
            let mut m = Map::new();
            m.insert("truncated".to_owned(), Value::Bool(true));
            m.insert("size".to_owned(), Value::from(size));
            return Value::Object(m);
        }
        out
    }

    /// A request body as it should be stored: JSON content types (`application/json`, `application/*+json`,
    /// parameters allowed, case-insensitive) that parse → sanitized JSON; anything else (or unparseable JSON)
    /// → `{"contentType": <the content type or null>, "size": <bytes>}` only (never the bytes). Empty body →
    /// `Value::Null`.
    ///
    /// The recorded content type itself goes through [`Sanitizer::text`] (length limit, patterns).
    pub fn body(&self, content_type: Option<&str>, body: &[u8]) -> Value {
        if body.is_empty() {
            return Value::Null;
        }
        if content_type.is_some_and(is_json_content_type) {
            let json = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
            if let Ok(value) = serde_json::from_slice::<Value>(json) {
                return self.sanitize(&value);
            }
        }
        let mut m = Map::new();
        m.insert("contentType".to_owned(), content_type.map_or(Value::Null, |ct| Value::String(self.text(ct))));
        m.insert("size".to_owned(), Value::from(body.len()));
        Value::Object(m)
    }

    /// Sanitize a free-text string (value patterns + length limit): for query strings, user agents etc.
    ///
    /// `key=value` / `key: value` pairs with a secret or personal key also get their value redacted.
    pub fn text(&self, s: &str) -> String {
        self.clean_string(s, 0)
    }

    fn walk(&self, value: &Value, depth: usize) -> Value {
        match value {
            Value::String(s) => Value::String(self.clean_string(s, depth)),
            Value::Array(_) | Value::Object(_) if depth >= self.limits.max_depth => Value::String(TRUNCATED.to_owned()),
            Value::Array(items) => {
                let max = self.limits.max_array_items;
                let mut out: Vec<Value> = items.iter().take(max).map(|item| self.walk(item, depth + 1)).collect();
                if items.len() > max {
                    out.push(Value::String(format!("[+{} more items]", items.len() - max)));
                }
                Value::Array(out)
            }
            Value::Object(map) => self.walk_object(map, depth),
            Value::Null | Value::Bool(_) | Value::Number(_) => value.clone(),
        }
    }

    fn walk_object(&self, map: &Map<String, Value>, depth: usize) -> Value {
        let max = self.limits.max_object_keys;
        let mut out = Map::new();
        let mut dropped: Vec<String> = Vec::new();
        for (key, value) in map.iter().take(max) {
            let class = classify_key(key);
            if class == KeyClass::Secret {
                dropped.push(self.clean_key(key));
                continue;
            }
            let new_value = match class {
                KeyClass::Personal => Value::String(REDACTED.to_owned()),
                _ => self.walk(value, depth + 1),
            };
            let new_key = unique_key(&out, self.clean_key(key));
            out.insert(new_key, new_value);
        }
        if !dropped.is_empty() {
            dropped.sort();
            insert_meta(&mut out, DROPPED_FIELD, Value::Array(dropped.into_iter().map(Value::String).collect()));
        }
        if map.len() > max {
            insert_meta(&mut out, TRUNCATED_KEYS_FIELD, Value::from(map.len() - max));
        }
        Value::Object(out)
    }

    /// Object keys: value patterns and length limit only.
    fn clean_key(&self, key: &str) -> String {
        self.limit_chars(self.scrub_patterns(key))
    }

    /// Full string pipeline: embedded JSON, value patterns, key/value pairs, then the length limit.
    ///
    /// Patterns run before the pairs so that a multi-token value (`iban: GB82 WEST ...`) is replaced whole.
    fn clean_string(&self, s: &str, depth: usize) -> String {
        if let Some(json) = self.embedded_json(s, depth) {
            return self.limit_chars(json);
        }
        let s = self.scrub_patterns(s);
        let s = self.redact_quoted_pairs(&s);
        self.limit_chars(self.redact_text_pairs(&s))
    }

    /// A string that is itself a JSON object or array: sanitize it as JSON (at the string's own depth).
    fn embedded_json(&self, s: &str, depth: usize) -> Option<String> {
        let t = s.trim();
        let container = (t.starts_with('{') && t.ends_with('}')) || (t.starts_with('[') && t.ends_with(']'));
        if !container {
            return None;
        }
        let parsed: Value = serde_json::from_str(t).ok()?;
        match self.walk(&parsed, depth) {
            Value::String(s) => Some(s),
            other => serde_json::to_string(&other).ok(),
        }
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

    /// E-mail, IBAN, card, phone — in that order.
    fn scrub_patterns(&self, s: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(s: &str) -> Value {
        serde_json::from_str(s).expect("test JSON is valid")
    }

    /// (input JSON, expected JSON) with the default limits.
    const CASES: &[(&str, &str)] = &[
        // Scalars pass through.
        (
            r#"{"n": 42, "f": 19.99, "b": true, "z": null, "s": "hello"}"#,
            r#"{"n": 42, "f": 19.99, "b": true, "z": null, "s": "hello"}"#,
        ),
        (r#"[1, "two", false, null]"#, r#"[1, "two", false, null]"#),
        ("1700000000", "1700000000"),
        // Secret keys are dropped and listed, sorted, by their original names.
        (r#"{"user": "u1", "password": "hunter2"}"#, r#"{"user": "u1", "_dropped": ["password"]}"#),
        (
            r#"{"Pass_Word": "a", "access-token": "b", "X-Api-Key": "c", "credit.card.number": "d", "ok": 1}"#,
            r#"{"ok": 1, "_dropped": ["Pass_Word", "X-Api-Key", "access-token", "credit.card.number"]}"#,
        ),
        (
            r#"{"refreshToken": 1, "client_secret": 2, "cvv2": 3, "CVC": 4, "ssn": 5, "otp": 6, "mfa_code": 7, "signature": 8, "Cookie": 9, "Authorization": 10, "privateKey": 11, "sessionId": 12, "passphrase": 13, "passwd": 14, "securityCode": 15, "social_security_no": 16, "cardNo": 17, "cc-number": 18, "accessKey": 19, "secret_key": 20, "api_key": 21, "creditCard": 22, "credentials": 23}"#,
            r#"{"_dropped": ["Authorization", "CVC", "Cookie", "accessKey", "api_key", "cardNo", "cc-number", "client_secret", "credentials", "creditCard", "cvv2", "mfa_code", "otp", "passphrase", "passwd", "privateKey", "refreshToken", "secret_key", "securityCode", "sessionId", "signature", "social_security_no", "ssn"]}"#,
        ),
        // Equals-only secret words.
        (
            r#"{"pwd": 1, "auth": 2, "session": 3, "pan": 4, "PIN": 5, "pinned": 6, "panel": 7, "author": 8, "sessions_count": 9}"#,
            r#"{"pinned": 6, "panel": 7, "author": 8, "sessions_count": 9, "_dropped": ["PIN", "auth", "pan", "pwd", "session"]}"#,
        ),
        // Secrets nested inside arrays of objects; numbers under secret keys are dropped too.
        (
            r#"{"users": [{"id": 1, "password": "a"}, {"id": 2, "pin": 1234, "token": {"x": 1}}]}"#,
            r#"{"users": [{"id": 1, "_dropped": ["password"]}, {"id": 2, "_dropped": ["pin", "token"]}]}"#,
        ),
        // Personal keys: key kept, value redacted whatever its type.
        (
            r#"{"email": "a@b.co", "Phone_Number": 5551234567, "address": {"street": "1 Main St", "city": "X"}, "firstName": "Ann", "tags": ["t"], "dob": null}"#,
            r#"{"email": "[REDACTED]", "Phone_Number": "[REDACTED]", "address": "[REDACTED]", "firstName": "[REDACTED]", "tags": ["t"], "dob": "[REDACTED]"}"#,
        ),
        (
            r#"{"name": "Ann", "mail": "x", "tel": "1", "vat": "2", "ip": "3", "ip_address": "4", "date_of_birth": "5", "birthDate": "6", "passport_no": "7", "national-id": "8", "tax_id": "9", "iban": "10", "bic": "11", "swift_code": "12", "account_number": "13", "bank.account": "14", "routing_number": "15", "sort_code": "16", "zip": "17", "postal_code": "18", "post-code": "19", "geo": "20", "latitude": "21", "longitude": "22", "surname": "23", "givenName": "24", "family_name": "25", "middle name": "26", "displayName": "27", "user_name": "28", "full_name": "29", "last-name": "30", "mobile": "31", "telephone": "32", "fax": "33", "emailAddress": "34", "cardholder_name": "35"}"#,
            r#"{"name": "[REDACTED]", "mail": "[REDACTED]", "tel": "[REDACTED]", "vat": "[REDACTED]", "ip": "[REDACTED]", "ip_address": "[REDACTED]", "date_of_birth": "[REDACTED]", "birthDate": "[REDACTED]", "passport_no": "[REDACTED]", "national-id": "[REDACTED]", "tax_id": "[REDACTED]", "iban": "[REDACTED]", "bic": "[REDACTED]", "swift_code": "[REDACTED]", "account_number": "[REDACTED]", "bank.account": "[REDACTED]", "routing_number": "[REDACTED]", "sort_code": "[REDACTED]", "zip": "[REDACTED]", "postal_code": "[REDACTED]", "post-code": "[REDACTED]", "geo": "[REDACTED]", "latitude": "[REDACTED]", "longitude": "[REDACTED]", "surname": "[REDACTED]", "givenName": "[REDACTED]", "family_name": "[REDACTED]", "middle name": "[REDACTED]", "displayName": "[REDACTED]", "user_name": "[REDACTED]", "full_name": "[REDACTED]", "last-name": "[REDACTED]", "mobile": "[REDACTED]", "telephone": "[REDACTED]", "fax": "[REDACTED]", "emailAddress": "[REDACTED]", "cardholder_name": "[REDACTED]"}"#,
        ),
        // Equals-only personal words do not match longer keys.
        (
            r#"{"hostname": "h", "mailer": "m", "ipsum": "i", "hotel": "t", "vatRate": 0.2}"#,
            r#"{"hostname": "h", "mailer": "m", "ipsum": "i", "hotel": "t", "vatRate": 0.2}"#,
        ),
        // Allow-listed keys are untouched by the personal rule (values are still pattern-scrubbed).
        (
            r#"{"filename": "report.pdf", "file_name": "a.txt", "orgName": "Acme", "organization_name": "Acme", "organisationName": "Acme", "displayTitle": "T", "slug": "s", "title": "Q3", "content": "hello", "status": "active", "role": "admin", "type": "form"}"#,
            r#"{"filename": "report.pdf", "file_name": "a.txt", "orgName": "Acme", "organization_name": "Acme", "organisationName": "Acme", "displayTitle": "T", "slug": "s", "title": "Q3", "content": "hello", "status": "active", "role": "admin", "type": "form"}"#,
        ),
        (r#"{"content": "mail a@b.co"}"#, r#"{"content": "mail [EMAIL]"}"#),
        // Value patterns inside strings.
        (r#"{"note": "contact me at a@b.co now"}"#, r#"{"note": "contact me at [EMAIL] now"}"#),
        (r#"{"m": ["First.Last+tag@sub.example.org", "x@y"]}"#, r#"{"m": ["[EMAIL]", "x@y"]}"#),
        (r#"{"c": "card 4111 1111 1111 1111 exp 12/30"}"#, r#"{"c": "card [CARD] exp 12/30"}"#),
        (
            r#"{"c": ["4111111111111111", "5500-0000-0000-0004", "4111111111111112"]}"#,
            r#"{"c": ["[CARD]", "[CARD]", "4111111111111112"]}"#,
        ),
        (r#"{"i": "pay to GB82 WEST 1234 5698 7654 32 today"}"#, r#"{"i": "pay to [IBAN] today"}"#),
        (
            r#"{"i": ["DE89370400440532013000", "de89370400440532013000", "DE89370400440532013001", "GB82 WEST 1234 5698 7654 33"]}"#,
            r#"{"i": ["[IBAN]", "[IBAN]", "DE89370400440532013001", "GB82 WEST 1234 5698 7654 33"]}"#,
        ),
        (
            r#"{"p": ["+44 20 7946 0958", "+1 (555) 123-4567", "(555) 123-4567", "555-123-4567", "555.123.4567", "020 7946 0958", "call +49-30-1234567 now"]}"#,
            r#"{"p": ["[PHONE]", "[PHONE]", "[PHONE]", "[PHONE]", "[PHONE]", "[PHONE]", "call [PHONE] now"]}"#,
        ),
        (
            r#"{"p": ["550e8400-e29b-41d4-a716-446655440000", "12345678-1234-1234-1234-123456789012", "2026-11-25", "2026-11-25T10:00:00Z", "2026-11-25T10:00:00+01:00", "1700000000", "42", "1.2.3", "19.99", "10.15.7", "192.168.1.1"]}"#,
            r#"{"p": ["550e8400-e29b-41d4-a716-446655440000", "12345678-1234-1234-1234-123456789012", "2026-11-25", "2026-11-25T10:00:00Z", "2026-11-25T10:00:00+01:00", "1700000000", "42", "1.2.3", "19.99", "10.15.7", "192.168.1.1"]}"#,
        ),
        // Query-string and JSON-in-string forms.
        (r#"{"next": "/cb?token=abc123&page=2"}"#, r#"{"next": "/cb?token=[REDACTED]&page=2"}"#),
        (r#"{"raw": "[{\"password\":\"hunter2\"}]"}"#, r#"{"raw": "[{\"_dropped\":[\"password\"]}]"}"#),
        // Keys are pattern-scrubbed too.
        (r#"{"a@b.co": 1, "c@d.co": 2}"#, r#"{"[EMAIL]": 1, "[EMAIL]#2": 2}"#),
    ];

    #[test]
    fn table_cases() {
        let s = Sanitizer::default();
        for (i, (input, expected)) in CASES.iter().enumerate() {
            let got = s.sanitize(&parse(input));
            assert_eq!(got, parse(expected), "case {i}: {input}");
        }
    }

    #[test]
    fn sanitizer_is_send_sync_and_shareable() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<Sanitizer>();
        let shared = std::sync::Arc::new(Sanitizer::default());
        let handle = {
            let shared = std::sync::Arc::clone(&shared);
            std::thread::spawn(move || shared.text("a@b.co"))
        };
        assert_eq!(handle.join().expect("thread does not panic"), "[EMAIL]");
    }

    #[test]
    fn key_normalisation() {
        assert_eq!(normalise_key("Pass_Word"), "password");
        assert_eq!(normalise_key("access-token"), "accesstoken");
        assert_eq!(normalise_key("X-Api-Key"), "xapikey");
        assert_eq!(normalise_key("credit.card.number"), "creditcardnumber");
        assert_eq!(normalise_key(" First Name\t"), "firstname");
        for key in ["Pass_Word", "access-token", "X-Api-Key", "credit.card.number", "PASSWORD", "user.password"] {
            assert_eq!(classify_key(key), KeyClass::Secret, "{key}");
        }
        for key in ["E-Mail", "e_mail", "Home Address", "ZIP", "Date.Of.Birth"] {
            assert_eq!(classify_key(key), KeyClass::Personal, "{key}");
        }
        for key in ["file_name", "Org-Name", "TITLE", "Status"] {
            assert_eq!(classify_key(key), KeyClass::Allowed, "{key}");
        }
        assert_eq!(classify_key("description"), KeyClass::Plain);
    }

    #[test]
    fn dropped_only_when_something_dropped_and_input_meta_keys_moved_aside() {
        let s = Sanitizer::default();
        assert_eq!(s.sanitize(&json!({"a": 1})), json!({"a": 1}));
        assert_eq!(
            s.sanitize(&json!({"_dropped": "spoof", "token": "t"})),
            json!({"_dropped#2": "spoof", "_dropped": ["token"]})
        );
    }

    #[test]
    fn json_inside_strings_is_sanitized_as_json() {
        let s = Sanitizer::default();
        let out = s.sanitize(&json!({"raw": "{\"password\":\"hunter2\",\"email\":\"a@b.co\",\"k\":1}"}));
        let inner = parse(out["raw"].as_str().expect("string"));
        assert_eq!(inner, json!({"email": REDACTED, "k": 1, "_dropped": ["password"]}));
        // Not JSON after all: treated as text.
        assert_eq!(s.text("[a@b.co]"), "[[EMAIL]]");
    }

    #[test]
    fn personal_key_with_nested_value_is_redacted_without_recursing() {
        let s = Sanitizer::default();
        let out = s.sanitize(
            &json!({"billing_address": {"line1": "10 Downing St", "password": "x"}, "phones": ["+44 20 7946 0958"]}),
        );
        assert_eq!(out, json!({"billing_address": REDACTED, "phones": REDACTED}));
    }

    #[test]
    fn email_pattern() {
        let s = Sanitizer::default();
        assert_eq!(s.text("a@b.co"), "[EMAIL]");
        assert_eq!(s.text("mailto:jane.doe@example.co.uk?x"), "mailto:[EMAIL]?x");
        assert_eq!(s.text("q=jane%40example.com"), "q=[EMAIL]");
        assert_eq!(s.text("two: a@b.co, c_d@e-f.io."), "two: [EMAIL], [EMAIL].");
        assert_eq!(s.text("not@an-email"), "not@an-email");
        assert_eq!(s.text("@handle"), "@handle");
    }

    #[test]
    fn luhn_and_card_pattern() {
        assert!(luhn_valid(b"4111111111111111"));
        assert!(luhn_valid(b"79927398713"));
        assert!(!luhn_valid(b"4111111111111112"));
        let s = Sanitizer::default();
        for card in [
            "4111111111111111",
            "4111 1111 1111 1111",
            "4111-1111-1111-1111",
            "378282246310005",     // Amex, 15 digits
            "4222222222222",       // 13 digits
            "6011 0009 9013 9424", // Discover
        ] {
            assert_eq!(s.text(&format!("x {card} y")), "x [CARD] y", "{card}");
        }
        assert_eq!(s.text("3782 822463 10005"), "[CARD]");
        assert_eq!(s.text("6304 0000 0000 0000 018"), "[CARD]");
        // Luhn-invalid 16-digit sequences are left alone (and not mistaken for phones).
        for not_card in ["4111111111111112", "4111 1111 1111 1112", "4111-1111-1111-1112", "123456789012"] {
            assert_eq!(s.text(not_card), not_card);
        }
        // A card next to other numbers in the same run is still found.
        assert_eq!(s.text("qty 2 4111 1111 1111 1111 2026"), "qty 2 [CARD] 2026");
        assert_eq!(s.text("4111111111111111 5500000000000004"), "[CARD] [CARD]");
        // Too long to be a card.
        assert_eq!(s.text("41111111111111111111"), "41111111111111111111");
    }

    #[test]
    fn iban_pattern() {
        assert!(iban_valid(b"GB82WEST12345698765432"));
        assert!(iban_valid(b"DE89370400440532013000"));
        assert!(iban_valid(b"gb82west12345698765432"));
        assert!(!iban_valid(b"GB82WEST12345698765433"));
        assert!(!iban_valid(b"GB82"));
        let s = Sanitizer::default();
        assert_eq!(s.text("GB82 WEST 1234 5698 7654 32"), "[IBAN]");
        assert_eq!(s.text("pay gb82 west 1234 5698 7654 32."), "pay [IBAN].");
        assert_eq!(s.text("iban: GB82 WEST 1234 5698 7654 32, ok"), "iban: [REDACTED], ok");
        assert_eq!(s.text("to DE89370400440532013000, thanks"), "to [IBAN], thanks");
        assert_eq!(s.text("to DE89 3704 0044 0532 0130 00"), "to [IBAN]");
        // A grouped IBAN followed by an unrelated four-letter word.
        assert_eq!(s.text("BE68 5390 0754 7034 from me"), "[IBAN] from me");
        // Checksum-broken IBANs are left alone.
        assert_eq!(s.text("DE89370400440532013001"), "DE89370400440532013001");
        assert_eq!(s.text("GB82 WEST 1234 5698 7654 31"), "GB82 WEST 1234 5698 7654 31");
        assert_eq!(s.text("BE68 5390 0754 7069 from me"), "BE68 5390 0754 7069 from me");
        // Glued to other letters: not an IBAN token.
        assert_eq!(s.text("XDE89370400440532013000"), "XDE89370400440532013000");
    }

    #[test]
    fn phone_pattern_positives() {
        let s = Sanitizer::default();
        for phone in [
            "+44 20 7946 0958",
            "+442079460958",
            "+1 (555) 123-4567",
            "+1.555.123.4567",
            "+49-30-1234567",
            "+33 1 23 45 67 89",
            "(555) 123-4567",
            "(555)123-4567",
            "555-123-4567",
            "555.123.4567",
            "555 123 4567",
            "020 7946 0958",
            "07700 900123",
        ] {
            assert_eq!(s.text(&format!("call {phone}, thanks")), "call [PHONE], thanks", "{phone}");
        }
        assert_eq!(s.text("tel=%2B442079460958"), "tel=[REDACTED]");
        assert_eq!(s.text("to=%2B442079460958"), "to=[PHONE]");
        assert_eq!(s.text("555-123-4567 or 555-987-6543"), "[PHONE] or [PHONE]");
        assert_eq!(
            s.text("555-123-4567 555-987-6543 (555) 123-4567 (555) 123-4567"),
            "[PHONE] [PHONE] [PHONE] [PHONE]"
        );
        assert_eq!(s.text("room 12 020 7946 0958, ext 12"), "room 12 [PHONE], ext 12");
        assert_eq!(s.text("555-123-4567 x123"), "[PHONE] x123");
    }

    #[test]
    fn phone_pattern_negatives() {
        let s = Sanitizer::default();
        for text in [
            "550e8400-e29b-41d4-a716-446655440000",
            "123e4567-e89b-12d3-a456-426614174000",
            "12345678-1234-1234-1234-123456789012",
            "2026-11-25",
            "2026-11-25T10:00:00Z",
            "2026-11-25T10:00:00.123+01:00",
            "2026/11/25 10:00",
            "1700000000",
            "1700000000123",
            "42",
            "1.2.3",
            "10.15.7",
            "19.99",
            "1,299.99",
            "12.345.678",
            "192.168.1.1",
            "+12",
            "order #12345",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
        ] {
            assert_eq!(s.text(text), text, "{text}");
        }
    }

    #[test]
    fn depth_limit() {
        let s = Sanitizer::new(Limits { max_depth: 2, ..Limits::default() });
        assert_eq!(s.sanitize(&json!({"a": {"b": {"c": 1}, "d": 2}})), json!({"a": {"b": TRUNCATED, "d": 2}}));
        assert_eq!(s.sanitize(&json!([[["x"]], "y"])), json!([[TRUNCATED], "y"]));
        // Key rules still apply at the truncation level.
        assert_eq!(s.sanitize(&json!({"a": {"token": {"x": 1}}})), json!({"a": {"_dropped": ["token"]}}));
        // Strings holding JSON continue at their own depth.
        assert_eq!(s.sanitize(&json!({"a": {"raw": "{\"x\":1}"}})), json!({"a": {"raw": TRUNCATED}}));
        let zero = Sanitizer::new(Limits { max_depth: 0, ..Limits::default() });
        assert_eq!(zero.sanitize(&json!({"a": 1})), json!(TRUNCATED));
        assert_eq!(zero.sanitize(&json!("scalar")), json!("scalar"));
        // Default depth 8: 8 levels kept, the 9th truncated.
        let mut deep = json!(1);
        for _ in 0..9 {
            deep = json!({ "k": deep });
        }
        let out = Sanitizer::default().sanitize(&deep);
        let mut cursor = &out;
        for _ in 0..8 {
            cursor = &cursor["k"];
        }
        assert_eq!(cursor, &json!(TRUNCATED));
    }

    #[test]
    fn string_limit_is_char_boundary_safe() {
        let s = Sanitizer::new(Limits { max_string_chars: 5, ..Limits::default() });
        assert_eq!(s.text("hello"), "hello");
        assert_eq!(s.text("hello world"), "hello…[+6 chars]");
        assert_eq!(s.text("ééééééé"), "ééééé…[+2 chars]");
        assert_eq!(s.text("🦀🦀🦀🦀🦀🦀🦀🦀"), "🦀🦀🦀🦀🦀…[+3 chars]");
        assert_eq!(s.sanitize(&json!({"k": "abcdefg"})), json!({"k": "abcde…[+2 chars]"}));
        // Patterns are applied before cutting, so a cut never exposes part of a card.
        assert_eq!(s.text("4111111111111111"), "[CARD…[+1 chars]");
        let default = Sanitizer::default();
        let long = "x".repeat(300);
        assert_eq!(default.text(&long), format!("{}…[+44 chars]", "x".repeat(256)));
    }

    #[test]
    fn array_limit() {
        let s = Sanitizer::new(Limits { max_array_items: 3, ..Limits::default() });
        assert_eq!(s.sanitize(&json!([1, 2, 3])), json!([1, 2, 3]));
        assert_eq!(s.sanitize(&json!([1, 2, 3, 4, 5])), json!([1, 2, 3, "[+2 more items]"]));
        let default = Sanitizer::default();
        let items: Vec<u32> = (0..60).collect();
        let out = default.sanitize(&json!(items));
        let arr = out.as_array().expect("array");
        assert_eq!(arr.len(), 51);
        assert_eq!(arr[50], json!("[+10 more items]"));
    }

    #[test]
    fn object_limit() {
        let s = Sanitizer::new(Limits { max_object_keys: 2, ..Limits::default() });
        let input = json!({"a": 1, "b": 2, "c": 3, "d": 4});
        let out = s.sanitize(&input);
        let obj = out.as_object().expect("object");
        assert_eq!(obj.get(TRUNCATED_KEYS_FIELD), Some(&json!(2)));
        assert_eq!(obj.len(), 3);
        // The kept keys are the first two in iteration order.
        let first_two: Vec<&String> = input.as_object().expect("object").keys().take(2).collect();
        for k in first_two {
            assert!(obj.contains_key(k.as_str()), "{k}");
        }
        assert_eq!(s.sanitize(&json!({"a": 1, "b": 2})), json!({"a": 1, "b": 2}));
    }

    #[test]
    fn output_size_limit() {
        let s = Sanitizer::new(Limits { max_output_bytes: 30, ..Limits::default() });
        assert_eq!(s.sanitize(&json!({"a": 1})), json!({"a": 1}));
        let big = json!({"description": "a fairly long description"});
        let expected_size = serde_json::to_string(&big).expect("serializes").len();
        assert_eq!(s.sanitize(&big), json!({"truncated": true, "size": expected_size}));
        // Size is measured after sanitization.
        let body = s.body(Some("application/json"), br#"{"password": "a very long password indeed"}"#);
        assert_eq!(body, json!({"_dropped": ["password"]}));
        // A hostile body is bounded by the default limits.
        let hostile: Vec<String> = (0..10_000).map(|i| format!("{i}{}", "y".repeat(1000))).collect();
        let out = Sanitizer::default().sanitize(&json!({"items": hostile}));
        assert_eq!(out["truncated"], json!(true));
        assert!(serde_json::to_string(&out).expect("serializes").len() < 100);
    }

    #[test]
    fn body_json_content_types() {
        let s = Sanitizer::default();
        let raw = br#"{"email": "a@b.co", "password": "p", "n": 1}"#;
        let expected = json!({"email": REDACTED, "n": 1, "_dropped": ["password"]});
        for ct in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            "application/merge-patch+json",
            "application/vnd.api+json ; charset=UTF-8",
            "APPLICATION/PROBLEM+JSON",
        ] {
            assert_eq!(s.body(Some(ct), raw), expected, "{ct}");
        }
        assert_eq!(s.body(Some("application/json"), b"\xEF\xBB\xBF{\"a\": 1}"), json!({"a": 1}));
        assert_eq!(s.body(Some("application/json"), b"\"a@b.co\""), json!("[EMAIL]"));
    }

    #[test]
    fn body_non_json_is_recorded_by_type_and_size_only() {
        let s = Sanitizer::default();
        let secret_form = b"password=hunter2&email=jane%40example.com";
        for ct in [
            Some("application/x-www-form-urlencoded"),
            Some("text/plain"),
            Some("application/jsonx"),
            Some("text/json"),
            None,
        ] {
            let out = s.body(ct, secret_form);
            assert_eq!(out, json!({"contentType": ct, "size": secret_form.len()}), "{ct:?}");
            let stored = serde_json::to_string(&out).expect("serializes");
            assert!(!stored.contains("hunter2") && !stored.contains("jane"), "{stored}");
        }
        // Malformed JSON under a JSON content type: never the bytes.
        let malformed = br#"{"password": "hunter2", "email": "jane@example.com""#;
        let out = s.body(Some("application/json"), malformed);
        assert_eq!(out, json!({"contentType": "application/json", "size": malformed.len()}));
        assert!(!serde_json::to_string(&out).expect("serializes").contains("hunter2"));
        // Binary.
        assert_eq!(
            s.body(Some("image/png"), &[0x89, b'P', b'N', b'G', 0, 0xFF]),
            json!({"contentType": "image/png", "size": 6})
        );
        // Empty body.
        assert_eq!(s.body(Some("application/json"), b""), Value::Null);
        assert_eq!(s.body(None, b""), Value::Null);
        // A hostile content type is length-limited.
        let long_ct = format!("text/{}", "x".repeat(1000));
        let out = s.body(Some(&long_ct), b"x");
        assert!(out["contentType"].as_str().expect("string").chars().count() < 300);
    }

    #[test]
    fn text_sanitizes_free_text() {
        let s = Sanitizer::default();
        assert_eq!(s.text(""), "");
        assert_eq!(s.text("page=2&sort=name"), "page=2&sort=name");
        assert_eq!(
            s.text("q=a%40b.co&token=abc&email=x&Password=p&type=json&phone=555-123-4567"),
            "q=[EMAIL]&token=[REDACTED]&email=[REDACTED]&Password=[REDACTED]&type=json&phone=[REDACTED]"
        );
        assert_eq!(s.text("user[email]=x&user[name]=y"), "user[email]=[REDACTED]&user[name]=y");
        assert_eq!(s.text("error: token: abc123 expired"), "error: token: [REDACTED]");
        assert_eq!(s.text("note: password = hunter2 now"), "note: password = [REDACTED] now");
        assert_eq!(s.text("name: Jane Doe, age: 30"), "name: [REDACTED], age: 30");
        assert_eq!(s.text("mailto:a@b.co"), "mailto:[EMAIL]");
        assert_eq!(s.text("call 555-123-4567 or mail a@b.co"), "call [PHONE] or mail [EMAIL]");
        assert_eq!(s.text(r#"{"password":"x","a":1"#), r#"{"password":"[REDACTED]","a":1"#);
        assert_eq!(s.text(r#"[{"token":"t"}]"#), r#"[{"_dropped":["token"]}]"#);
    }

    #[test]
    fn numbers_pass_through_unless_keyed() {
        let s = Sanitizer::default();
        assert_eq!(
            s.sanitize(&json!({"amount": 4111111111111111_u64, "ratio": 0.5, "neg": -3})),
            json!({"amount": 4111111111111111_u64, "ratio": 0.5, "neg": -3})
        );
        assert_eq!(s.sanitize(&json!({"card_number": 4111111111111111_u64})), json!({"_dropped": ["card_number"]}));
        assert_eq!(s.sanitize(&json!({"latitude": 51.5})), json!({"latitude": REDACTED}));
    }

    /// Every PII kind in one body, in many shapes: none of the sensitive substrings may survive.
    #[test]
    fn stuffed_body_leaks_nothing() {
        let s = Sanitizer::default();
        let body = json!({
            "password": "Hunter2Secret!",
            "user": {
                "Pass_Word": "Hunter2Secret!",
                "accessToken": "tok_live_5f8e2a9c",
                "email": "jane.doe@example.com",
                "phone": "+44 20 7946 0958",
                "ssn": "078-05-1120",
                "name": "Jane Doe",
                "first_name": "Jane",
                "last_name": "Doe",
                "address": {"street": "221B Baker Street", "city": "London", "postcode": "NW1 6XE"},
                "birth_date": "1985-03-14",
                "passport_number": "X12345678",
                "iban": "GB82 WEST 1234 5698 7654 32",
                "card": "4111 1111 1111 1111",
            },
            "contacts": [
                {"label": "work", "value": "jane.doe@example.com"},
                {"label": "mobile", "value": "+44 20 7946 0958"},
                {"label": "bank", "value": "DE89370400440532013000"},
            ],
            "notes": "Customer paid with 4111-1111-1111-1111 from GB82WEST12345698765432, call (555) 123-4567 or mail jane.doe@example.com",
            "callback": "https://app.example/cb?token=tok_live_5f8e2a9c&email=jane.doe%40example.com&ssn=078-05-1120",
            "payload": "{\"password\":\"Hunter2Secret!\",\"passport\":\"X12345678\",\"dob\":\"1985-03-14\"}",
            "broken_payload": "{\"secret\": \"Hunter2Secret!\", \"full_name\": \"Jane Doe\"",
            "log": "login password=Hunter2Secret! name: Jane",
            "jane.doe@example.com": {"role": "owner"},
        });
        let out = s.body(Some("application/json"), body.to_string().as_bytes());
        let stored = serde_json::to_string(&out).expect("serializes");
        for needle in [
            "Hunter2",
            "tok_live",
            "jane.doe",
            "example.com",
            "7946",
            "0958",
            "078-05",
            "1120",
            "Jane",
            "Doe",
            "Baker",
            "London",
            "NW1",
            "1985",
            "X12345678",
            "WEST",
            "GB82",
            "DE89",
            "4111",
            "123-4567",
        ] {
            assert!(!stored.contains(needle), "{needle:?} leaked into {stored}");
        }
        // The structure is still useful to a forensic reader.
        assert_eq!(out["user"]["email"], json!(REDACTED));
        assert_eq!(out["_dropped"], json!(["password"]));
        assert_eq!(out["contacts"][0]["label"], json!("work"));
    }
}
