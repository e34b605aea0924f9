//! Secret key variants, secret-shaped values, card numbers as JSON numbers, paths, the scan budget and
//! hostile shapes (deep nesting, colliding keys).

use serde_json::{Value, json};

use super::keys::{KeyClass, classify_key};
use super::tests::assert_left_alone;
use super::{Limits, Sanitizer, TRUNCATED, UNSCANNED_KEYS_FIELD};

#[test]
fn secret_key_words_and_their_case_and_percent_encoded_variants_are_dropped() {
    let s = Sanitizer::default();
    let keys = [
        "pass",
        "Pass",
        "PASSWORD",
        "p%61ss",
        "p%2561ss",
        "api%5Fkey",
        "pw",
        "user_pw",
        "PWD",
        "userPwd",
        "jwt",
        "id_jwt",
        "bearer",
        "bearerToken",
        "key",
        "Key",
        "cache_key",
        "private",
        "isPrivate",
        "hash",
        "password_hash",
        "fileHash",
        "refresh",
        "user[pin]",
    ];
    let mut body = serde_json::Map::new();
    for (i, key) in keys.iter().enumerate() {
        body.insert((*key).to_owned(), Value::from(i));
        assert_eq!(classify_key(key), KeyClass::Secret, "{key}");
    }
    body.insert("ok".into(), json!(1));
    let out = s.sanitize(&Value::Object(body));
    let mut dropped: Vec<&str> = keys.to_vec();
    dropped.sort_unstable();
    assert_eq!(out, json!({"ok": 1, "_dropped": dropped}));
    for key in ["passport_no", "keyboard", "hashtag", "monkey", "refresh_interval", "compass", "bypass", "keys"] {
        assert_ne!(classify_key(key), KeyClass::Secret, "{key}");
    }
}

#[test]
fn secret_key_words_in_query_and_form_pairs() {
    let s = Sanitizer::default();
    assert_eq!(
        s.text("p%61ss=hunter2&api%5Fkey=k1&PW=x&jwt=abc&refresh=r&user[pw]=y&Key=z&file_hash=h&page=2"),
        "p%61ss=[REDACTED]&api%5Fkey=[REDACTED]&PW=[REDACTED]&jwt=[REDACTED]&refresh=[REDACTED]\
         &user[pw]=[REDACTED]&Key=[REDACTED]&file_hash=[REDACTED]&page=2"
    );
    assert_eq!(s.text("bearer: abc, next"), "bearer: [REDACTED], next");
}

const JWT: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";

#[test]
fn secret_shaped_values_under_any_key_and_in_free_text() {
    let s = Sanitizer::default();
    let out = s.sanitize(&json!({
        "note": format!("token {JWT} here"),
        "header": "was Bearer abcdefgh12345678.",
        "stripe": "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
        "supabase": "use sb_secret_N7UND0UgjKTVK-Uodkm0Hg_xSvEMPvz now",
        "sha1": "da39a3ee5e6b4b0d3255bfef95601890afd80709",
        "digest": "sha256-e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "b64": "q3J8vX+0aZ/Lm9PqR2sT4uVwXyZ1bC5dE7fG8hI=",
        "aws": "AKIAIOSFODNN7EXAMPLE",
    }));
    assert_eq!(
        out,
        json!({
            "note": "token [JWT] here",
            "header": "was Bearer [TOKEN]",
            "stripe": "[TOKEN]",
            "supabase": "use [TOKEN] now",
            "sha1": "[TOKEN]",
            "digest": "sha256-[TOKEN]",
            "b64": "[TOKEN]",
            "aws": "[TOKEN]",
        })
    );
    assert_eq!(s.text(&format!("Authorization: Bearer {JWT}")), "Authorization: [REDACTED]");
    assert_eq!(s.text(&format!("cb?id_token={JWT}&x=1")), "cb?id_token=[REDACTED]&x=1");
    assert_eq!(s.text(&format!("cb?state={JWT}&x=1")), "cb?state=[JWT]&x=1");
}

