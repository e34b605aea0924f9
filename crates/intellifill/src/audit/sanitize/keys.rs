//! Key rules: the secret, allow-list and personal key tables, and how a key name is normalised and classified.

use super::{CARD_LABEL, EMAIL_LABEL, IBAN_LABEL, PHONE_LABEL, REDACTED, TRUNCATED};

/// Secret key names matched on equality with the normalised key. The key and value are dropped.
const SECRET_KEYS_EXACT: &[&str] = &["pwd", "auth", "session", "pan", "pin"];

/// Secret key names matched when contained in the normalised key. The key and value are dropped.
///
/// `credential` and `passcode` are additions to the original list.
const SECRET_KEYS_CONTAINED: &[&str] = &[
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

/// Lowercase and remove `_`, `-`, `.` and whitespace.
pub(super) fn normalise_key(key: &str) -> String {
    key.chars().filter(|c| !matches!(c, '_' | '-' | '.') && !c.is_whitespace()).flat_map(char::to_lowercase).collect()
}

pub(super) fn classify_key(key: &str) -> KeyClass {
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
pub(super) fn is_sensitive_key(key: &str) -> bool {
    ![EMAIL_LABEL, IBAN_LABEL, CARD_LABEL, PHONE_LABEL, REDACTED, TRUNCATED].contains(&key)
        && matches!(classify_key(key), KeyClass::Secret | KeyClass::Personal)
}
