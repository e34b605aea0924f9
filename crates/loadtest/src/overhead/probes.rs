//! What `loadtest overhead` times: the probes (requests through the server's router, or the same database work
//! alone), the pairs it compares, and the stack the no-op probes run behind.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Result, anyhow};
use axum::body::Body;
use axum::extract::ConnectInfo;
use futures::future::{join_all, join3};
use http::Request;
use http_body_util::BodyExt;
use intellifill::AppState;
use tokio_postgres::types::Type;
use tower::ServiceExt;
use uuid::Uuid;

use crate::seed;

/// Every probe's service, boxed alike (the bare routers and the server's stack have different types), so the
/// box and its clone per request cancel out of every pair.
type Service = tower::util::BoxCloneSyncService<Request<Body>, axum::response::Response, std::convert::Infallible>;

/// A typed statement parameter, as the server sends them.
type Param<'a> = (&'a (dyn tokio_postgres::types::ToSql + Sync), Type);

const USER_ROW: &str = "SELECT id, email, role, is_active, organization_id FROM users WHERE id = current_user_id()";
const ORG_ACCESS: &str = "SELECT org_status, member_role, member_status FROM org_access($1)";
const SET_CONTEXT: &str = "SELECT set_user_context($1), set_org_context($2), set_config('statement_timeout', $3, true)";
const PAGE: &str = "SELECT id, title, coalesce(excerpt, left(content, $5)), created_by, created_at, updated_at
               FROM knowledge_sources
              WHERE organization_id = $1
                AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
              ORDER BY created_at DESC, id DESC
              LIMIT $4";

/// The server's request transaction: the user row (and the membership with `org`), and the knowledge page
/// with `list`.
async fn db_alone(client: &tokio_postgres::Client, user: Uuid, org: Option<Uuid>, list: bool) -> Result<()> {
    let timeout = "10000".to_owned();
    let org_param = org.unwrap_or_default();
    let firsts: Vec<(&str, Vec<Param<'_>>)> = if org.is_some() {
        vec![(USER_ROW, vec![]), (ORG_ACCESS, vec![(&org_param, Type::UUID)])]
    } else {
        vec![(USER_ROW, vec![])]
    };
    let (begun, context, rows) = join3(
        client.batch_execute("BEGIN"),
        client.query_typed(SET_CONTEXT, &[(&user, Type::UUID), (&org, Type::UUID), (&timeout, Type::TEXT)]),
        join_all(firsts.iter().map(|(sql, params)| client.query_typed(sql, params))),
    )
    .await;
    begun?;
    context?;
    for r in rows {
        r?;
    }
    if list {
        let (after_ts, after_id, limit, excerpt): (Option<chrono::DateTime<chrono::Utc>>, Option<Uuid>, i64, i32) =
            (None, None, 21, 280);
        client
            .query_typed(
                PAGE,
                &[
                    (&org_param, Type::UUID),
                    (&after_ts, Type::TIMESTAMPTZ),
                    (&after_id, Type::UUID),
                    (&limit, Type::INT8),
                    (&excerpt, Type::INT4),
                ],
            )
            .await?;
    }
    client.batch_execute("COMMIT").await?;
    Ok(())
}

/// One request through `router`, in a task of its own on the runtime's workers, as hyper runs a connection
/// (which also clones the service for each request).
async fn oneshot(router: &Service, path: &str, token: &str) -> Result<u16> {
    let mut request = Request::get(path).header("authorization", format!("Bearer {token}")).body(Body::empty())?;
    request.extensions_mut().insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40_000))));
    let router = router.clone();
    tokio::spawn(async move {
        let response = router.oneshot(request).await.map_err(|e| anyhow!("{e}"))?;
        let status = response.status().as_u16();
        response.into_body().collect().await.map_err(|e| anyhow!("{e}"))?;
        Ok(status)
    })
    .await?
}

/// Dedicated runtime-role connections for the `*-db` probes, one per request in flight (a transaction needs a
/// connection of its own, as in the server's pool).
struct Clients(std::sync::Mutex<Vec<tokio_postgres::Client>>);

impl Clients {
    async fn connect(url: &str, n: usize) -> Result<Clients> {
        let mut clients = Vec::with_capacity(n);
        for _ in 0..n {
            let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            clients.push(client);
        }
        Ok(Clients(std::sync::Mutex::new(clients)))
    }

