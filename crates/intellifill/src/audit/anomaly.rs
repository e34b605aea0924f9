//! Anomaly detection: sliding windows per user (or per ip), shared by every instance.
//!
//! A window of length W is `BUCKETS` time buckets of W/BUCKETS; a count is the sum of the buckets that
//! overlap the last W (a bucketed sliding window: at most one bucket's worth of history too much, never a
//! counter whose expiry is pushed back on every hit, which would never forget a steady trickle). In Redis one
//! Lua script adds to the current bucket (its expiry set once, when the bucket is created, from the server's
//! clock) and sums the window, so N instances count together; when Redis does not answer the same windows
//! are kept in process (per instance) until it does. Distinct counts (ips per user) use one set per bucket
//! and the size of their union.
//!
//! Watched, with configurable thresholds: search bursts, mass deletes, bursts of 401/403, repeated
//! cross-tenant attempts, many source ips for one user. Crossing a threshold is reported once per window
//! per subject (a latch with the window's TTL) as a `security.anomaly` audit row, log line and counter;
//! critical ones (mass delete, cross-tenant burst) lock the user out when `SECURITY_AUTO_LOCK=true`.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use super::{AuditEvent, Recorder, actions, queue, security};
use crate::config::AnomalyConfig;
use crate::db::Db;
use crate::kv::{Key, Kv};
use crate::security::{SecurityKind, Severity};

const BUCKETS: u64 = 6;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AnomalyKind {
    SearchBurst,
    MassDelete,
    AuthFailureBurst,
    CrossTenantBurst,
    ManyIps,
}

impl AnomalyKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            AnomalyKind::SearchBurst => "search_burst",
            AnomalyKind::MassDelete => "mass_delete",
            AnomalyKind::AuthFailureBurst => "auth_failure_burst",
            AnomalyKind::CrossTenantBurst => "cross_tenant_burst",
            AnomalyKind::ManyIps => "many_ips",
        }
    }

    fn severity(self) -> Severity {
        match self {
            AnomalyKind::MassDelete | AnomalyKind::CrossTenantBurst => Severity::Critical,
            _ => Severity::High,
        }
    }
}

