//! Redis over TLS (`rediss://`) with the certificate verified against `REDIS_CA_FILE`, and ACL users: the
//! token cache and revocations work across instances through a TLS-only `redis-server`, and every way of
//! getting the configuration wrong refuses to start with an error that names what to fix, while Redis
//! merely being down does not.

use std::time::Instant;

use intellifill::Application;
use intellifill::{Config, ServeArgs};
use testkit::{RedisOptions, RedisServer, RedisTls};

use crate::helpers::{TestApp, email, until_revoked};

const USER: &str = "intellifill";
const PASSWORD: &str = "s3cret-acl-password";

/// A throwaway CA and a server certificate it signed for 127.0.0.1: `(CA PEM, server side)`.
fn ca_and_server_certificate() -> (String, RedisTls) {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "intellifill test CA");
    ca.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
    let key = rcgen::KeyPair::generate().expect("server key");
    let server = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect("server params")
        .signed_by(&key, &ca_cert, &ca_key)
        .expect("server certificate");
    (ca_cert.pem(), RedisTls { cert_pem: server.pem(), key_pem: key.serialize_pem() })
}

/// A TLS-only redis-server whose one ACL user is `USER` / `PASSWORD`, and its CA in a file.
async fn tls_redis() -> (RedisServer, tempfile::NamedTempFile) {
    let (ca, tls) = ca_and_server_certificate();
    let redis =
        RedisServer::start_with(RedisOptions { tls: Some(tls), users: vec![(USER.to_owned(), PASSWORD.to_owned())] })
            .await
            .expect("TLS redis-server");
    let ca_file = tempfile::NamedTempFile::new().expect("CA file");
    std::fs::write(ca_file.path(), ca).expect("write CA");
    (redis, ca_file)
}

fn url_with(redis: &RedisServer, user: &str, password: &str) -> String {
    format!("rediss://{user}:{password}@127.0.0.1:{}", redis.port())
}

/// The outcome of building the server with `base`'s database and auth service and this Redis.
async fn build(base: &TestApp, redis_url: String, ca_file: Option<&std::path::Path>) -> anyhow::Result<Application> {
    let args = ServeArgs {
        bind_addr: Some("127.0.0.1:0".into()),
        app_env: Some("test".into()),
        database_url: Some(base.runtime_url.clone()),
        supabase_url: Some(base.emulator.base_url()),
        supabase_anon_key: Some(base.emulator.anon_key().to_owned()),
        redis_url: Some(redis_url),
        redis_ca_file: ca_file.map(|p| p.display().to_string()),
        audit_spool_dir: Some(tempfile::tempdir().expect("dir").path().display().to_string()),
        ..ServeArgs::default()
    };
    Application::build(Config::from_args(&args).map_err(|e| anyhow::anyhow!("{e}"))?).await
}

#[tokio::test]
async fn the_token_cache_and_revocations_work_across_instances_through_tls_redis_with_an_acl_user() {
    let (redis, ca_file) = tls_redis().await;
    let url = url_with(&redis, USER, PASSWORD);
    let ca = ca_file.path().display().to_string();
    let (url_a, ca_a) = (url.clone(), ca.clone());
    let a = TestApp::spawn_with(settings!(redis_url = url_a, redis_ca_file = ca_a)).await;
    let b = a.peer(settings!(redis_url = url, redis_ca_file = ca)).await;
    assert!(a.state.kv.is_healthy() && b.state.kv.is_healthy(), "both instances reach Redis over TLS");

    // L2: a token verified by one instance is not verified again upstream by the other.
    let u = a.user(&email("tls")).await;
    assert_eq!(a.get(&u, "/api/me").await.0, 200);
    let upstream = a.emulator.stats().user;
    assert_eq!(b.get(&u, "/api/me").await.0, 200);
    assert_eq!(a.emulator.stats().user, upstream, "the second instance did not find the token in the TLS Redis");

    // Revocations: a logout on one instance is refused on the other within a second.
    let r = a.http.post(a.url("/api/auth/logout")).bearer_auth(&u.token).send().await.expect("logout");
    assert_eq!(r.status().as_u16(), 204);
    let logged_out = Instant::now();
    until_revoked(&b, &u, logged_out).await;
    // The server has no plain-text port: everything above went over TLS.
    assert!(redis.url().starts_with("rediss://"));
}

#[tokio::test]
async fn a_misconfigured_tls_redis_refuses_to_start_and_says_what_to_fix() {
    let base = TestApp::spawn().await;
    let (redis, ca_file) = tls_redis().await;
    let good = url_with(&redis, USER, PASSWORD);

    // The right configuration builds (the control for everything below).
    build(&base, good.clone(), Some(ca_file.path())).await.expect("the right CA and credentials");

    let refused = |result: anyhow::Result<Application>| format!("{:#}", result.err().expect("must refuse to start"));

    // A CA that did not sign the server's certificate, or none (the system roots do not know it).
    let (other_ca, _) = ca_and_server_certificate();
    let other = tempfile::NamedTempFile::new().expect("file");
    std::fs::write(other.path(), other_ca).expect("write");
    for ca in [Some(other.path()), None] {
        let message = refused(build(&base, good.clone(), ca).await);
        assert!(message.contains("TLS") && message.contains("REDIS_CA_FILE"), "{ca:?}: {message}");
        assert!(message.to_lowercase().contains("certificate"), "{message}");
    }

    // Wrong password, unknown user, no credentials at all.
    for url in [
        url_with(&redis, USER, "wrong-password"),
        url_with(&redis, "nobody", PASSWORD),
        format!("rediss://127.0.0.1:{}", redis.port()),
    ] {
        let message = refused(build(&base, url.clone(), Some(ca_file.path())).await);
        assert!(message.contains("credentials") && message.contains("REDIS_URL"), "{message}");
        assert!(!message.contains("wrong-password") && !message.contains(PASSWORD), "a secret in {message}");
    }

    // TLS against a plain-text server: it waits for the rest of a "command" and never answers the handshake,
    // which looks like an unreachable Redis. Nothing is trusted: the server starts on in-process state.
    let plain = RedisServer::start().await.expect("plain redis");
    let app = build(&base, format!("rediss://127.0.0.1:{}", plain.port()), Some(ca_file.path())).await;
    assert!(!app.expect("starts as with Redis down").state().kv.is_healthy());

    // Configuration errors found before connecting.
    let insecure = format!("{good}/#insecure");
    let message = refused(build(&base, insecure, Some(ca_file.path())).await);
    assert!(message.contains("REDIS_URL") && message.contains("always verified"), "{message}");
    let message = refused(build(&base, plain.url(), Some(ca_file.path())).await);
    assert!(message.contains("REDIS_CA_FILE") && message.contains("rediss://"), "{message}");

    // Down is not misconfigured: the server starts without Redis and serves from in-process state.
    redis.stop().await.expect("stop");
    let app = build(&base, good, Some(ca_file.path())).await.expect("starts while Redis is down");
    assert!(!app.state().kv.is_healthy());
}