#[test]
fn ordinary_long_values_are_not_tokens() {
    assert_left_alone(&[
        "550e8400-e29b-41d4-a716-446655440000",
        "550E8400-E29B-41D4-A716-446655440000",
        "quarterly-report-2024-final-version-draft",
        "getOrganizationKnowledgeSourcesById",
        "/api/organizations/Acme2024/documents/QuarterlyReport",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "0000000000000000000000000000000000000000",
        "Bearer of bad news",
        "sk-learn",
    ]);
}

#[test]
fn card_numbers_as_json_numbers() {
    let s = Sanitizer::default();
    let out = s.sanitize(&json!({
        "n": 4111111111111111_u64,
        "amex": 378282246310005_u64,
        "neg": -5500000000000004_i64,
        "float": 4111111111111111.0,
        "list": [6011000990139424_u64],
        "bad_luhn": 4111111111111112_u64,
        "ms": 1700000000123_u64,
        "us": 1700000000000008_u64,
        "small": 42,
    }));
    assert_eq!(
        out,
        json!({
            "n": "[CARD]",
            "amex": "[CARD]",
            "neg": "[CARD]",
            "float": "[CARD]",
            "list": ["[CARD]"],
            "bad_luhn": 4111111111111112_u64,
            "ms": 1700000000123_u64,
            "us": 1700000000000008_u64,
            "small": 42,
        })
    );
}

#[test]
fn paths_are_sanitized_segment_by_segment() {
    let s = Sanitizer::default();
    let path = |p: &str| s.path_in(p, &mut s.budget());
    for (input, expected) in [
        ("/users/jane@example.com/edit", "/users/[EMAIL]/edit"),
        ("/u/jane%40example.com", "/u/[EMAIL]"),
        ("/users/42/555-123-4567", "/users/42/[PHONE]"),
        ("/call/+442079460958", "/call/[PHONE]"),
        ("/call/%2B44%2020%207946%200958", "/call/[PHONE]"),
        ("/search/555%20123%204567", "/search/[PHONE]"),
        ("/cards/4111111111111111", "/cards/[CARD]"),
        ("/iban/DE89370400440532013000/x", "/iban/[IBAN]/x"),
        ("/t/sk_live_4eC39HqLyjWDarjtT1zdp7dc", "/t/[TOKEN]"),
        (
            "/api/organizations/550e8400-e29b-41d4-a716-446655440000/knowledge",
            "/api/organizations/550e8400-e29b-41d4-a716-446655440000/knowledge",
        ),
        ("/api/search%20term/2026-11-25", "/api/search%20term/2026-11-25"),
        ("/", "/"),
        ("", ""),
    ] {
        assert_eq!(path(input), expected, "{input}");
    }
    // No length limit beyond the caller's.
    let long = format!("/{}", "a/".repeat(300));
    assert_eq!(path(&long), long);
}

#[test]
fn escaped_free_text_is_scanned_decoded() {
    let s = Sanitizer::default();
    assert_eq!(s.text("q=555%20123%204567&page=2"), "q=[PHONE]&page=2");
    assert_eq!(s.text("q=invoice%202026&page=2"), "q=invoice%202026&page=2");
    assert_eq!(s.text("to=%2B44%2020%207946%200958"), "to=[PHONE]");
}

fn budgeted(max_scan_bytes: usize) -> Sanitizer {
    Sanitizer::new(Limits { max_scan_bytes, max_string_chars: 100_000, ..Limits::default() })
}

#[test]
fn text_beyond_the_budget_is_replaced_by_a_marker() {
    let s = budgeted(1000);
    let text = format!("{}{}", "x ".repeat(600), "jane.doe@example.com ".repeat(10));
    let out = s.text(&text);
    // 1000 bytes scanned, the last 256 of them only to see patterns straddling the cut.
    assert_eq!(out, format!("{}[UNSCANNED: +{} bytes]", "x ".repeat(372), text.len() - 744));
    // A pattern straddling the cut is replaced whole.
    let text = format!("{}jane.doe@example.com {}", "x ".repeat(370), "y".repeat(2000));
    let out = s.text(&text);
    assert_eq!(out, format!("{}[EMAIL][UNSCANNED: +{} bytes]", "x ".repeat(370), text.len() - 744));
    // A budget smaller than the lookahead keeps nothing.
    assert_eq!(budgeted(10).text("4111 1111 1111 1111 and more"), "[UNSCANNED: +28 bytes]");
    // Spent: nothing is scanned.
    assert_eq!(budgeted(0).text("a@b.co"), "[UNSCANNED: +6 bytes]");
    assert_eq!(budgeted(0).text(""), "");
}