static WINDOW_SCRIPT: LazyLock<::redis::Script> = LazyLock::new(|| {
    ::redis::Script::new(
        r"
local prefix = KEYS[1]
local bucket_ms = tonumber(ARGV[1])
local buckets = tonumber(ARGV[2])
local member = ARGV[3]
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local b = math.floor(now_ms / bucket_ms)
local key = prefix .. b
if member == '' then redis.call('INCR', key) else redis.call('SADD', key, member) end
if redis.call('PTTL', key) < 0 then redis.call('PEXPIRE', key, bucket_ms * (buckets + 1)) end
if member == '' then
  local total = 0
  for i = 0, buckets - 1 do
    local v = redis.call('GET', prefix .. (b - i))
    if v then total = total + tonumber(v) end
  end
  return total
end
local keys = {}
for i = 0, buckets - 1 do keys[#keys + 1] = prefix .. (b - i) end
return #redis.call('SUNION', unpack(keys))
",
    )
});

/// A window's bucket length (ms) and the number of the bucket this instant falls in.
fn bucket_of(window: Duration) -> (u64, u64) {
    let bucket_ms = (window.as_millis() as u64 / BUCKETS).max(1);
    (bucket_ms, (chrono::Utc::now().timestamp_millis().max(0) as u64) / bucket_ms)
}

/// One in-process window (the fallback).
#[derive(Default)]
struct Local {
    buckets: VecDeque<(u64, u64, HashSet<String>)>,
}

impl Local {
    fn add(&mut self, bucket: u64, member: Option<&str>) -> u64 {
        while self.buckets.front().is_some_and(|(b, _, _)| *b + BUCKETS <= bucket) {
            self.buckets.pop_front();
        }
        if self.buckets.back().is_none_or(|(b, _, _)| *b != bucket) {
            self.buckets.push_back((bucket, 0, HashSet::new()));
        }
        if let Some((_, count, set)) = self.buckets.back_mut() {
            *count += 1;
            if let Some(m) = member {
                set.insert(m.to_owned());
            }
        }
        match member {
            None => self.buckets.iter().map(|(_, c, _)| c).sum(),
            Some(_) => self.buckets.iter().flat_map(|(_, _, s)| s.iter()).collect::<HashSet<_>>().len() as u64,
        }
    }
}

/// What the detector needs of an audit event (not its body or metadata: no copy of those per request).
#[derive(Debug, Clone)]
pub(crate) struct Observation {
    pub user_id: Option<uuid::Uuid>,
    pub organization_id: Option<uuid::Uuid>,
    pub action: std::borrow::Cow<'static, str>,
    pub status: Option<i32>,
    pub ip: Option<std::net::IpAddr>,
    pub request_id: Option<Arc<str>>,
    pub method: Option<Arc<str>>,
    pub path: Option<Arc<str>>,
    pub cross_tenant: bool,
}

impl Observation {
    pub(crate) fn of(e: &AuditEvent) -> Observation {
        Observation {
            user_id: e.user_id,
            organization_id: e.organization_id,
            action: e.action.clone(),
            status: e.status,
            ip: e.ip,
            request_id: e.request_id.clone(),
            method: e.method.clone(),
            path: e.path.clone(),
            cross_tenant: e.metadata["security"]["event"] == SecurityKind::CrossTenantAttempt.as_str(),
        }
    }
}

/// How long an observation may wait before the detector looks at it, and how many make it look at once.
/// Windows are a minute or more long, so this delay changes no verdict.
const OBSERVE_INTERVAL: Duration = Duration::from_millis(100);
const OBSERVE_BURST: usize = 256;

pub(crate) struct Detector {
    kv: Kv,
    db: Db,
    recorder: Recorder,
    config: AnomalyConfig,
    local: moka::sync::Cache<String, Arc<Mutex<Local>>>,
    latches: moka::sync::Cache<String, ()>,
    /// Distinct members (ips per user) this instance already added to the current bucket: adding one again
    /// changes no count, so it costs no round trip (the union only grows when a new member arrives, and the
    /// call that adds it, on whichever instance, sees the crossing). Keyed by value, so the common case (a
    /// known user from a known address) formats and allocates nothing.
    added: moka::sync::Cache<(uuid::Uuid, std::net::IpAddr, u64), ()>,
}

impl Detector {
    pub(crate) fn spawn(kv: Kv, db: Db, recorder: Recorder, config: AnomalyConfig) -> queue::Sender<Observation> {
        // Woken every OBSERVE_INTERVAL or for a burst, not for each request (see `audit::queue`).
        let (tx, mut rx) = queue::channel::<Observation>(10_000, OBSERVE_BURST, OBSERVE_INTERVAL);
        let detector = Detector {
            kv,
            db,
            recorder,
            config,
            local: moka::sync::Cache::builder().max_capacity(100_000).time_to_idle(Duration::from_secs(600)).build(),
            latches: moka::sync::Cache::builder().max_capacity(100_000).time_to_live(Duration::from_secs(300)).build(),
            added: moka::sync::Cache::builder().max_capacity(100_000).time_to_live(Duration::from_secs(60)).build(),
        };
        tokio::spawn(async move {
            loop {
                rx.ready().await;
                while let Some(event) = rx.try_recv() {
                    detector.observe(&event).await;
                }
                if rx.is_closed() {
                    return;
                }
            }
        });
        tx
    }

    async fn observe(&self, e: &Observation) {
        let minute = Duration::from_secs(60);
        let five = Duration::from_secs(300);
        let success = e.status.is_some_and(|s| (200..300).contains(&s));
        if let Some(user_id) = e.user_id {
            // Formatted only for a check that runs (most events run none).
            let user = || user_id.to_string();
            if e.action == "knowledge.search" {
                self.check(e, AnomalyKind::SearchBurst, &user(), None, minute, self.config.search_per_minute).await;
            }
            if actions::is_delete(&e.action) && success {
                self.check(e, AnomalyKind::MassDelete, &user(), None, minute, self.config.deletes_per_minute).await;
            }
            if e.cross_tenant {
                let limit = self.config.cross_tenant_per_5_minutes;
                self.check(e, AnomalyKind::CrossTenantBurst, &user(), None, five, limit).await;
            }
            if let Some(ip) = e.ip
                && self.first_sighting(user_id, ip, five)
            {
                let limit = self.config.ips_per_user_per_5_minutes;
                self.check(e, AnomalyKind::ManyIps, &user(), Some(&ip.to_string()), five, limit).await;
            }
        }
        if matches!(e.status, Some(401 | 403)) {
            // Before authentication there is no user: the ip is the subject.
            let subject = match (e.user_id, e.ip) {
                (Some(u), _) => u.to_string(),
                (None, Some(ip)) => format!("ip:{ip}"),
                (None, None) => return,
            };
            let limit = self.config.auth_failures_per_minute;
            self.check(e, AnomalyKind::AuthFailureBurst, &subject, None, minute, limit).await;
        }
    }

    /// Count the event in `kind`'s window for `subject`; report once per window when over `limit`.
    async fn check(
        &self,
        e: &Observation,
        kind: AnomalyKind,
        subject: &str,
        member: Option<&str>,
        window: Duration,
        limit: u64,
    ) {
        let count = self.count(kind, subject, member, window).await;
        if count <= limit || !self.first_report(kind, subject, window).await {
            return;
        }
        let mut event = AuditEvent::new("security.anomaly");
        event.user_id = e.user_id;
        event.organization_id = e.organization_id;
        event.request_id = e.request_id.clone();
        event.ip = e.ip;
        event.method = e.method.clone();
        event.path = e.path.clone();
        let details = serde_json::json!({
            "kind": kind.as_str(),
            "count": count,
            "threshold": limit,
            "windowSeconds": window.as_secs(),
            "lastAction": e.action,
        });
        security::mark(&mut event, SecurityKind::Anomaly, kind.severity(), details);
        self.recorder.record(event).await;
        if self.config.auto_lock
            && kind.severity() == Severity::Critical
            && let Some(user) = e.user_id
        {
            self.lock(user, kind).await;
        }
    }

    /// Whether `ip` is new for `user` in the current bucket of `window` on this instance.
    fn first_sighting(&self, user: uuid::Uuid, ip: std::net::IpAddr, window: Duration) -> bool {
        let (_, bucket) = bucket_of(window);
        let mut new = false;
        self.added.entry((user, ip, bucket)).or_insert_with(|| new = true);
        new
    }

    async fn count(&self, kind: AnomalyKind, subject: &str, member: Option<&str>, window: Duration) -> u64 {
        let (bucket_ms, bucket) = bucket_of(window);
        if self.kv.is_configured() {
            let key = self.kv.key(Key::AnomalyWindow(kind.as_str(), subject));
            let args = vec![bucket_ms.to_string(), BUCKETS.to_string(), member.unwrap_or("").to_owned()];
            if let Ok(n) = self.kv.script::<i64>(&WINDOW_SCRIPT, vec![key], args).await {
                return n.max(0) as u64;
            }
        }
        let local =
            self.local.get_with(format!("{}:{subject}", kind.as_str()), || Arc::new(Mutex::new(Local::default())));
        let mut window = local.lock().unwrap_or_else(|p| p.into_inner());
        window.add(bucket, member)
    }

    async fn first_report(&self, kind: AnomalyKind, subject: &str, window: Duration) -> bool {
        if self.kv.is_configured()
            && let Ok(first) =
                self.kv.set_nx_px(self.kv.key(Key::AnomalyReported(kind.as_str(), subject)), window).await
        {
            return first;
        }
        let key = format!("{}:{subject}", kind.as_str());
        let mut first = false;
        self.latches.entry(key).or_insert_with(|| {
            first = true;
        });
        first
    }

    async fn lock(&self, user: uuid::Uuid, kind: AnomalyKind) {
        let sql = "SELECT 1 FROM security_lock_user($1) AS locked WHERE locked";
        match self.db.unscoped(sql, &[(&user, tokio_postgres::types::Type::UUID)]).await {
            Ok(rows) if rows.len() == 1 => {
                metrics::counter!("security_auto_locks_total").increment(1);
                tracing::warn!(event = "security.user_locked", user_id = %user, reason = kind.as_str(),
                    "user deactivated after a critical security event (SECURITY_AUTO_LOCK)");
            }
            Ok(_) => {}
            Err(e) => tracing::error!(user_id = %user, error = %e, "could not lock the user out"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_windows_slide_bucket_by_bucket() {
        let mut w = Local::default();
        assert_eq!(w.add(10, None), 1);
        assert_eq!(w.add(10, None), 2);
        assert_eq!(w.add(15, None), 3, "bucket 10 is still within the 6 buckets ending at 15");
        assert_eq!(w.add(16, None), 2, "bucket 10 has left the window");
        assert_eq!(w.add(100, None), 1, "everything old is gone");
    }

    #[test]
    fn distinct_members_are_counted_once() {
        let mut w = Local::default();
        assert_eq!(w.add(1, Some("a")), 1);
        assert_eq!(w.add(1, Some("a")), 1);
        assert_eq!(w.add(2, Some("b")), 2);
        assert_eq!(w.add(9, Some("c")), 1);
    }
}
