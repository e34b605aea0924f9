//! The audit section: `AUDIT_*`, `SECURITY_AUTO_LOCK`, `ANOMALY_*`.

use std::path::PathBuf;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::DecodePrivateKey;

use super::check::{Checker, Section};
use super::{AppEnv, ServeArgs};

/// Longest one audit insert may take before its batch is spooled instead (not configurable).
const INSERT_TIMEOUT: Duration = Duration::from_secs(10);

/// Pipeline settings.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    pub exclude_paths: Vec<ExcludedPath>,
    /// Bytes of a request body kept for its row (`AUDIT_MAX_BODY_BYTES`); 0 keeps none.
    pub max_body_bytes: usize,
    /// Events in the in-memory queue; as many again may wait in the overflow on their way to the spool.
    pub queue_capacity: usize,
    /// Bytes the events waiting in memory (queue and overflow together) may take (`AUDIT_QUEUE_MAX_BYTES`).
    pub queue_max_bytes: usize,
    pub writer: WriterConfig,
    pub spool_dir: PathBuf,
    pub anomaly: AnomalyConfig,
    pub partitions: PartitionConfig,
    pub seal: SealConfig,
}

/// Audit partition maintenance (`audit::partitions`).
#[derive(Debug, Clone)]
pub struct PartitionConfig {
    /// Months created ahead of the current one (`AUDIT_PARTITIONS_AHEAD_MONTHS`).
    pub ahead_months: i32,
    /// Between two maintenance runs (`AUDIT_PARTITION_CHECK_SECONDS`).
    pub check_interval: Duration,
}

/// Sealing: digests of the audit rows, signed with a key the database never holds (`audit::seal`).
#[derive(Debug, Clone)]
pub struct SealConfig {
    /// The signing key (`AUDIT_SIGNING_KEY` or `AUDIT_SIGNING_KEY_FILE`); `None`: this instance does not seal.
    pub key: Option<SigningKey>,
    /// How often the sealer looks for finished rows (`AUDIT_SEAL_INTERVAL_SECS`).
    pub interval: Duration,
}

/// Smallest `AUDIT_QUEUE_MAX_BYTES` beyond room for bodies: the rest of a request's event (path, query, user
/// agent, ids) is at most a few KiB.
const MIN_QUEUE_BYTES: usize = 64 * 1024;

impl AuditConfig {
    /// Whether requests to `path` (the full request path, without the query) are never audited.
    pub fn is_excluded(&self, path: &str) -> bool {
        self.exclude_paths.iter().any(|p| p.matches(path))
    }
}

/// One entry of `AUDIT_EXCLUDE_PATHS`: a path matched exactly, or, written with a trailing `/*`, a subtree.
///
/// Exact is the default so that excluding `/health` cannot silently exclude `/health/detailed` (an
/// authenticated, platform-ADMIN route whose use must be audited): a subtree has to be asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExcludedPath {
    /// `/health`: that path only.
    Exact(String),
    /// `/api/docs/*`: `/api/docs` and every path under `/api/docs/` (the value held is `/api/docs`).
    Subtree(String),
}

impl ExcludedPath {
    /// One entry, or why it is not one.
    fn parse(entry: &str) -> Result<Self, String> {
        let (base, subtree) = match entry.strip_suffix("/*") {
            Some(base) => (base, true),
            None => (entry, false),
        };
        if !base.starts_with('/') {
            return Err(format!("{entry:?} is not a path (it must start with /)"));
        }
        if base.contains('*') {
            return Err(format!("{entry:?}: `*` is allowed only as a final `/*` (a subtree)"));
        }
        if base.contains('?') || base.contains('#') {
            return Err(format!("{entry:?}: paths are matched without their query; leave out `?` and `#`"));
        }
        Ok(if subtree { Self::Subtree(base.to_owned()) } else { Self::Exact(base.to_owned()) })
    }

    fn matches(&self, path: &str) -> bool {
        match self {
            Self::Exact(p) => path == p,
            Self::Subtree(base) => {
                path.strip_prefix(base.as_str()).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            }
        }
    }
}