    /// The database work alone on a free connection, in a task of its own too (same scheduling as
    /// [`oneshot`]). The most recently returned connection first, as the server's pool does.
    async fn run(self: &Arc<Self>, user: Uuid, org: Option<Uuid>, list: bool) -> Result<()> {
        let clients = self.clone();
        tokio::spawn(async move { clients.run_here(user, org, list).await }).await?
    }

    /// The same work in the current task (the [`Probe::OrgDbRouted`] handler is already in the task `oneshot`
    /// spawned).
    async fn run_here(&self, user: Uuid, org: Option<Uuid>, list: bool) -> Result<()> {
        let client =
            self.0.lock().expect("not poisoned").pop().ok_or_else(|| anyhow!("more in flight than connections"))?;
        let result = db_alone(&client, user, org, list).await;
        self.0.lock().expect("not poisoned").push(client);
        result
    }
}

/// One kind of timed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Probe {
    /// A bare router answering a tiny JSON: the floor of any request.
    Hello,
    /// `/health`: request id, panic catcher, timeout, body limit, per-ip limit (not audited).
    Health,
    /// The same tiny handler behind every layer an `/api` route has (per-ip limit, audit, auth, per-user
    /// limit, route note): the middleware stack alone.
    Noop,
    /// The same behind the stack at an org-scoped path, with the org-context extractor (`OrgTx`): what the
    /// overhead target is about (rate limit + audit + auth cache hit + org context).
    OrgNoop,
    /// The org no-op handler alone: the caller put in by a bare layer, no other layer.
    OrgHandler,
    /// The org no-op's transaction alone (context, user row, membership, commit).
    OrgDb,
    /// The same transaction (on the dedicated connections, not the pool) in a handler on a bare router at the
    /// org no-op's path, answering the same JSON: what any axum route costs around that transaction (routing,
    /// path parameters, the request and response objects, the harness reading the body), with no middleware,
    /// no extractor and no pool.
    OrgDbRouted,
    Session,
    /// The session handler alone: the caller (as auth would find it) put in by a bare layer, no other layer.
    SessionHandler,
    SessionDb,
    /// The session's transaction through the server's pool (`Db::begin` / `Tx::commit`), no HTTP.
    SessionPool,
    List,
    ListDb,
    /// `GET /api/organizations/{orgId}/members` through the server's router.
    Members,
}

impl Probe {
    pub(super) const ALL: [Probe; 14] = [
        Probe::Hello,
        Probe::Health,
        Probe::Noop,
        Probe::OrgNoop,
        Probe::OrgHandler,
        Probe::OrgDb,
        Probe::OrgDbRouted,
        Probe::Session,
        Probe::SessionHandler,
        Probe::SessionDb,
        Probe::SessionPool,
        Probe::List,
        Probe::ListDb,
        Probe::Members,
    ];

    /// The probe's command-line name: its variant in kebab case (`org-noop`).
    fn key(self) -> String {
        let mut key = String::new();
        for (i, c) in format!("{self:?}").chars().enumerate() {
            if c.is_ascii_uppercase() && i > 0 {
                key.push('-');
            }
            key.push(c.to_ascii_lowercase());
        }
        key
    }

    pub(super) fn parse(s: &str) -> Result<Probe, String> {
        Probe::ALL.into_iter().find(|p| p.key() == s).ok_or_else(|| {
            let keys: Vec<String> = Probe::ALL.iter().map(|p| p.key()).collect();
            format!("unknown probe {s:?}; one of {}", keys.join(", "))
        })
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Probe::Hello => "hello-world router (floor)",
            Probe::Health => "GET /health",
            Probe::Noop => "no-op handler behind the /api stack",
            Probe::OrgNoop => "org-scoped no-op (OrgTx) behind the stack",
            Probe::OrgDb => "org no-op transaction alone",
            Probe::OrgDbRouted => "org no-op transaction on a bare router",
            Probe::Session => "GET /api/auth/session",
            Probe::SessionHandler => "session handler alone (no middleware)",
            Probe::OrgHandler => "org no-op handler alone (no middleware)",
            Probe::SessionDb => "session transaction alone",
            Probe::SessionPool => "session transaction through the server's pool",
            Probe::List => "GET /api/organizations/{orgId}/knowledge",
            Probe::ListDb => "list transaction alone",
            Probe::Members => "GET /api/organizations/{orgId}/members",
        }
    }
}

/// What a probe needs.
pub(super) struct Target<'a> {
    hello: Service,
    stacked: Service,
    handler: Service,
    router: Service,
    routed_db: Service,
    clients: Arc<Clients>,
    db: intellifill::testing::Db,
    user: &'a seed::SeedUser,
    list_path: String,
    members_path: String,
    org_noop_path: String,
}

