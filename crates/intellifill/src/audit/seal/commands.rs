//! The sealing commands of `intellifill audit`: `verify`, `export`, `public-key`, `generate-key`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use uuid::Uuid;

use super::digest::{self, PublicKeys};
use super::verify::{Report, Scope, Verifier};
use super::{export, source};

/// Exit status of `audit verify` when the trail does not verify (2: it could not be checked at all).
const NOT_VERIFIED: u8 = 1;
const COULD_NOT_VERIFY: u8 = 2;

/// `--from` / `--to`: RFC 3339 (`2026-12-01T00:00:00Z`) or a date (`2026-12-01`, midnight UTC).
pub(crate) fn parse_time(raw: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| format!("expected an RFC 3339 time or a date (YYYY-MM-DD), got {raw:?}"))
}

/// `--anchor SEQ:HASH`: a digest head kept outside the database (the sealer's `audit.sealed` log lines).
pub(crate) fn parse_anchor(raw: &str) -> Result<(i64, String), String> {
    let (seq, hash) = raw.split_once(':').ok_or("expected SEQ:HASH (from an `audit.sealed` log line)")?;
    let seq = seq.parse().map_err(|_| format!("{seq:?} is not a digest sequence number"))?;
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("the hash is 64 hex digits".into());
    }
    Ok((seq, hash.to_ascii_lowercase()))
}

#[derive(Debug, clap::Args)]
pub(crate) struct VerifyArgs {
    /// Only the rows of this organization (digests are always checked whole).
    #[arg(long, value_parser = source::parse_org)]
    pub org: Option<Uuid>,
    /// Only rows created at or after this time (RFC 3339 or YYYY-MM-DD).
    #[arg(long, value_parser = parse_time)]
    pub from: Option<DateTime<Utc>>,
    /// Only rows created before this time.
    #[arg(long, value_parser = parse_time)]
    pub to: Option<DateTime<Utc>>,
    /// PEM file of the public key(s) that sign digests (repeatable; every key of a rotation). Default: the
    /// public half of AUDIT_SIGNING_KEY / AUDIT_SIGNING_KEY_FILE.
    #[arg(long = "public-key")]
    pub public_keys: Vec<PathBuf>,
    /// A digest head kept outside the database, SEQ:HASH (repeatable).
    #[arg(long = "anchor", value_parser = parse_anchor)]
    pub anchors: Vec<(i64, String)>,
    /// An unsealed row older than the newest seal by more than this many seconds is reported as inserted.
    #[arg(long, default_value = "120")]
    pub grace_secs: u32,
    /// Verify an export (`intellifill audit export`) offline instead of the database.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Direct connection string of the schema owner (or a superuser); not needed with --file.
    #[arg(long, env = "DATABASE_MIGRATION_URL", hide_env_values = true)]
    pub database_migration_url: Option<String>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ExportArgs {
    #[arg(long, value_parser = source::parse_org)]
    pub org: Uuid,
    #[arg(long, value_parser = parse_time)]
    pub from: DateTime<Utc>,
    #[arg(long, value_parser = parse_time)]
    pub to: DateTime<Utc>,
    /// Write here instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long, env = "DATABASE_MIGRATION_URL", hide_env_values = true)]
    pub database_migration_url: String,
}

/// The signing key of the environment (AUDIT_SIGNING_KEY or AUDIT_SIGNING_KEY_FILE), if any.
fn env_signing_key() -> anyhow::Result<Option<SigningKey>> {
    let inline = std::env::var("AUDIT_SIGNING_KEY").ok().filter(|v| !v.trim().is_empty());
    let file = std::env::var("AUDIT_SIGNING_KEY_FILE").ok().filter(|v| !v.trim().is_empty());
    let text = match (inline, file) {
        (Some(text), _) => text,
        (None, Some(path)) => {
            std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("cannot read {path:?}: {e}"))?
        }
        (None, None) => return Ok(None),
    };
    crate::config::parse_signing_key(&text).map(Some).map_err(|p| anyhow::anyhow!("audit signing key {p}"))
}

