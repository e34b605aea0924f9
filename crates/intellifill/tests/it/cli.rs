//! The binary itself: configuration errors are reported all at once, without secrets.

use std::process::Command;

#[test]
fn serve_reports_every_bad_variable_and_no_secret() {
    let output = Command::new(env!("CARGO_BIN_EXE_intellifill"))
        .arg("serve")
        .env_clear()
        .env("DATABASE_URL", "postgres://app:hunter2@127.0.0.1:1/db?sslmode=bogus")
        .env("DB_POOL_MAX_SIZE", "-3")
        .env("AUTH_AUTO_PROVISION", "perhaps")
        .output()
        .expect("run binary");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    for var in ["DATABASE_URL", "DB_POOL_MAX_SIZE", "SUPABASE_URL", "SUPABASE_ANON_KEY", "AUTH_AUTO_PROVISION"] {
        assert!(stderr.contains(var), "{var} not reported: {stderr}");
    }
    assert!(!stderr.contains("hunter2"), "secret leaked: {stderr}");
}

#[test]
fn migrate_needs_its_url() {
    let output = Command::new(env!("CARGO_BIN_EXE_intellifill")).arg("migrate").env_clear().output().expect("run");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("DATABASE_MIGRATION_URL"));
}