impl<'a> Target<'a> {
    /// The probes' routers and connection for `user` on the server whose state is `state`.
    pub(super) async fn build(
        state: &AppState,
        runtime_url: &str,
        user: &'a seed::SeedUser,
        dropped: &[String],
        dummies: usize,
        concurrency: usize,
    ) -> Result<Target<'a>> {
        let state = state.clone();
        let caller = state.auth.verify(&user.token).await.map_err(|e| anyhow!("{e}"))?;
        let clients = Arc::new(Clients::connect(runtime_url, concurrency.max(1)).await?);
        let api = axum::Router::new()
            .route("/api/me", tiny_json())
            .route("/api/organizations/{orgId}", axum::routing::get(org_noop));
        Ok(Target {
            hello: Service::new(axum::Router::new().route("/", tiny_json()).with_state(state.clone())),
            stacked: (0..dummies).fold(Service::new(stacked(api, &state, &caller, dropped)), |inner, _| {
                use tower::Layer;
                let pass = |request: axum::extract::Request, next: axum::middleware::Next| next.run(request);
                Service::new(axum::middleware::from_fn(pass).layer(inner))
            }),
            router: Service::new(intellifill::testing::app(state.clone())),
            handler: Service::new({
                let caller = caller.clone();
                let routes = axum::Router::new()
                    .route("/api/auth/session", axum::routing::get(intellifill::testing::session_handler))
                    .route("/api/organizations/{orgId}", axum::routing::get(org_noop));
                // The route's facts and path parameters, which the org extractor reads.
                intellifill::bench::with_route_facts(routes, &state)
                    .layer(axum::middleware::from_fn(
                        move |mut request: axum::extract::Request, next: axum::middleware::Next| {
                            request.extensions_mut().insert(caller.clone());
                            next.run(request)
                        },
                    ))
                    .with_state(state.clone())
            }),
            routed_db: Service::new(routed_db(clients.clone(), user)),
            clients,
            db: state.db.clone(),
            user,
            list_path: format!("/api/organizations/{}/knowledge", user.org),
            members_path: format!("/api/organizations/{}/members", user.org),
            org_noop_path: format!("/api/organizations/{}", user.org),
        })
    }
}

impl Target<'_> {
    pub(super) async fn run(&self, probe: Probe) -> Result<()> {
        let token = &self.user.token;
        let status = match probe {
            Probe::Hello => oneshot(&self.hello, "/", token).await?,
            Probe::Health => oneshot(&self.router, "/health", token).await?,
            Probe::Noop => oneshot(&self.stacked, "/api/me", token).await?,
            Probe::OrgNoop => oneshot(&self.stacked, &self.org_noop_path, token).await?,
            Probe::OrgDb => return self.clients.run(self.user.id, Some(self.user.org), false).await,
            Probe::OrgDbRouted => oneshot(&self.routed_db, &self.org_noop_path, token).await?,
            Probe::Session => oneshot(&self.router, "/api/auth/session", token).await?,
            Probe::SessionHandler => oneshot(&self.handler, "/api/auth/session", token).await?,
            Probe::OrgHandler => oneshot(&self.handler, &self.org_noop_path, token).await?,
            Probe::List => oneshot(&self.router, &self.list_path, token).await?,
            Probe::Members => oneshot(&self.router, &self.members_path, token).await?,
            Probe::SessionDb => return self.clients.run(self.user.id, None, false).await,
            Probe::ListDb => return self.clients.run(self.user.id, Some(self.user.org), true).await,
            Probe::SessionPool => {
                let (db, user) = (self.db.clone(), self.user.id);
                return tokio::spawn(async move {
                    let ctx = intellifill::testing::RlsContext { user_id: user, org_id: None };
                    let (tx, _, _) = db.begin(ctx, None).await.map_err(|e| anyhow!("{e}"))?;
                    tx.commit().await.map_err(|e| anyhow!("{e}"))
                })
                .await?;
            }
        };
        anyhow::ensure!(status == 200, "{} answered {status}", probe.name());
        Ok(())
    }
}

/// One compared pair: what is measured, its `--pair` key, the probe with it and the probe without it.
pub(super) struct Pair {
    pub what: &'static str,
    pub key: &'static str,
    pub with: Probe,
    pub without: Probe,
}

const fn pair(what: &'static str, key: &'static str, with: Probe, without: Probe) -> Pair {
    Pair { what, key, with, without }
}

