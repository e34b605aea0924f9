//! The readiness verdict behind `/health/ready`, probed at most once per `HEALTH_READY_CACHE_MS`.
//!
//! A probe is a pooled database round trip, the auth service's `GET /health` and a Redis `PING`, run
//! together. Load balancers, orchestrators and anyone on the internet may call `/health/ready` as often as
//! they like; without a bound every call would be one more request to the auth service and one more pooled
//! connection, so the readiness endpoint itself could load the dependencies it watches. Hence:
//!
//! - a verdict younger than the interval (counted from the end of its probe) is answered as it is;
//! - otherwise one probe is started and every caller arriving while it runs waits for that same probe;
//! - the probe runs as a task of its own, so a caller that goes away (a closed connection) does not cancel it
//!   and cannot make the next caller start another: at most one probe is in flight, and probes start at
//!   least one interval apart.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

use crate::auth::gotrue::GoTrueClient;
use crate::db::Db;
use crate::kv::Kv;

/// What one probe found; a failure holds its message.
#[derive(Debug)]
pub struct Verdict {
    pub database: Result<(), String>,
    pub auth: Result<(), String>,
    /// `None` when no shared store is configured. Reported, never required (see `health`).
    pub redis: Option<Result<(), String>>,
    /// When the probe ended.
    pub checked_at: Instant,
}

impl Verdict {
    /// Ready: the database and the auth service answered.
    pub fn is_ready(&self) -> bool {
        self.database.is_ok() && self.auth.is_ok()
    }

    /// The verdict of a probe that did not finish (it panicked, or the runtime is shutting down).
    fn unfinished(why: &str) -> Self {
        let failed = || Err(format!("the readiness probe did not finish: {why}"));
        Verdict { database: failed(), auth: failed(), redis: None, checked_at: Instant::now() }
    }
}

type Probe = Shared<BoxFuture<'static, Arc<Verdict>>>;

enum Slot {
    Empty,
    Done(Arc<Verdict>),
    Running(Probe),
}

/// The dependencies a probe touches (cheap clones of the app's handles).
#[derive(Clone)]
struct Dependencies {
    db: Db,
    gotrue: GoTrueClient,
    kv: Kv,
}

/// The shared, recent readiness verdict of this process.
pub struct Readiness {
    interval: Duration,
    dependencies: Dependencies,
    slot: Arc<Mutex<Slot>>,
}

impl Readiness {
    pub fn new(interval: Duration, db: Db, gotrue: GoTrueClient, kv: Kv) -> Self {
        Readiness { interval, dependencies: Dependencies { db, gotrue, kv }, slot: Arc::new(Mutex::new(Slot::Empty)) }
    }

    /// A verdict at most one interval old: the last one, or the one of the probe running now, or of a new one.
    pub async fn verdict(&self) -> Arc<Verdict> {
        let probe = {
            let mut slot = self.slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            match &*slot {
                Slot::Done(verdict) if verdict.checked_at.elapsed() < self.interval => return verdict.clone(),
                Slot::Running(probe) => probe.clone(),
                Slot::Done(_) | Slot::Empty => {
                    let probe = self.start();
                    *slot = Slot::Running(probe.clone());
                    probe
                }
            }
        };
        probe.await
    }

    /// Spawn one probe; it records its verdict itself, whether or not anyone still waits for it.
    fn start(&self) -> Probe {
        let dependencies = self.dependencies.clone();
        let record = Arc::downgrade(&self.slot);
        let task = tokio::spawn(async move {
            let verdict = Arc::new(dependencies.probe().await);
            store(&record, Slot::Done(verdict.clone()));
            verdict
        });
        let reset = Arc::downgrade(&self.slot);
        async move {
            task.await.unwrap_or_else(|e| {
                // Nothing was recorded: the next caller starts a new probe.
                store(&reset, Slot::Empty);
                Arc::new(Verdict::unfinished(&e.to_string()))
            })
        }
        .boxed()
        .shared()
    }
}

fn store(slot: &Weak<Mutex<Slot>>, value: Slot) {
    if let Some(slot) = slot.upgrade() {
        *slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = value;
    }
}

impl Dependencies {
    async fn probe(&self) -> Verdict {
        let redis = async {
            if self.kv.is_configured() {
                Some(self.kv.ping().await.map(|_| ()).map_err(|e| e.to_string()))
            } else {
                None
            }
        };
        let (database, auth, redis) = tokio::join!(
            async { self.db.ping().await.map_err(|e| e.to_string()) },
            async { self.gotrue.health().await.map_err(|e| e.to_string()) },
            redis,
        );
        Verdict { database, auth, redis, checked_at: Instant::now() }
    }
}