#[test]
fn one_budget_covers_every_value_of_an_event() {
    let s = budgeted(300);
    let mut budget = s.budget();
    assert_eq!(s.text_in(&"a".repeat(200), &mut budget), "a".repeat(200));
    assert_eq!(budget.remaining(), 100);
    let out = s.text_in(&"b".repeat(200), &mut budget);
    assert_eq!(out, "[UNSCANNED: +200 bytes]");
    assert!(budget.is_spent());
    assert_eq!(s.body_in(Some("application/json"), br#"{"a": "x"}"#, &mut budget), json!({"_unscannedKeys": 1}));
}

#[test]
fn json_beyond_the_budget_is_left_out() {
    let s = budgeted(10);
    let out = s.sanitize(&json!({"a": "hello world, long", "b": "x", "c": [1]}));
    assert_eq!(out, json!({"a": "[UNSCANNED: +17 bytes]", UNSCANNED_KEYS_FIELD: 2}));
    let out = s.sanitize(&json!(["abcd", "efghijklmnop", "q", "r"]));
    assert_eq!(out, json!(["abcd", "[UNSCANNED: +12 bytes]", "[+2 items unscanned]"]));
}

#[test]
fn deep_json_is_truncated_without_recursing_deeply() {
    let s = Sanitizer::default();
    let nested = |levels: usize, inner: Value| (0..levels).fold(inner, |v, _| json!([v]));
    // Past the depth limit the parser skips the rest without recursing, however deep it goes.
    for levels in [100, 10_000, 1_000_000] {
        let body = format!("{}1{}", "[".repeat(levels), "]".repeat(levels));
        assert_eq!(s.body(Some("application/json"), body.as_bytes()), nested(8, json!(TRUNCATED)), "{levels}");
    }
    let body = format!("{}1{}", r#"{"k":"#.repeat(10_000), "}".repeat(10_000));
    let out = s.body(Some("application/json"), body.as_bytes());
    assert_eq!(out, (0..8).fold(json!(TRUNCATED), |v, _| json!({"k": v})));
    // A configured depth beyond the hard cap is capped; the parser's own limit (128) still refuses deeper
    // input that is not skipped.
    let deep_limit =
        Sanitizer::new(Limits { max_depth: usize::MAX, max_output_bytes: usize::MAX, ..Limits::default() });
    let body = format!("{}1{}", "[".repeat(100), "]".repeat(100));
    assert_eq!(deep_limit.body(Some("application/json"), body.as_bytes()), nested(64, json!(TRUNCATED)));
    let body = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    assert_eq!(deep_limit.body(Some("application/json"), body.as_bytes()), nested(64, json!(TRUNCATED)));
    // A deep value built in code is cut at the depth limit too.
    assert_eq!(s.sanitize(&nested(1_000, json!(1))), nested(8, json!(TRUNCATED)));
    // JSON inside a string is cut at the string's depth.
    let inner = format!("{}{}", "[".repeat(200), "]".repeat(200));
    assert_eq!(s.sanitize(&json!({"raw": inner})), json!({"raw": nested(7, json!(TRUNCATED)).to_string()}));
}

#[test]
fn many_keys_collapsing_onto_one_label_get_numbered() {
    let s = Sanitizer::default();
    let keys: serde_json::Map<String, Value> =
        (0..100).map(|i| (format!("user{i:03}@example.com"), Value::from(i))).collect();
    let out = s.sanitize(&Value::Object(keys));
    let obj = out.as_object().expect("object");
    assert_eq!(obj.len(), 100);
    assert_eq!(obj["[EMAIL]"], json!(0));
    assert_eq!(obj["[EMAIL]#100"], json!(99));
}
