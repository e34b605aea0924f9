//! Cost of auditing on the request path: gathering a request's facts, its admission (`Auditor::admit`: two
//! atomic updates) and `Auditor::record_request` (a `try_send` into the bounded queue). Target: < 5 us per
//! request. Also what the writer does per request, off
//! the request path: making the row (`RequestFacts::into_event`, with the user agent and query string
//! sanitized), and the sanitizer alone on user agents, query strings and write bodies.
//!
//! Run: `cargo bench -p intellifill --bench audit`. No database is needed: the queue is sized so that the
//! writer never flushes while the measurement runs.

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use intellifill::bench::RequestFacts;
use intellifill::bench::{AuditNotes, Auditor};
use intellifill::testing::Db;
use intellifill::testing::Kv;
use intellifill::{Config, ServeArgs};

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let spool = tempfile::tempdir().expect("spool dir");
    let args = ServeArgs {
        database_url: Some("postgres://app:pw@127.0.0.1:1/db".into()),
        supabase_url: Some("http://127.0.0.1:1".into()),
        supabase_anon_key: Some("anon".into()),
        audit_queue_capacity: Some("10000000".into()),
        audit_queue_max_bytes: Some((1u64 << 40).to_string()),
        audit_batch_size: Some("10000".into()),
        audit_flush_interval_ms: Some("600000".into()),
        audit_spool_dir: Some(spool.path().display().to_string()),
        // Not production: /metrics needs no scrape token here.
        app_env: Some("test".into()),
        ..ServeArgs::default()
    };
    let config = Config::from_args(&args).expect("configuration");
    let auditor = rt.block_on(async {
        let db = Db::connect(&config.database, config.database_url()).expect("pool");
        Auditor::start(config.audit.clone(), db, Kv::disabled("bench:")).expect("auditor")
    });
    let user = uuid::Uuid::new_v4();
    let org = uuid::Uuid::new_v4();

    let mut group = c.benchmark_group("audit");
    let ua = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
    let (parts, ()) = axum::http::Request::get("/api/organizations/x/knowledge?q=invoice&limit=20")
        .header("user-agent", ua)
        .body(())
        .expect("request")
        .into_parts();
    let request_id: std::sync::Arc<str> = "01a2139f-4a08-7491-a483-59f8366712f9".into();
    let seen = intellifill::bench::Seen {
        request_id: Some(&request_id),
        client_request_id: None,
        ip: Some([127, 0, 0, 1].into()),
        is_write: false,
        max_body_bytes: 1 << 20,
    };
    let route = intellifill::bench::RouteNote {
        path: "/api/organizations/{orgId}/knowledge/search",
        action: "knowledge.search",
        entity: Some("knowledge_source"),
    };
    let notes =
        AuditNotes { route: Some(route), user_id: Some(user), organization_id: Some(org), ..AuditNotes::default() };
    let facts = || {
        let mut facts = RequestFacts::of(&parts, &seen);
        facts.finished(notes.clone(), 200, Duration::from_millis(3), None);
        facts
    };
    group.bench_function("admit_and_record_request", |b| {
        let _guard = rt.enter();
        b.iter(|| {
            let facts = facts();
            let ticket = auditor.admit(facts.weight()).expect("room");
            auditor.record_request(facts, ticket)
        })
    });
    group.bench_function("make_row_off_the_request_path", |b| b.iter(|| facts().into_event(auditor.sanitizer())));
    let body = serde_json::to_vec(&serde_json::json!({
        "title": "Quarterly invoice for ACME",
        "content": "Please pay by the 30th. Contact jane@example.org or +44 20 7946 0958. ".repeat(10),
        "password": "hunter2",
        "customer": {"name": "Jane Doe", "address": "221B Baker Street", "tags": ["a", "b", "c"]},
    }))
    .expect("json");
    group.bench_function("sanitize_user_agent", |b| b.iter(|| auditor.sanitizer().text(std::hint::black_box(ua))));
    group.bench_function("sanitize_query_string", |b| {
        b.iter(|| auditor.sanitizer().text(std::hint::black_box("q=invoice%202026&limit=20")))
    });
    group.bench_function("sanitize_1kb_json_body", |b| {
        b.iter(|| auditor.sanitizer().body(Some("application/json"), std::hint::black_box(&body)))
    });
    group.finish();
}

criterion_group! {
    name = audit;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = benches
}
criterion_main!(audit);
