//! The shared store (Redis), chosen at start-up: present when `REDIS_URL` is set, absent otherwise.
//!
//! Everything that must hold across instances goes through here: the L2 token cache, the revocation list and
//! its broadcast, rate-limit counters. Redis is never allowed to fail a request: every command has a short
//! timeout (`REDIS_OP_TIMEOUT_MS`) and goes through a circuit breaker (so a dead or hanging Redis costs
//! nothing once detected), and a failed or slow command is reported to the caller as "unavailable" so it
//! falls back to its in-process state. The connection is made in the background, so the server
//! starts (and serves) while Redis is down, and `ConnectionManager` reconnects after a drop.
//!
//! Keys are typed ([`Key`]) and carry the configured prefix, so several deployments (or tests) can share one
//! Redis without seeing each other.
//!
//! TLS (`rediss://`, certificate verified against the system roots and `REDIS_CA_FILE`) and ACL users are the
//! client's ([`tls`]); a connection refused for a reason of configuration (certificate, credentials) is kept
//! as [`Kv::misconfiguration`], which start-up turns into a refusal to start and which is logged as an
//! error, not as an outage, for as long as it lasts.

pub(crate) mod bus;
mod tls;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{AsyncCommands, Client, FromRedisValue};
use tokio::sync::RwLock;
use uuid::Uuid;