/// Writer tuning.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    pub batch_size: usize,
    pub flush_interval: Duration,
    /// Longest one insert may take before the batch is spooled instead.
    pub insert_timeout: Duration,
    /// Bytes the disk spool may take (`AUDIT_SPOOL_MAX_BYTES`): at it the writer holds events in memory.
    pub spool_max_bytes: u64,
}

/// Anomaly thresholds (events per window).
#[derive(Debug, Clone)]
pub struct AnomalyConfig {
    pub search_per_minute: u64,
    pub deletes_per_minute: u64,
    pub auth_failures_per_minute: u64,
    pub cross_tenant_per_5_minutes: u64,
    pub ips_per_user_per_5_minutes: u64,
    pub auto_lock: bool,
}

/// The audit section.
pub(super) fn from_args(args: &ServeArgs, app_env: Option<AppEnv>) -> Section<AuditConfig> {
    let mut c = Checker::default();
    let audit = AuditConfig {
        exclude_paths: exclude_paths(&mut c, args),
        max_body_bytes: c.number("AUDIT_MAX_BODY_BYTES", &args.audit_max_body_bytes, (0, 1_048_576)),
        queue_capacity: c.number("AUDIT_QUEUE_CAPACITY", &args.audit_queue_capacity, (1, 10_000_000)),
        queue_max_bytes: c.number("AUDIT_QUEUE_MAX_BYTES", &args.audit_queue_max_bytes, (MIN_QUEUE_BYTES, 1 << 40)),
        writer: WriterConfig {
            batch_size: c.number("AUDIT_BATCH_SIZE", &args.audit_batch_size, (1, 10_000)),
            flush_interval: c.millis("AUDIT_FLUSH_INTERVAL_MS", &args.audit_flush_interval_ms, 600_000),
            insert_timeout: INSERT_TIMEOUT,
            spool_max_bytes: c.number("AUDIT_SPOOL_MAX_BYTES", &args.audit_spool_max_bytes, (65_536, 1 << 50)),
        },
        spool_dir: c.text("AUDIT_SPOOL_DIR", &args.audit_spool_dir).into(),
        anomaly: anomaly(&mut c, args),
        partitions: PartitionConfig {
            ahead_months: c.number("AUDIT_PARTITIONS_AHEAD_MONTHS", &args.audit_partitions_ahead_months, (1, 24)),
            check_interval: c.seconds(
                "AUDIT_PARTITION_CHECK_SECONDS",
                &args.audit_partition_check_seconds,
                (1, 86_400),
            ),
        },
        seal: seal(&mut c, args, app_env),
    };
    // A request's event must fit, with room for a few more: else every request with a body is refused.
    if audit.queue_max_bytes < 4 * audit.max_body_bytes + MIN_QUEUE_BYTES {
        c.problem(
            "AUDIT_QUEUE_MAX_BYTES",
            format!(
                "must be at least 4 x AUDIT_MAX_BODY_BYTES + {MIN_QUEUE_BYTES} ({} with AUDIT_MAX_BODY_BYTES={}), got {}",
                4 * audit.max_body_bytes + MIN_QUEUE_BYTES,
                audit.max_body_bytes,
                audit.queue_max_bytes
            ),
        );
    }
    c.finish(audit)
}

/// `AUDIT_EXCLUDE_PATHS`: comma-separated entries, each an exact path or a subtree (`/prefix/*`).
fn exclude_paths(c: &mut Checker, args: &ServeArgs) -> Vec<ExcludedPath> {
    let text = c.text("AUDIT_EXCLUDE_PATHS", &args.audit_exclude_paths);
    let mut paths = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match ExcludedPath::parse(entry) {
            Ok(p) => paths.push(p),
            Err(problem) => c.problem("AUDIT_EXCLUDE_PATHS", problem),
        }
    }
    paths
}

