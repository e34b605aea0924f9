//! Build/run split: [`Application::build`] binds the listener and checks every dependency (so tests can
//! start the real server on port 0 and read the port), [`Application::run_until_stopped`] serves until the
//! shutdown future resolves, drains in-flight requests for at most the grace period, then closes the pool.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use std::time::Duration;

use axum::Router;
use jsonwebtoken::{Algorithm, DecodingKey};
use secrecy::ExposeSecret;
use tokio::net::TcpListener;

use crate::auth::Authenticator;
use crate::auth::cache::TokenCache;
use crate::auth::gotrue::GoTrueClient;
use crate::auth::jwks::Jwks;
use crate::auth::jwt::{KeySource, LocalVerifier};
use crate::auth::revocation::Revocations;
use crate::config::{Config, JwtKeys, OutageMode};
use crate::db::{Db, guard};
use crate::kv::Kv;
use crate::state::{App, AppState};

pub struct Application {
    listener: TcpListener,
    router: Router,
    state: AppState,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        let db = Db::connect(&config.database, config.database_url())?;
        guard::check_runtime_role(&db).await?;
        let kv = match &config.redis.url {
            Some(url) => Kv::connect(url.expose_secret(), &config.redis.key_prefix, config.redis.op_timeout)?,
            None => Kv::disabled(&config.redis.key_prefix),
        };
        let auth = build_authenticator(&config, kv.clone())?;
        let listener = TcpListener::bind(config.bind_addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.bind_addr))?;
        let state = AppState(Arc::new(App { config, db, auth, kv }));
        let router = crate::http::routes::router(state.clone());
        Ok(Application { listener, router, state })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// Serve until `shutdown` resolves; then stop accepting, drain, close the pool.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let Application { listener, router, state } = self;
        let grace = state.config.http.shutdown_grace;
        let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
        let signal = async move {
            shutdown.await;
            tracing::info!("shutdown requested: no new connections, draining in-flight requests");
            let _ = stopping_tx.send(());
        };
        let serve = axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(signal);
        let deadline = async move {
            if stopping_rx.await.is_ok() {
                tokio::time::sleep(grace).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            result = serve => result?,
            () = deadline => tracing::warn!(grace_ms = grace.as_millis() as u64, "drain grace period over: abandoning open requests"),
        }
        state.db.close();
        tracing::info!("server stopped");
        Ok(())
    }
}

/// The verification pipeline: local check, token cache (L1 + shared L2), revocations, breaker.
fn build_authenticator(config: &Config, kv: Kv) -> anyhow::Result<Authenticator> {
    let auth = &config.auth;
    // The HTTP client's own timeout is a backstop behind the breaker's per-call timeout.
    let gotrue = GoTrueClient::new(config.auth_base_url(), auth.anon_key.clone(), auth.http_timeout * 2)?;
    let (source, algorithms) = match &auth.keys {
        JwtKeys::Jwks { url, algorithms, max_age, min_refresh } => {
            let jwks = Jwks::new(gotrue.http(), url.clone(), *max_age, *min_refresh);
            (KeySource::Jwks(Arc::new(jwks)), algorithms.clone())
        }
        JwtKeys::Secret(secret) => (
            KeySource::Secret(Arc::new(DecodingKey::from_secret(secret.expose_secret().as_bytes()))),
            vec![Algorithm::HS256],
        ),
    };
    let verifier =
        LocalVerifier::new(source, algorithms, auth.audience.clone(), auth.issuer.clone(), auth.leeway_seconds);
    let stale_max = if auth.outage_mode == OutageMode::Cached { auth.stale_max } else { Duration::ZERO };
    let cache =
        Arc::new(TokenCache::new(kv.clone(), auth.cache_max_entries, auth.cache_ttl, auth.negative_ttl, stale_max));
    let revocations = Revocations::new(kv, cache.clone());
    let breaker = breaker::CircuitBreaker::new("supabase-auth", auth.breaker.clone());
    Ok(Authenticator::new(gotrue, verifier, cache, revocations, breaker, auth.verify_mode, auth.outage_mode))
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
