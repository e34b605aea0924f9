//! Worst cases of the audit sanitizer: 1 MiB adversarial inputs (mixed IBAN/phone/card/e-mail text, long
//! strings without separators, secret-shaped tokens, wide and deep JSON). Each input is measured through
//! `Sanitizer::text` or `Sanitizer::body` with the default limits (`default/...`: the scan budget cuts the
//! input) and with an unlimited scan budget (`unbounded/...`: every byte is scanned, which shows the cost
//! per KiB of the scanners themselves). Criterion reports the time per input and the throughput. Target: a
//! few milliseconds per MiB at worst.
//!
//! Run: `cargo bench -p intellifill --bench sanitize` (add `-- --quick` for a short run).

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use intellifill::bench::{Limits, Sanitizer};

const MIB: usize = 1 << 20;

/// `unit` repeated until the text holds `MIB` bytes.
fn repeat_to_mib(unit: &str) -> String {
    let mut s = unit.repeat(MIB / unit.len() + 1);
    s.truncate(MIB);
    s
}

/// The free-text inputs, 1 MiB each.
fn texts() -> Vec<(&'static str, String)> {
    vec![
        // IBAN-shaped tokens whose checksum fails, next to national phone shapes.
        ("iban_phone_mix", repeat_to_mib("DE89370400440532013001 555-123-4567 ")),
        ("iban_grouped_phone_mix", repeat_to_mib("GB82 WEST 1234 5698 7654 31 020 7946 0958 ")),
        (
            "pii_mix",
            repeat_to_mib(
                "jane.doe@example.com GB82WEST12345698765432 4111 1111 1111 1111 +44 20 7946 0958 (555) 123-4567 ",
            ),
        ),
        ("card_shaped_digits", repeat_to_mib("4111 1111 1111 1112 ")),
        ("digits_no_separator", repeat_to_mib("1234567890")),
        ("letters_no_separator", "a".repeat(MIB)),
        ("alnum_no_separator", repeat_to_mib("DE89ab12")),
        ("email_local_parts", repeat_to_mib("a.b-c_d+e")),
        ("at_signs", repeat_to_mib("a@b.")),
        ("key_value_pairs", repeat_to_mib("a=1&b: 2&password=x&")),
        ("quoted_pairs", repeat_to_mib(r#""k": "v", "email": "x", "#)),
        (
            "secret_tokens",
            repeat_to_mib("Bearer eyJhbGciOi.eyJzdWIiOjE.c2lnbmF0dXJl sk_live_4eC39HqLyjWDarjtT1zdp7dc "),
        ),
        ("spaces", " ".repeat(MIB)),
        ("multibyte", repeat_to_mib("é🦀ü")),
    ]
}

/// JSON bodies, about 1 MiB each.
fn bodies() -> Vec<(&'static str, Vec<u8>)> {
    let deep = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n)).into_bytes();
    let deep_objects = |n: usize| format!("{}1{}", r#"{"k":"#.repeat(n), "}".repeat(n)).into_bytes();
    let long_string =
        serde_json::to_vec(&serde_json::json!({ "note": repeat_to_mib("DE89370400440532013001 555-123-4567 ") }))
            .expect("json");
    let many_strings: Vec<String> = (0..MIB / 64).map(|i| format!("{i} jane{i}@example.com 555-123-4567")).collect();
    let wide = serde_json::to_vec(&serde_json::json!({ "items": many_strings })).expect("json");
    let nested_arrays: Vec<Vec<String>> =
        (0..MIB / 2048).map(|i| (0..40).map(|j| format!("{i}-{j} +44 20 7946 0958")).collect()).collect();
    let nested = serde_json::to_vec(&serde_json::json!({ "rows": nested_arrays })).expect("json");
    let keys: serde_json::Map<String, serde_json::Value> =
        (0..MIB / 32).map(|i| (format!("user{i}@example.com"), serde_json::Value::from(i))).collect();
    let many_keys = serde_json::to_vec(&serde_json::Value::Object(keys)).expect("json");
    vec![
        ("deep_arrays_10000", deep(10_000)),
        ("deep_objects_10000", deep_objects(10_000)),
        ("deep_arrays_120", deep(120)),
        ("long_string_value", long_string),
        ("many_string_values", wide),
        ("nested_arrays", nested),
        ("many_keys", many_keys),
    ]
}

fn benches(c: &mut Criterion) {
    let unbounded = Limits { max_scan_bytes: usize::MAX, ..Limits::default() };
    let texts = texts();
    let bodies = bodies();
    for (budget, limits) in [("default", Limits::default()), ("unbounded", unbounded)] {
        let sanitizer = Sanitizer::new(limits);
        let mut group = c.benchmark_group(format!("sanitize_{budget}"));
        for (name, text) in &texts {
            group.throughput(Throughput::Bytes(text.len() as u64));
            group
                .bench_with_input(BenchmarkId::new("text", name), text, |b, t| b.iter(|| sanitizer.text(black_box(t))));
        }
        for (name, body) in &bodies {
            group.throughput(Throughput::Bytes(body.len() as u64));
            group.bench_with_input(BenchmarkId::new("body", name), body, |b, body| {
                b.iter(|| sanitizer.body(Some("application/json"), black_box(body)))
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = sanitize;
    config = Criterion::default().sample_size(10).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1));
    targets = benches
}
criterion_main!(sanitize);
