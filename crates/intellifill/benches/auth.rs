//! Cost of the verification pipeline's local steps, against a real GoTrue emulator on loopback (only the
//! first, cache-filling call reaches it).
//!
//! - `local_verify/es256`: the local JWT check of a Supabase ES256 token (JWKS key cached);
//! - `local_verify/hs256`: the same with a legacy HS256 secret;
//! - `l1_hit/verify`: `Authenticator::verify` on an L1 hit: SHA-256 of the token, cache lookup,
//!   revocation check. This is what every request with a known token pays. Target: p99 < 10 us.
//!
//! Besides criterion's figures, an explicit percentile pass prints p50/p99/max of the L1 hit over 100,000 calls.
//! Run: `cargo bench -p intellifill --bench auth`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use gotrue_emulator::{Emulator, EmulatorConfig, Signing};
use intellifill::bench::Authenticator;
use intellifill::testing::Kv;
use intellifill::{Config, ServeArgs};

const HS_SECRET: &str = "bench-legacy-secret-bench-legacy-secret";

fn config(emulator: &Emulator, secret: Option<&str>) -> Config {
    let args = ServeArgs {
        database_url: Some("postgres://app:pw@127.0.0.1:1/db".into()),
        supabase_url: Some(emulator.base_url()),
        supabase_anon_key: Some(emulator.anon_key().to_owned()),
        auth_jwt_secret: secret.map(str::to_owned),
        ..ServeArgs::default()
    };
    Config::from_args(&args).expect("bench configuration")
}

async fn setup(signing: Signing, secret: Option<&str>) -> (Emulator, Authenticator, String) {
    let emulator =
        Emulator::start(EmulatorConfig { signing, ..EmulatorConfig::default() }, SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("emulator");
    emulator.create_user("bench@example.test", "password123").expect("user");
    let token = emulator.sign_in("bench@example.test", "password123").expect("sign in").access_token;
    let cfg = config(&emulator, secret);
    let auth = Authenticator::from_config(&cfg, Kv::disabled("bench:")).expect("authenticator");
    auth.verify(&token).await.expect("first verification fills the cache");
    (emulator, auth, token)
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let (_es, es_auth, es_token) = rt.block_on(setup(Signing::Es256, None));
    let (_hs, hs_auth, hs_token) = rt.block_on(setup(Signing::Hs256 { secret: HS_SECRET.into() }, Some(HS_SECRET)));

    let mut group = c.benchmark_group("local_verify");
    group.bench_function("es256", |b| {
        b.to_async(&rt).iter(|| async { es_auth.verifier().verify(&es_token).await.expect("valid") })
    });
    group.bench_function("hs256", |b| {
        b.to_async(&rt).iter(|| async { hs_auth.verifier().verify(&hs_token).await.expect("valid") })
    });
    group.finish();

    let mut group = c.benchmark_group("l1_hit");
    group
        .bench_function("verify", |b| b.to_async(&rt).iter(|| async { es_auth.verify(&es_token).await.expect("hit") }));
    group.finish();

    // Percentiles of the L1 hit, one timing per call.
    let mut samples: Vec<Duration> = Vec::with_capacity(100_000);
    rt.block_on(async {
        for _ in 0..100_000 {
            let started = Instant::now();
            let user = es_auth.verify(&es_token).await.expect("hit");
            samples.push(started.elapsed());
            std::hint::black_box(user);
        }
    });
    samples.sort();
    let pick = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!(
        "l1_hit/verify percentiles over {} calls: p50 {:?}  p99 {:?}  p99.9 {:?}  max {:?}",
        samples.len(),
        pick(0.50),
        pick(0.99),
        pick(0.999),
        samples[samples.len() - 1]
    );
}

criterion_group! {
    name = auth;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = benches
}
criterion_main!(auth);
