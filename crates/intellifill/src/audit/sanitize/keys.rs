//! Key rules: the secret, allow-list and personal key tables, and how a key name is normalised and classified.

use std::borrow::Cow;
use std::sync::LazyLock;

use aho_corasick::AhoCorasick;

use super::percent::decode_ascii_escapes;
use super::{CARD_LABEL, EMAIL_LABEL, IBAN_LABEL, JWT_LABEL, PHONE_LABEL, REDACTED, TOKEN_LABEL, TRUNCATED};

/// Secret key names matched on equality with the normalised key, or with the key's last word (`user_pw`,
/// `x-pass`, `isPrivate`, `user[pin]`). The key and value are dropped.
const SECRET_KEYS_EXACT: &[&str] =
    &["auth", "session", "pan", "pin", "pass", "pw", "key", "private", "hash", "refresh"];

/// Secret key names matched when the normalised key ends with them (`password_hash`, `fileHash`).
const SECRET_KEYS_SUFFIX: &[&str] = &["hash"];

/// Keys longer than this (in bytes) are treated as secret without being read: classifying them would cost
/// more than the audit row is worth, and their value could be anything.
const MAX_CLASSIFIED_KEY_BYTES: usize = 1024;

/// Secret key names matched when contained in the normalised key. The key and value are dropped.
///
/// `credential` and `passcode` are additions to the original list.
const SECRET_KEYS_CONTAINED: &[&str] = &[
    "password",
    "pwd",
    "jwt",
    "bearer",
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
const PERSONAL_KEYS_EXACT: &[&str] = &["mail", "tel", "name", "vat", "ip"];

/// Personal key names matched when contained in the normalised key. The value becomes `"[REDACTED]"`.
///
/// `birth` covers `birthdate`, `dateofbirth`, `birthday`, ... The person-name keys `holdername`, `contactname`,
/// `customername`, `recipientname`, `nickname`, `maidenname` and `legalname` are additions to the original
/// list (`name` itself only matches exactly).
const PERSONAL_KEYS_CONTAINED: &[&str] = &[
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
const ALLOWED_KEYS: &[&str] = &[
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

/// How a key is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyClass {
    /// Key and value dropped.
    Secret,
    /// Allow-listed: never redacted by the personal rule.
    Allowed,
    /// Key kept, value redacted.
    Personal,
    /// Value sanitized recursively.
    Plain,
}

/// Percent-decode ASCII escapes (up to three rounds, for double encoding), lowercase, and remove `_`, `-`, `.`,
/// `+` and whitespace.
pub(super) fn normalise_key(key: &str) -> String {
    decoded_key(key)
        .chars()
        .filter(|c| !matches!(c, '_' | '-' | '.' | '+') && !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect()
}

/// The key with its ASCII percent escapes decoded (`p%61ss` → `pass`, `api%255Fkey` → `api_key`).
fn decoded_key(key: &str) -> Cow<'_, str> {
    let mut key = Cow::Borrowed(key);
    if !key.as_bytes().contains(&b'%') {
        return key;
    }
    for _ in 0..3 {
        match decode_ascii_escapes(&key) {
            Some(decoded) => key = Cow::Owned(decoded),
            None => break,
        }
    }
    key
}

/// One automaton over the secret and the personal contained words (secret ones first), so a key is read
/// once whatever the size of the tables.
static CONTAINED: LazyLock<AhoCorasick> = LazyLock::new(|| {
    AhoCorasick::new(SECRET_KEYS_CONTAINED.iter().chain(PERSONAL_KEYS_CONTAINED)).expect("static key words")
});

/// Does the normalised key contain a secret word, a personal word?
fn contained_words(norm: &str) -> (bool, bool) {
    let mut personal = false;
    for m in CONTAINED.find_overlapping_iter(norm) {
        if m.pattern().as_usize() < SECRET_KEYS_CONTAINED.len() {
            return (true, personal);
        }
        personal = true;
    }
    (false, personal)
}

/// The last word of a key, lowercased: words are split at anything but letters and digits and at a lowercase
/// or digit followed by an uppercase letter (`user_pw` → `pw`, `isPrivate` → `private`, `user[pin]` → `pin`).
fn last_word(decoded: &str) -> String {
    let mut start = 0;
    let mut end = 0;
    let mut prev: Option<char> = None;
    for (i, c) in decoded.char_indices() {
        if !c.is_alphanumeric() {
            prev = None;
            continue;
        }
        let boundary = match prev {
            None => true,
            Some(p) => c.is_uppercase() && (p.is_lowercase() || p.is_numeric()),
        };
        if boundary {
            start = i;
        }
        end = i + c.len_utf8();
        prev = Some(c);
    }
    decoded.get(start..end).unwrap_or_default().to_lowercase()
}

pub(super) fn classify_key(key: &str) -> KeyClass {
    if key.len() > MAX_CLASSIFIED_KEY_BYTES {
        return KeyClass::Secret;
    }
    let norm = normalise_key(key);
    let (secret_word, personal_word) = contained_words(&norm);
    let secret = secret_word
        || SECRET_KEYS_EXACT.contains(&norm.as_str())
        || SECRET_KEYS_SUFFIX.iter().any(|w| norm.ends_with(w))
        || SECRET_KEYS_EXACT.contains(&last_word(&decoded_key(key)).as_str());
    if secret {
        KeyClass::Secret
    } else if ALLOWED_KEYS.contains(&norm.as_str()) {
        KeyClass::Allowed
    } else if personal_word || PERSONAL_KEYS_EXACT.contains(&norm.as_str()) {
        KeyClass::Personal
    } else {
        KeyClass::Plain
    }
}

/// A secret or personal key name (our own replacement labels are not keys).
pub(super) fn is_sensitive_key(key: &str) -> bool {
    ![EMAIL_LABEL, IBAN_LABEL, CARD_LABEL, PHONE_LABEL, JWT_LABEL, TOKEN_LABEL, REDACTED, TRUNCATED].contains(&key)
        && matches!(classify_key(key), KeyClass::Secret | KeyClass::Personal)
}