/// Every key the server writes, in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Key<'a> {
    /// L2 token cache entry, by SHA-256 of the token (hex).
    Token(&'a str),
    /// A revoked token, by SHA-256 of the token (hex).
    RevokedToken(&'a str),
    /// A revoked session (all its tokens).
    RevokedSession(Uuid),
    /// A user's logout cut-off (global and `others` logouts).
    RevokedUser(Uuid),
    /// A session the auth service confirmed alive after a cut-off of its user (the cut-off's time).
    SessionAlive(Uuid),
    /// The pub/sub channel of revocations.
    RevocationChannel,
    /// Prefix of the time buckets of one anomaly window (`<kind>:<subject>:`; the bucket number follows).
    AnomalyWindow(&'a str, &'a str),
    /// Once-per-window latch of a reported anomaly.
    AnomalyReported(&'a str, &'a str),
    /// GCRA state of one rate-limit key (`<policy>:<scope>:<parts>`).
    RateLimit(&'a str),
}

impl Key<'_> {
    pub fn render(&self, prefix: &str) -> String {
        match self {
            Key::Token(hash) => format!("{prefix}auth:token:{hash}"),
            Key::RevokedToken(hash) => format!("{prefix}auth:revoked:token:{hash}"),
            Key::RevokedSession(id) => format!("{prefix}auth:revoked:session:{id}"),
            Key::RevokedUser(id) => format!("{prefix}auth:revoked:user:{id}"),
            Key::SessionAlive(id) => format!("{prefix}auth:alive:session:{id}"),
            Key::RevocationChannel => format!("{prefix}auth:revocations"),
            Key::AnomalyWindow(kind, subject) => format!("{prefix}anomaly:w:{kind}:{subject}:"),
            Key::AnomalyReported(kind, subject) => format!("{prefix}anomaly:r:{kind}:{subject}"),
            Key::RateLimit(key) => format!("{prefix}rl:{key}"),
        }
    }
}

/// Why a command did not give an answer.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    #[error("no shared store is configured")]
    NotConfigured,
    #[error("the shared store is not connected")]
    NotConnected,
    #[error("the shared store did not answer in time")]
    Timeout,
    #[error("the shared store is failing: not asked for a moment")]
    Unavailable,
    #[error("shared store error: {0}")]
    Redis(#[from] ::redis::RedisError),
}

#[derive(Debug, Default)]
pub struct KvStats {
    pub errors: AtomicU64,
    pub timeouts: AtomicU64,
}

struct Inner {
    client: Client,
    /// Fails fast while Redis is down or hanging: no request waits `REDIS_OP_TIMEOUT_MS` for a dead store
    /// once the breaker has seen it fail.
    breaker: breaker::CircuitBreaker,
    op_timeout: Duration,
    conn: RwLock<Option<ConnectionManager>>,
    healthy: AtomicBool,
    stats: KvStats,
    /// Why the last connection attempt was refused, when the configuration is the reason.
    misconfigured: std::sync::Mutex<Option<String>>,
}

/// Handle on the shared store; cheap to clone. `Kv::disabled()` when no Redis is configured.
#[derive(Clone)]
pub struct Kv {
    inner: Option<Arc<Inner>>,
    prefix: Arc<str>,
}

impl Kv {
    pub fn disabled(prefix: &str) -> Kv {
        Kv { inner: None, prefix: prefix.into() }
    }

    /// Configure the store and start connecting in the background (`ca_file`: `REDIS_CA_FILE`).
    pub fn connect(
        url: &str,
        ca_file: Option<&std::path::Path>,
        prefix: &str,
        op_timeout: Duration,
    ) -> anyhow::Result<Kv> {
        let client = tls::client(url, ca_file)?;
        let breaker = breaker::CircuitBreaker::new(
            "redis",
            breaker::BreakerConfig {
                timeout: Some(op_timeout),
                reset_timeout: Duration::from_secs(1),
                error_threshold_percentage: 50.0,
                volume_threshold: 5,
                rolling_window: Duration::from_secs(5),
                buckets: 5,
                enabled: true,
            },
        );
        let inner = Arc::new(Inner {
            client,
            breaker,
            op_timeout,
            conn: RwLock::new(None),
            healthy: AtomicBool::new(false),
            stats: KvStats::default(),
            misconfigured: std::sync::Mutex::new(None),
        });
        // The task holds the state weakly: a server that gives up at start (or shuts down) stops retrying.
        let background = Arc::downgrade(&inner);
        tokio::spawn(async move { connect_until_done(background).await });
        Ok(Kv { inner: Some(inner), prefix: prefix.into() })
    }

    pub fn is_configured(&self) -> bool {
        self.inner.is_some()
    }

    /// Why the store cannot be used as configured (TLS certificate, credentials), while that lasts.
    pub fn misconfiguration(&self) -> Option<String> {
        let inner = self.inner.as_ref()?;
        inner.misconfigured.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether the last command (or connection attempt) succeeded.
    pub fn is_healthy(&self) -> bool {
        self.inner.as_ref().is_some_and(|i| i.healthy.load(Ordering::Relaxed))
    }

    /// The breaker in front of Redis (health).
    pub fn breaker(&self) -> Option<&breaker::CircuitBreaker> {
        self.inner.as_ref().map(|i| &i.breaker)
    }

    pub fn stats(&self) -> Option<&KvStats> {
        self.inner.as_ref().map(|i| &i.stats)
    }

    pub fn key(&self, key: Key<'_>) -> String {
        key.render(&self.prefix)
    }

    pub(crate) fn client(&self) -> Option<&Client> {
        self.inner.as_ref().map(|i| &i.client)
    }

    /// Wait until connected, at most `wait` (start-up: a fresh instance should count its first requests'
    /// rate limits in Redis with the others, not in process while the connection is still being made), or
    /// until the store refuses the configuration ([`Kv::misconfiguration`]).
    pub async fn wait_connected(&self, wait: Duration) -> bool {
        let Some(inner) = &self.inner else { return false };
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if inner.conn.read().await.is_some() {
                return true;
            }
            if tokio::time::Instant::now() >= deadline || self.misconfiguration().is_some() {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Run one command with the store's timeout; errors are counted and returned, never panicked on.
    pub async fn run<T, F, Fut>(&self, op: F) -> Result<T, KvError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = ::redis::RedisResult<T>>,
    {
        let inner = self.inner.as_ref().ok_or(KvError::NotConfigured)?;
        let conn = inner.conn.read().await.clone().ok_or(KvError::NotConnected)?;
        let result = match inner.breaker.call(op(conn), breaker::Outcome::of).await {
            Ok(v) => Ok(v),
            Err(breaker::BreakerError::Open { .. }) => Err(KvError::Unavailable),
            Err(breaker::BreakerError::Timeout(_)) => {
                inner.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                Err(KvError::Timeout)
            }
            Err(breaker::BreakerError::Inner(e)) => {
                inner.stats.errors.fetch_add(1, Ordering::Relaxed);
                Err(KvError::Redis(e))
            }
        };
        let ok = result.is_ok();
        if inner.healthy.swap(ok, Ordering::Relaxed) != ok {
            if ok {
                tracing::info!("shared store (Redis) is answering again");
            } else {
                tracing::warn!(error = %result.as_ref().err().map(ToString::to_string).unwrap_or_default(),
                    "shared store (Redis) failed: falling back to in-process state");
            }
            metrics::counter!("redis_availability_changes_total", "available" => ok.to_string()).increment(1);
        }
        result
    }

    pub async fn get<T: FromRedisValue + Send + 'static>(&self, key: String) -> Result<Option<T>, KvError> {
        self.run(|mut c| async move { c.get::<_, Option<T>>(key).await }).await
    }

    /// `SET key value PX ttl`.
    pub async fn set_px(&self, key: String, value: String, ttl: Duration) -> Result<(), KvError> {
        let ms = ttl.as_millis().max(1) as u64;
        self.run(|mut c| async move { c.pset_ex::<_, _, ()>(key, value, ms).await }).await
    }

    pub async fn del(&self, key: String) -> Result<(), KvError> {
        self.run(|mut c| async move { c.del::<_, ()>(key).await }).await
    }

    pub async fn mget<T: FromRedisValue + Send + 'static>(&self, keys: Vec<String>) -> Result<Vec<Option<T>>, KvError> {
        self.run(|mut c| async move { ::redis::cmd("MGET").arg(keys).query_async::<Vec<Option<T>>>(&mut c).await })
            .await
    }

    pub async fn publish(&self, channel: String, message: String) -> Result<(), KvError> {
        self.run(|mut c| async move { c.publish::<_, _, ()>(channel, message).await }).await
    }

    /// Run a Lua script (EVALSHA, loading it on first use).
    pub async fn script<T: FromRedisValue + Send + 'static>(
        &self,
        script: &::redis::Script,
        keys: Vec<String>,
        args: Vec<String>,
    ) -> Result<T, KvError> {
        let script = script.clone();
        self.run(|mut c| async move {
            let mut invocation = script.prepare_invoke();
            for k in &keys {
                invocation.key(k);
            }
            for a in &args {
                invocation.arg(a);
            }
            invocation.invoke_async::<T>(&mut c).await
        })
        .await
    }

    /// `SET key 1 NX PX ttl`: true when this call created the key (a once-per-window latch).
    pub async fn set_nx_px(&self, key: String, ttl: Duration) -> Result<bool, KvError> {
        let ms = ttl.as_millis().max(1) as u64;
        self.run(|mut c| async move {
            let r: Option<String> =
                ::redis::cmd("SET").arg(&key).arg("1").arg("NX").arg("PX").arg(ms).query_async(&mut c).await?;
            Ok(r.is_some())
        })
        .await
    }

    /// Round-trip latency of a PING (health).
    pub async fn ping(&self) -> Result<Duration, KvError> {
        let started = std::time::Instant::now();
        self.run(|mut c| async move { ::redis::cmd("PING").query_async::<String>(&mut c).await }).await?;
        Ok(started.elapsed())
    }
}

async fn connect_until_done(state: std::sync::Weak<Inner>) {
    let Some(op_timeout) = state.upgrade().map(|i| i.op_timeout) else { return };
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(op_timeout.max(Duration::from_millis(50))))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(1));
    let mut delay = Duration::from_millis(100);
    loop {
        let Some(inner) = state.upgrade() else { return };
        let attempt = match inner.client.get_connection_manager_with_config(config.clone()).await {
            // A server that wants credentials the URL lacks (or an ACL that forbids the basics) accepts the
            // connection and refuses the first command: ask once before calling the store usable.
            Ok(mut conn) => match ::redis::cmd("PING").query_async::<String>(&mut conn).await {
                Ok(_) => Ok(conn),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        match attempt {
            Ok(conn) => {
                *inner.conn.write().await = Some(conn);
                inner.healthy.store(true, Ordering::Relaxed);
                *inner.misconfigured.lock().unwrap_or_else(|p| p.into_inner()) = None;
                tracing::info!("connected to the shared store (Redis)");
                return;
            }
            Err(e) => match tls::misconfiguration(&e) {
                Some(problem) => {
                    tracing::error!(problem = %problem, "shared store (Redis) refused as configured, retrying; serving from in-process state");
                    *inner.misconfigured.lock().unwrap_or_else(|p| p.into_inner()) = Some(problem);
                }
                None => {
                    tracing::warn!(error = %e, "shared store (Redis) unreachable, retrying; serving from in-process state")
                }
            },
        }
        drop(inner);
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}
