//! TLS to Postgres: `sslmode=require` with a certificate verified against `DATABASE_CA_FILE`.

use intellifill::{Config, ServeArgs};

use crate::helpers::{TestApp, email, own_cluster};

/// Turn SSL on for a test cluster, with a fresh self-signed certificate for 127.0.0.1; returns the PEM.
async fn enable_ssl(pg: &testkit::PgCluster) -> String {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).expect("certificate");
    let cert = certified.cert.pem();
    let dir = pg.data_dir();
    std::fs::write(dir.join("server.crt"), &cert).expect("write cert");
    std::fs::write(dir.join("server.key"), certified.key_pair.serialize_pem()).expect("write key");
    // The server runs as the data directory's owner (the `postgres` user when the tests run as root).
    let owner = std::process::Command::new("stat").args(["-c", "%U"]).arg(dir).output().expect("stat");
    let owner = String::from_utf8_lossy(&owner.stdout).trim().to_owned();
    for f in ["server.crt", "server.key"] {
        let path = dir.join(f);
        let _ = std::process::Command::new("chown").arg(&owner).arg(&path).status();
        let _ = std::process::Command::new("chmod").arg("600").arg(&path).status();
    }
    let (su, conn) = tokio_postgres::connect(&pg.superuser_url("postgres"), tokio_postgres::NoTls).await.expect("su");
    tokio::spawn(conn);
    su.batch_execute("ALTER SYSTEM SET ssl = 'on'").await.expect("ssl on");
    su.batch_execute("SELECT pg_reload_conf()").await.expect("reload");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    cert
}

#[tokio::test]
async fn the_server_talks_to_postgres_over_verified_tls() {
    let (pg, runtime_url, owner_url) = own_cluster("tls_db").await;
    let cert = enable_ssl(&pg).await;
    let ca = tempfile::NamedTempFile::new().expect("ca file");
    std::fs::write(ca.path(), cert).expect("write ca");
    let emulator = gotrue_emulator::Emulator::start(Default::default(), ([127, 0, 0, 1], 0).into()).await.expect("emu");

    // Without the CA the certificate cannot be verified: the server refuses to start, never falls back.
    let args = ServeArgs {
        bind_addr: Some("127.0.0.1:0".into()),
        database_url: Some(format!("{runtime_url}?sslmode=require")),
        supabase_url: Some(emulator.base_url()),
        supabase_anon_key: Some(emulator.anon_key().to_owned()),
        audit_spool_dir: Some(tempfile::tempdir().expect("dir").path().display().to_string()),
        app_env: Some("test".into()),
        ..ServeArgs::default()
    };
    let err = intellifill::Application::build(Config::from_args(&args).expect("config")).await.err().expect("refused");
    let message = format!("{err:#}");
    assert!(message.contains("DATABASE_URL") && message.contains("TLS"), "{message}");

    let ca_path = ca.path().display().to_string();
    // The test's own owner connection goes without TLS (it has no CA file).
    let owner_plain = format!("{owner_url}?sslmode=disable");
    let app = TestApp::spawn_with_urls(
        "tls_db".into(),
        format!("{runtime_url}?sslmode=require"),
        owner_plain,
        emulator,
        settings!(database_ca_file = ca_path),
    )
    .await;
    let u = app.user(&email("tls")).await;
    let (s, b) = app.get(&u, "/api/me").await;
    assert_eq!(s, 200, "{b}");
    // pg_stat_ssl shows other roles' sessions to a superuser only.
    let (su, conn) = tokio_postgres::connect(&pg.superuser_url("postgres"), tokio_postgres::NoTls).await.expect("su");
    tokio::spawn(conn);
    let encrypted: i64 = su
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
              WHERE a.usename = 'intellifill_app' AND s.ssl",
            &[],
        )
        .await
        .expect("pg_stat_ssl")
        .get(0);
    assert!(encrypted >= 1, "the runtime role's connections are encrypted");
    let plain: i64 = su
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
              WHERE a.usename = 'intellifill_app' AND NOT s.ssl",
            &[],
        )
        .await
        .expect("pg_stat_ssl")
        .get(0);
    assert_eq!(plain, 0);
    drop(app);
    pg.stop().await.expect("stop");
}

#[test]
fn a_missing_ca_file_is_a_configuration_error() {
    let args = ServeArgs {
        database_url: Some("postgres://a:b@127.0.0.1:1/db".into()),
        database_ca_file: Some("/nonexistent/ca.pem".into()),
        supabase_url: Some("http://127.0.0.1:1".into()),
        supabase_anon_key: Some("k".into()),
        ..ServeArgs::default()
    };
    let errs = Config::from_args(&args).expect_err("invalid");
    assert!(errs.to_string().contains("DATABASE_CA_FILE: no such file"), "{errs}");
}
