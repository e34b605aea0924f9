//! Build/run split: [`Application::build`] binds the listener and checks every dependency (so tests can
//! start the real server on port 0 and read the port), [`Application::run_until_stopped`] serves until the
//! shutdown future resolves, drains in-flight requests for at most the grace period, then closes the pool.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use secrecy::ExposeSecret;
use tokio::net::TcpListener;

use crate::audit::Auditor;
use crate::audit::seal::Sealer;
use crate::auth::Authenticator;
use crate::config::Config;
use crate::db::{Db, guard};

/// How long start-up waits for the first Redis connection before serving from in-process state.
const REDIS_START_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
use crate::kv::Kv;
use crate::ratelimit::RateLimits;
use crate::readiness::Readiness;
use crate::state::{App, AppState};

pub struct Application {
    listener: TcpListener,
    /// `/metrics` on a port of its own, when `METRICS_BIND_ADDR` is set.
    metrics_listener: Option<TcpListener>,
    state: AppState,
    /// Seals the audit trail in signed digests (`audit::seal`), when a key is configured.
    sealer: Sealer,
    /// Routes served besides the API's (dev mode's demo page), outside the route table and the contract.
    extra: axum::Router,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        // First: the parts below register their metric handles once, against this recorder.
        crate::metrics::handle();
        let db = Db::connect(&config.database, config.database_url())?;
        guard::check_runtime_role(&db).await?;
        let kv = match &config.redis.url {
            Some(url) => Kv::connect(
                url.expose_secret(),
                config.redis.ca_file.as_deref(),
                &config.redis.key_prefix,
                config.redis.op_timeout,
            )?,
            None => Kv::disabled(&config.redis.key_prefix),
        };
        if kv.is_configured() && !kv.wait_connected(REDIS_START_WAIT).await {
            // Down is survivable (in-process state); refused as configured is a deployment error, said at once.
            if let Some(problem) = kv.misconfiguration() {
                anyhow::bail!("refusing to start: {problem}");
            }
            tracing::warn!(
                "the shared store (Redis) is not reachable at start: token cache, revocations and rate limits \
                 run in process until it is (the connection keeps being retried)"
            );
        }
        let auth = Authenticator::from_config(&config, kv.clone())?;
        crate::auth::key_check::check_at_start(auth.gotrue(), config.auth.startup_key_check, config.auth.http_timeout)
            .await?;
        let listener = TcpListener::bind(config.bind_addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.bind_addr))?;
        let metrics_listener = match config.metrics.bind_addr {
            Some(addr) => Some(
                TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr} (metrics): {e}"))?,
            ),
            None => None,
        };
        let audit = Auditor::start(config.audit.clone(), db.clone(), kv.clone())?;
        let sealer = Sealer::start(&config.audit.seal, db.clone());
        let rate_limits = RateLimits::new(&config.rate_limit, kv.clone());
        let readiness = Readiness::new(config.health.ready_cache, db.clone(), auth.gotrue().clone(), kv.clone());
        let state = AppState(Arc::new(App {
            config,
            db,
            auth,
            kv,
            audit,
            rate_limits,
            http_metrics: Default::default(),
            readiness,
        }));
        Ok(Application { listener, metrics_listener, state, sealer, extra: axum::Router::new() })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Address of the separate metrics listener, if any.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serve `routes` too, behind the same middleware stack (used by `dev` for its demo page).
    pub fn serve_also(&mut self, routes: axum::Router) {
        self.extra = std::mem::take(&mut self.extra).merge(routes);
    }

    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// Serve until `shutdown` resolves; then stop accepting, drain, close the pool.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let Application { listener, metrics_listener, state, sealer, extra } = self;
        let limits = state.config.http.connections;
        if let Some(metrics_listener) = metrics_listener {
            let metrics = crate::router::metrics_router(state.clone());
            // Dies with the process; scrapes are short and need no draining.
            let never = std::future::pending::<()>();
            tokio::spawn(crate::http::server::serve(metrics_listener, metrics, limits, "metrics", never));
        }
        let grace = state.config.http.shutdown_grace;
        // The grace period starts with the stop signal and covers the drain and the audit flush: what the
        // audit writer has not written to the database by then goes to the spool.
        let (stopping_tx, stopping_rx) = tokio::sync::watch::channel::<Option<tokio::time::Instant>>(None);
        let signal = async move {
            shutdown.await;
            tracing::info!("shutdown requested: no new connections, draining in-flight requests");
            let _ = stopping_tx.send(Some(tokio::time::Instant::now() + grace));
        };
        let app = crate::router::app_with(state.clone(), extra);
        let serve = crate::http::server::serve(listener, app, limits, "api", signal);
        let mut deadline_rx = stopping_rx.clone();
        let deadline = async move {
            match deadline_rx.wait_for(Option::is_some).await.map(|d| *d) {
                Ok(Some(deadline)) => tokio::time::sleep_until(deadline).await,
                _ => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = serve => {}
            () = deadline => tracing::warn!(grace_ms = grace.as_millis() as u64, "drain grace period over: abandoning open requests"),
        }
        // Serving also ends when the listener fails: then the flush gets the whole grace period.
        let audit_deadline = stopping_rx.borrow().unwrap_or_else(|| tokio::time::Instant::now() + grace);
        state.audit.shutdown(audit_deadline).await;
        sealer.stop().await;
        state.db.close();
        tracing::info!("server stopped");
        Ok(())
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
