use serde_json::{Value, json};

use super::keys::{KeyClass, classify_key, normalise_key};
use super::patterns::{iban_valid, luhn_valid};
use super::{Limits, REDACTED, Sanitizer, TRUNCATED, TRUNCATED_KEYS_FIELD};

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
    assert_eq!(s.text("555-123-4567 555-987-6543 (555) 123-4567 (555) 123-4567"), "[PHONE] [PHONE] [PHONE] [PHONE]");
    assert_eq!(s.text("room 12 020 7946 0958, ext 12"), "room 12 [PHONE], ext 12");
    assert_eq!(s.text("555-123-4567 x123"), "[PHONE] x123");
}

/// Asserts that the default sanitizer returns each of `texts` as it is.
pub(super) fn assert_left_alone(texts: &[&str]) {
    let s = Sanitizer::default();
    for text in texts {
        assert_eq!(s.text(text), *text, "{text}");
    }
}

#[test]
fn phone_pattern_negatives() {
    assert_left_alone(&[
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
    ]);
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
fn numbers_pass_through_unless_keyed_or_cards() {
    let s = Sanitizer::default();
    assert_eq!(
        s.sanitize(&json!({"amount": 4111111111111112_u64, "ratio": 0.5, "neg": -3})),
        json!({"amount": 4111111111111112_u64, "ratio": 0.5, "neg": -3})
    );
    // A Luhn-valid card number sent as a JSON number is a card, whatever its key.
    assert_eq!(s.sanitize(&json!({"amount": 4111111111111111_u64})), json!({"amount": "[CARD]"}));
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
