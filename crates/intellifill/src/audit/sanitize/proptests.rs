//! Property tests: no input makes the sanitizer panic, and generated secrets embedded anywhere in text or
//! JSON never reach the output. The seed is fixed so a run is reproducible; a failure prints its case.

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use serde_json::{Value, json};

use super::patterns::luhn_valid;
use super::{Limits, Sanitizer};

/// 256 cases from a fixed seed, unless `PROPTEST_CASES` / `PROPTEST_RNG_SEED` say otherwise (for a longer
/// hunt).
fn config() -> Config {
    let env = |name: &str| std::env::var_os(name).is_some();
    let base = Config::default();
    Config {
        cases: if env("PROPTEST_CASES") { base.cases } else { 256 },
        rng_seed: if env("PROPTEST_RNG_SEED") { base.rng_seed } else { RngSeed::Fixed(0x5a17_12e5) },
        failure_persistence: None,
        ..base
    }
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        ".{0,40}".prop_map(Value::from),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::from),
            prop::collection::btree_map(".{0,12}", inner, 0..8).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn digits(n: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(0u8..10, n).prop_map(|d| d.into_iter().map(|d| char::from(b'0' + d)).collect())
}

fn email() -> impl Strategy<Value = String> {
    ("[a-z0-9][a-z0-9._+-]{0,11}", "[a-z0-9]{1,10}", "[a-z]{2,6}").prop_map(|(l, d, t)| format!("{l}@{d}.{t}"))
}

fn intl_phone() -> impl Strategy<Value = String> {
    (8usize..=15, prop::collection::vec((1usize..=4, prop::sample::select(vec![" ", "-", ".", ""])), 8))
        .prop_flat_map(|(n, groups)| (digits(n), Just(groups)))
        .prop_map(|(d, groups)| {
            let mut out = String::from("+");
            let mut rest = d.as_str();
            for (len, sep) in groups {
                if rest.is_empty() {
                    break;
                }
                let (head, tail) = rest.split_at(len.min(rest.len()));
                out.push_str(head);
                rest = tail;
                if !rest.is_empty() {
                    out.push_str(sep);
                }
            }
            out.push_str(rest);
            out
        })
}

fn national_phone() -> impl Strategy<Value = String> {
    (digits(3), digits(3), digits(4), digits(4), 0usize..5).prop_map(|(a, b, c, d, shape)| match shape {
        0 => format!("({a}) {b}-{c}"),
        1 => format!("{a}-{b}-{c}"),
        2 => format!("{a}.{b}.{c}"),
        3 => format!("0{} {c} {d}", &a[..2]),
        _ => format!("0{}{} {b}{}", &a[..2], &c[..2], &d[..3]),
    })
}

/// A valid IBAN, compact or grouped in fours.
fn iban() -> impl Strategy<Value = String> {
    ("[A-Z]{2}", "[A-Z0-9]{11,30}", any::<bool>()).prop_map(|(country, bban, grouped)| {
        let digits_of = |s: &str| -> String {
            s.chars().map(|c| c.to_digit(36).map_or(String::new(), |v| v.to_string())).collect()
        };
        let numeric = format!("{}{}00", digits_of(&bban), digits_of(&country));
        let rem = numeric.bytes().fold(0u32, |r, d| (r * 10 + u32::from(d - b'0')) % 97);
        let compact = format!("{country}{:02}{bban}", 98 - rem);
        if grouped {
            compact.as_bytes().chunks(4).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join(" ")
        } else {
            compact
        }
    })
}

/// A Luhn-valid card number, compact or grouped in fours by spaces or dashes.
fn card() -> impl Strategy<Value = String> {
    (prop::sample::select(vec![13usize, 15, 16, 19]), prop::sample::select(vec!["4", "51", "37", "6011"]), 0usize..3)
        .prop_flat_map(|(len, prefix, style)| (digits(len - prefix.len() - 1), Just(prefix), Just(style)))
        .prop_map(|(body, prefix, style)| {
            let partial = format!("{prefix}{body}");
            let check = (0..10u8)
                .map(|d| format!("{partial}{d}"))
                .find(|c| luhn_valid(c.as_bytes()))
                .expect("one check digit fits");
            let sep = match style {
                0 => return check,
                1 => " ",
                _ => "-",
            };
            if check.len() == 13 {
                return check;
            }
            check.as_bytes().chunks(4).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join(sep)
        })
}

fn jwt() -> impl Strategy<Value = String> {
    ("[A-Za-z0-9_-]{10,40}", "[A-Za-z0-9_-]{2,60}", "[A-Za-z0-9_-]{0,50}")
        .prop_map(|(h, p, s)| format!("eyJ{h}.eyJ{p}.{s}"))
}