pub(super) const PAIRS: [Pair; 11] = [
    pair(
        "whole stack incl. org context (org-scoped no-op vs its transaction alone)",
        "whole",
        Probe::OrgNoop,
        Probe::OrgDb,
    ),
    pair(
        "whole stack incl. org context over a bare route (org-scoped no-op vs its transaction on a bare router)",
        "whole-routed",
        Probe::OrgNoop,
        Probe::OrgDbRouted,
    ),
    pair(
        "a bare route around the transaction (its transaction on a bare router vs alone)",
        "route",
        Probe::OrgDbRouted,
        Probe::OrgDb,
    ),
    pair(
        "middleware in place (org-scoped no-op vs the org handler alone)",
        "layers-in-place",
        Probe::OrgNoop,
        Probe::OrgHandler,
    ),
    pair("org no-op handler alone vs its transaction alone", "org-context", Probe::OrgHandler, Probe::OrgDb),
    pair(
        "org context over a bare route (org no-op handler alone vs its transaction on a bare router)",
        "org-context-routed",
        Probe::OrgHandler,
        Probe::OrgDbRouted,
    ),
    pair("middleware stack alone (no-op /api handler vs bare router)", "stack", Probe::Noop, Probe::Hello),
    pair(
        "the server's pool and Tx vs a plain connection (session transaction)",
        "pool",
        Probe::SessionPool,
        Probe::SessionDb,
    ),
    pair("session handler alone vs its transaction alone", "session-handler", Probe::SessionHandler, Probe::SessionDb),
    pair("GET /api/auth/session vs its transaction alone", "session", Probe::Session, Probe::SessionDb),
    pair("GET /api/organizations/{orgId}/knowledge vs its transaction alone", "list", Probe::List, Probe::ListDb),
];

/// `--pair`: a pair's key.
pub(super) fn parse_pair(s: &str) -> Result<String, String> {
    match PAIRS.iter().find(|p| p.key == s) {
        Some(p) => Ok(p.key.to_owned()),
        None => {
            Err(format!("unknown pair {s:?}; one of {}", PAIRS.iter().map(|p| p.key).collect::<Vec<_>>().join(", ")))
        }
    }
}

/// A handler that needs the organization context and does nothing with it.
pub(super) async fn org_noop(
    ctx: intellifill::testing::OrgTx,
) -> Result<axum::Json<serde_json::Value>, intellifill::AppError> {
    ctx.tx.commit().await?;
    Ok(axum::Json(serde_json::json!({"status": "ok"})))
}

/// [`Probe::OrgDbRouted`]'s router: the org no-op's path and answer, the transaction on `clients`.
fn routed_db(clients: Arc<Clients>, user: &seed::SeedUser) -> axum::Router {
    let (user, org) = (user.id, user.org);
    axum::Router::new().route(
        "/api/organizations/{orgId}",
        axum::routing::get(move || {
            let clients = clients.clone();
            async move {
                match clients.run_here(user, Some(org), false).await {
                    Ok(()) => Ok(axum::Json(serde_json::json!({"status": "ok"}))),
                    Err(e) => Err((http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
                }
            }
        }),
    )
}

/// What `--drop-layer` accepts: the server's optional outer layers (`http::middleware::Layer`) and the `/api`
/// route layer.
pub(super) const LAYERS: [&str; 3] = [intellifill::bench::LAYERS[0], intellifill::bench::LAYERS[1], ROUTE_STEPS];
const ROUTE_STEPS: &str = "route-steps";

/// The no-op routes behind the server's stack (`http::middleware::stack_with` and `router::with_route_steps`,
/// the functions the server is built with), without the layers named in `dropped`.
pub(super) fn stacked(
    api: axum::Router<AppState>,
    state: &AppState,
    caller: &intellifill::testing::AuthUser,
    dropped: &[String],
) -> impl intellifill::testing::Served + use<> {
    let keep = |layer: &str| !dropped.iter().any(|d| d == layer);
    let api = if keep(ROUTE_STEPS) {
        intellifill::bench::with_route_steps(api, state)
    } else {
        let caller = caller.clone();
        api.route_layer(axum::middleware::from_fn(
            move |mut request: axum::extract::Request, next: axum::middleware::Next| {
                request.extensions_mut().insert(caller.clone());
                next.run(request)
            },
        ))
    };
    let routes = axum::Router::new().merge(api).with_state(state.clone());
    intellifill::bench::stack_with(routes, state, &|layer| keep(layer))
}

pub(super) fn tiny_json() -> axum::routing::MethodRouter<intellifill::AppState> {
    axum::routing::get(|| async { axum::Json(serde_json::json!({"status": "ok"})) })
}