/// `AUDIT_SEALING`, `AUDIT_SIGNING_KEY` / `AUDIT_SIGNING_KEY_FILE`, `AUDIT_SEAL_INTERVAL_SECS`.
///
/// Production without a key refuses to start unless sealing is turned off explicitly (`AUDIT_SEALING=off`):
/// an unsealed trail must be a decision written in the deployment, never an accident. Development and test
/// run without sealing when no key is given.
fn seal(c: &mut Checker, args: &ServeArgs, app_env: Option<AppEnv>) -> SealConfig {
    let on = c.choice("AUDIT_SEALING", &args.audit_sealing, &[("on", true), ("off", false)]);
    let interval = c.seconds("AUDIT_SEAL_INTERVAL_SECS", &args.audit_seal_interval_secs, (1, 86_400));
    let inline = c.optional("AUDIT_SIGNING_KEY", &args.audit_signing_key);
    let file = c.optional("AUDIT_SIGNING_KEY_FILE", &args.audit_signing_key_file);
    let key = match (inline, file) {
        (Some(_), Some(_)) => {
            c.problem("AUDIT_SIGNING_KEY", "set AUDIT_SIGNING_KEY or AUDIT_SIGNING_KEY_FILE, not both");
            None
        }
        (Some(text), None) => parse_signing_key(text).map_err(|p| c.problem("AUDIT_SIGNING_KEY", p)).ok(),
        (None, Some(path)) => match std::fs::read_to_string(path) {
            Ok(text) => parse_signing_key(&text).map_err(|p| c.problem("AUDIT_SIGNING_KEY_FILE", p)).ok(),
            Err(e) => {
                c.problem("AUDIT_SIGNING_KEY_FILE", format!("cannot read {path:?}: {e}"));
                None
            }
        },
        (None, None) => {
            if on && app_env == Some(AppEnv::Production) {
                c.problem(
                    "AUDIT_SIGNING_KEY",
                    "production seals the audit trail: set AUDIT_SIGNING_KEY or AUDIT_SIGNING_KEY_FILE (generate \
                     one with `intellifill audit generate-key`), or run unsealed on purpose with AUDIT_SEALING=off",
                );
            }
            None
        }
    };
    SealConfig { key: if on { key } else { None }, interval }
}

/// An Ed25519 signing key: PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`, as `openssl genpkey -algorithm ed25519`
/// and `intellifill audit generate-key` write it) or the 32-byte seed in base64. The problem never quotes the
/// text.
pub fn parse_signing_key(text: &str) -> Result<SigningKey, String> {
    let text = text.trim();
    if text.starts_with("-----BEGIN") {
        return SigningKey::from_pkcs8_pem(text)
            .map_err(|_| "is not an Ed25519 private key in PKCS#8 PEM (BEGIN PRIVATE KEY)".to_owned());
    }
    use base64::Engine as _;
    let seed = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| "expected PKCS#8 PEM or a base64 32-byte seed".to_owned())?;
    let seed: [u8; 32] = seed.try_into().map_err(|_| "a base64 seed must decode to exactly 32 bytes".to_owned())?;
    Ok(SigningKey::from_bytes(&seed))
}

/// `ANOMALY_*` thresholds and `SECURITY_AUTO_LOCK`.
fn anomaly(c: &mut Checker, args: &ServeArgs) -> AnomalyConfig {
    const RANGE: (u64, u64) = (1, 1_000_000);
    AnomalyConfig {
        search_per_minute: c.number("ANOMALY_SEARCHES_PER_MINUTE", &args.anomaly_searches_per_minute, RANGE),
        deletes_per_minute: c.number("ANOMALY_DELETES_PER_MINUTE", &args.anomaly_deletes_per_minute, RANGE),
        auth_failures_per_minute: c.number(
            "ANOMALY_AUTH_FAILURES_PER_MINUTE",
            &args.anomaly_auth_failures_per_minute,
            RANGE,
        ),
        cross_tenant_per_5_minutes: c.number(
            "ANOMALY_CROSS_TENANT_PER_5_MINUTES",
            &args.anomaly_cross_tenant_per_5_minutes,
            RANGE,
        ),
        ips_per_user_per_5_minutes: c.number(
            "ANOMALY_IPS_PER_USER_PER_5_MINUTES",
            &args.anomaly_ips_per_user_per_5_minutes,
            RANGE,
        ),
        auto_lock: c.boolean("SECURITY_AUTO_LOCK", &args.security_auto_lock),
    }
}