fn api_key() -> impl Strategy<Value = String> {
    prop_oneof![
        (
            prop::sample::select(vec!["sk_live_", "sk_test_", "sb_secret_", "ghp_", "xoxb-", "glpat-"]),
            "[A-Za-z0-9_-]{16,40}"
        )
            .prop_map(|(p, k)| format!("{p}{k}")),
        "[0-9a-f]{28}[0-9][a-f][0-9a-f]{2,30}",
        "[A-Za-z0-9+/]{32,64}={0,2}",
        "[A-Za-z0-9_-]{32,64}",
    ]
}

fn secret() -> impl Strategy<Value = String> {
    prop_oneof![email(), intl_phone(), national_phone(), iban(), card(), jwt(), api_key()]
}

/// Prose around a secret: words of letters and punctuation.
fn filler() -> impl Strategy<Value = String> {
    prop::collection::vec("[a-zA-Z]{1,8}[,.;!?]?", 0..40).prop_map(|w| w.join(" "))
}

/// Is the secret, or the run of its letters and digits, in the output?
fn leaks(out: &str, secret: &str) -> bool {
    let compact = |s: &str| s.chars().filter(char::is_ascii_alphanumeric).collect::<String>();
    out.contains(secret) || compact(out).contains(&compact(secret))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_do_not_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let s = Sanitizer::default();
        let text = String::from_utf8_lossy(&bytes);
        let _ = s.text(&text);
        let _ = s.path_in(&text, &mut s.budget());
        let _ = s.body(Some("application/json"), &bytes);
        let _ = s.body(None, &bytes);
        let small = Sanitizer::new(Limits { max_scan_bytes: bytes.len() / 2, max_string_chars: 8, ..Limits::default() });
        let _ = small.text(&text);
    }

    #[test]
    fn arbitrary_text_does_not_panic(text in ".{0,300}", budget in 0usize..400) {
        let s = Sanitizer::new(Limits { max_scan_bytes: budget, ..Limits::default() });
        let _ = s.text(&text);
        let _ = s.path_in(&text, &mut s.budget());
    }

    #[test]
    fn arbitrary_json_does_not_panic(value in json_value(), budget in 0usize..2000) {
        let bytes = serde_json::to_vec(&value).expect("serializes");
        for s in [Sanitizer::default(), Sanitizer::new(Limits { max_scan_bytes: budget, max_depth: 3, ..Limits::default() })] {
            let out = s.body(Some("application/json"), &bytes);
            prop_assert!(serde_json::to_vec(&out).expect("serializes").len() <= s.limits().max_output_bytes.max(64));
        }
    }

    #[test]
    fn secrets_in_text_never_survive(before in filler(), secret in secret(), after in filler()) {
        let text = format!("{before} {secret} {after}");
        let out = Sanitizer::default().text(&text);
        prop_assert!(!leaks(&out, &secret), "{secret:?} survived in {out:?}");
    }

    #[test]
    fn secrets_cut_by_the_budget_never_survive(
        before in filler(), secret in secret(), after in filler(), budget in 0usize..800,
    ) {
        let text = format!("{before} {secret} {after}");
        let s = Sanitizer::new(Limits { max_scan_bytes: budget, max_string_chars: 10_000, ..Limits::default() });
        let out = s.text(&text);
        prop_assert!(!leaks(&out, &secret), "{secret:?} survived in {out:?} (budget {budget})");
    }

    #[test]
    fn secrets_in_json_never_survive(before in filler(), secret in secret(), after in filler(), nested in json_value()) {
        let body = json!({
            "note": format!("{before} {secret} {after}"),
            "value": secret.clone(),
            "list": [nested, secret.clone()],
            secret.clone(): {"k": format!("{before}, {secret}")},
            "path": format!("/users/{secret}/edit"),
        });
        let bytes = serde_json::to_vec(&body).expect("serializes");
        let out = Sanitizer::default().body(Some("application/json"), &bytes);
        let stored = serde_json::to_string(&out).expect("serializes");
        prop_assert!(!leaks(&stored, &secret), "{secret:?} survived in {stored}");
    }

    #[test]
    fn secrets_in_path_segments_never_survive(before in "[a-z]{1,8}", secret in secret()) {
        // As a client puts it in a path: spaces and slashes escaped.
        let encoded = secret.replace(' ', "%20").replace('/', "%2F");
        let s = Sanitizer::default();
        let out = s.path_in(&format!("/api/{before}/{encoded}/edit"), &mut s.budget());
        prop_assert!(!leaks(&out, &secret) && !leaks(&out, &encoded), "{secret:?} survived in {out:?}");
    }
}