/// `audit public-key`: the public key (PEM) and key id of the configured signing key.
pub(crate) fn public_key() -> anyhow::Result<()> {
    let key = env_signing_key()?
        .ok_or_else(|| anyhow::anyhow!("set AUDIT_SIGNING_KEY or AUDIT_SIGNING_KEY_FILE to the signing key"))?;
    let public = key.verifying_key();
    print!("{}", digest::public_key_pem(&public));
    eprintln!("key id {}", digest::key_id(&public));
    Ok(())
}

/// `audit generate-key`: a new signing key as PKCS#8 PEM on standard output; its key id on standard error.
pub(crate) fn generate_key() -> anyhow::Result<()> {
    let key = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    let pem = key.to_pkcs8_pem(LineEnding::LF).map_err(|e| anyhow::anyhow!("encoding the key: {e}"))?;
    print!("{}", pem.as_str());
    eprintln!(
        "key id {} (publish its public half: `intellifill audit public-key`)",
        digest::key_id(&key.verifying_key())
    );
    Ok(())
}

fn public_keys(args: &VerifyArgs) -> anyhow::Result<PublicKeys> {
    let mut keys = PublicKeys::default();
    for path in &args.public_keys {
        let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        keys.add_pem(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    }
    if keys.0.is_empty() {
        match env_signing_key()? {
            Some(key) => {
                keys.add(key.verifying_key());
            }
            None => anyhow::bail!("give the signing public key(s) with --public-key FILE (or set AUDIT_SIGNING_KEY)"),
        }
    }
    Ok(keys)
}

/// `audit verify`: exit 0 when the trail verifies, 1 when it does not, 2 when it could not be checked.
pub(crate) async fn verify(args: VerifyArgs) -> ExitCode {
    match verify_inner(&args).await {
        Ok(report) => {
            let mut out = std::io::stdout().lock();
            for finding in &report.findings {
                let _ = writeln!(out, "{finding}");
            }
            let _ = writeln!(out, "{}", report.summary());
            if report.is_clean() { ExitCode::SUCCESS } else { ExitCode::from(NOT_VERIFIED) }
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(COULD_NOT_VERIFY)
        }
    }
}

async fn verify_inner(args: &VerifyArgs) -> anyhow::Result<Report> {
    let keys = public_keys(args)?;
    let grace = TimeDelta::seconds(i64::from(args.grace_secs));
    if let Some(path) = &args.file {
        let file = std::fs::File::open(path).map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
        let (scope, report) = export::verify_file(
            std::io::BufReader::new(file),
            |scope| Verifier::new(keys, scope, grace),
            &args.anchors,
        )?;
        println!(
            "export of organization {} from {} to {}",
            scope.org.map_or("-".into(), |o| o.to_string()),
            scope.from.map_or("-".into(), super::canonical::timestamp),
            scope.to.map_or("-".into(), super::canonical::timestamp)
        );
        return Ok(report);
    }
    let url = args
        .database_migration_url
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("give --database-migration-url (or DATABASE_MIGRATION_URL), or --file"))?;
    let client = crate::db::migrate::connect(url).await?;
    let scope = Scope { org: args.org, from: args.from, to: args.to };
    let started = std::time::Instant::now();
    let report = source::verify(&client, Verifier::new(keys, scope.clone(), grace), &scope, &args.anchors).await?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!("checked {} row(s) in {secs:.2} s ({:.0} rows/s)", report.rows, report.rows as f64 / secs.max(1e-9));
    Ok(report)
}

/// `audit export`.
pub(crate) async fn export(args: ExportArgs) -> anyhow::Result<()> {
    let client = crate::db::migrate::connect(&args.database_migration_url).await?;
    let scope = Scope { org: Some(args.org), from: Some(args.from), to: Some(args.to) };
    let written = match &args.out {
        Some(path) => {
            let file =
                std::fs::File::create(path).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
            let mut out = std::io::BufWriter::new(file);
            export::export(&client, &scope, &mut out).await?
        }
        None => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            export::export(&client, &scope, &mut out).await?
        }
    };
    eprintln!(
        "exported {} sealed row(s) and {} digest(s); {} row(s) of the range not sealed yet were left out",
        written.rows, written.digests, written.unsealed
    );
    Ok(())
}
