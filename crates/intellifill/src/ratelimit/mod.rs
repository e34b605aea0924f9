//! Rate limits: policies per route group, one key function, a shared store with an in-process fallback.
//!
//! | policy | scope | applies to | where |
//! | --- | --- | --- | --- |
//! | `ip` | client ip | every request | [`per_ip`], before audit and auth (cheap floods never reach them) |
//! | `user` | user | every authenticated request | [`per_caller`], after auth |
//! | `auth` | user + ip | routes of class `auth` (session, logout) | [`per_caller`] |
//! | `org` | organization | routes of class `org-read` / `org-write` (searches, writes) | [`RateLimits::charge_org`], once the membership check has passed, so outsiders cannot spend an organization's budget |
//!
//! Which policies a route is charged to is its declared rate-limit class (`x-rate-limit`, see
//! `http::route`); refused attempts on an organization count against the caller's user and ip policies only.
//! Every answer carries the IETF `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` and
//! `RateLimit-Policy` headers of the tightest policy that applied; a refusal is 429 `RATE_LIMITED` with
//! `Retry-After`. Counts live in Redis (one GCRA script, server clock) so limits hold in total across
//! instances, taken in small leases so a busy key does not cost a round trip per request; see [`store`]
//! for both and for the fallback.

pub(crate) mod key;
pub(crate) mod store;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};

pub(crate) use key::{KeyParts, Scope};
use store::{Decision, Store};

use crate::config::RateLimitConfig;
use crate::error::{AppError, ErrorCode};
use crate::flow::Flow;
use crate::kv::Kv;

/// Which rate-limit policies a request to the route is charged to (the per-ip policy charges every request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateClass {
    /// The per-ip policy only (public routes).
    Ip,
    /// The caller's user policy.
    User,
    /// The auth-endpoint policy (user + ip) and the user policy.
    Auth,
    /// A costly read of an organization (search): the user policy, and the organization's policy once the
    /// caller's membership is confirmed.
    OrgRead,
    /// A write in an organization: the user policy, and the organization's policy once the caller's
    /// membership is confirmed.
    OrgWrite,
}

impl RateClass {
    pub(crate) fn parse(s: &str) -> Option<RateClass> {
        Some(match s {
            "ip" => RateClass::Ip,
            "user" => RateClass::User,
            "auth" => RateClass::Auth,
            "org-read" => RateClass::OrgRead,
            "org-write" => RateClass::OrgWrite,
            _ => return None,
        })
    }

    /// Whether the organization's policy is charged (after the membership check).
    pub fn charges_org(self) -> bool {
        matches!(self, RateClass::OrgRead | RateClass::OrgWrite)
    }
}

/// One named limit.
pub(crate) struct Policy {
    pub(crate) name: &'static str,
    pub(crate) scope: Scope,
    /// Its `RateLimit-Policy` value (e.g. `300;w=60`), its `RateLimit-Limit` value and its decision counters:
    /// built once, not per request.
    header: HeaderValue,
    limit_header: HeaderValue,
    allowed: metrics::Counter,
    limited: metrics::Counter,
    store: Store,
}

impl Policy {
    fn new(kv: &Kv, name: &'static str, scope: Scope, per_minute: u32) -> Option<Policy> {
        let limit = NonZeroU32::new(per_minute)?;
        let window = Duration::from_secs(60);
        let decisions = |outcome: &'static str| metrics::counter!("rate_limit_decisions_total", "policy" => name, "decision" => outcome);
        Some(Policy {
            name,
            scope,
            header: HeaderValue::from_str(&format!("{};w={}", limit, window.as_secs()))
                .expect("digits and ';w=' are a valid header value"),
            limit_header: HeaderValue::from(limit.get()),
            allowed: decisions("allowed"),
            limited: decisions("limited"),
            store: Store::new(kv.clone(), limit, window),
        })
    }

    fn key(&self, parts: &KeyParts) -> String {
        let mut key = String::with_capacity(64);
        key.push_str(self.name);
        key.push(':');
        key::write_key(&mut key, parts, self.scope);
        key
    }

    fn counted(&self, decision: Decision) -> Decision {
        if decision.allowed { &self.allowed } else { &self.limited }.increment(1);
        decision
    }

    /// The decision for `parts` when this instance can take it without waiting ([`Store::check_now`]).
    fn check_now(&self, parts: &KeyParts) -> Option<Decision> {
        self.store.check_now(&self.key(parts)).map(|d| self.counted(d))
    }

    /// The decision for `parts`, waiting for Redis if the lease is spent.
    async fn check(&self, parts: &KeyParts) -> Decision {
        let key = self.key(parts);
        let decision = match self.store.check_now(&key) {
            Some(d) => d,
            // Boxed: the Redis call's future is over a kilobyte, carried only where it runs.
            None => Box::pin(self.store.check(key)).await,
        };
        self.counted(decision)
    }
}

/// The policies one step charges, in order (by value, so the step's future can keep them).
type Policies<'p> = [Option<&'p Policy>; 2];

/// A decision and the policy that made it.
type Decided<'p> = (Decision, &'p Policy);

/// How far checking a step's policies got without waiting.
enum Checked<'p> {
    /// Every policy decided: the first refusal, else the tightest allowance (`None`: no policy applies).
    Done(Option<Decided<'p>>),
    /// Policy `next` must wait for Redis; `tightest` is the allowance of the policies before it.
    Wait { next: usize, tightest: Option<Decided<'p>> },
}

/// `tightest` after policy `p` decided `d`: `Err` is a refusal, which ends the check.
fn fold<'p>(tightest: Option<Decided<'p>>, d: Decision, p: &'p Policy) -> Result<Option<Decided<'p>>, Decided<'p>> {
    if !d.allowed {
        return Err((d, p));
    }
    Ok(if tightest.as_ref().is_none_or(|(t, _)| d.remaining < t.remaining) { Some((d, p)) } else { tightest })
}

/// Every policy of the process.
pub struct RateLimits {
    enabled: bool,
    ip_refusal_delay: Duration,
    decisions: std::sync::atomic::AtomicU64,
    ip: Option<Policy>,
    user: Option<Policy>,
    org: Option<Policy>,
    auth: Option<Policy>,
}

impl RateLimits {
    pub fn new(config: &RateLimitConfig, kv: Kv) -> Arc<RateLimits> {
        let limits = Arc::new(RateLimits {
            ip: Policy::new(&kv, "ip", Scope::Ip, config.ip_per_minute),
            user: Policy::new(&kv, "user", Scope::User, config.user_per_minute),
            org: Policy::new(&kv, "org", Scope::Org, config.org_per_minute),
            auth: Policy::new(&kv, "auth", Scope::UserIp, config.auth_per_minute),
            enabled: config.enabled,
            ip_refusal_delay: config.ip_refusal_delay,
            decisions: Default::default(),
        });
        let weak = Arc::downgrade(&limits);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                let Some(limits) = weak.upgrade() else { return };
                for p in limits.policies() {
                    p.store.shrink();
                }
            }
        });
        limits
    }

    fn policies(&self) -> impl Iterator<Item = &Policy> {
        [&self.ip, &self.user, &self.org, &self.auth].into_iter().flatten()
    }

    /// `redis` or `memory` (health).
    pub fn store_name(&self) -> &'static str {
        if self.policies().any(|p| p.store.is_local()) { "memory" } else { "redis" }
    }

    /// Switches to the in-process fallback since start (health).
    pub fn fallbacks(&self) -> u64 {
        self.policies().map(|p| p.store.fallbacks.load(std::sync::atomic::Ordering::Relaxed)).sum()
    }

    /// Decisions taken since start (every policy).
    pub fn decisions(&self) -> u64 {
        self.decisions.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Round trips to Redis since start: far fewer than [`Self::decisions`] for busy keys (leases).
    pub fn round_trips(&self) -> u64 {
        self.policies().map(|p| p.store.round_trips.load(std::sync::atomic::Ordering::Relaxed)).sum()
    }

    /// Check `policies` in order as far as this instance can without waiting; the first refusal wins, else
    /// the tightest allowance is reported, each with the policy that made it.
    fn check_now<'p>(&self, policies: &Policies<'p>, parts: &KeyParts) -> Checked<'p> {
        let mut tightest = None;
        for (i, p) in policies.iter().enumerate() {
            let Some(p) = p else { continue };
            let Some(d) = p.check_now(parts) else { return Checked::Wait { next: i, tightest } };
            self.decisions.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            match fold(tightest, d, p) {
                Ok(t) => tightest = t,
                Err(refused) => return Checked::Done(Some(refused)),
            }
        }
        Checked::Done(tightest)
    }

    /// The rest of [`Self::check_now`]'s check, from policy `next` on, waiting where a policy must.
    async fn check_rest<'p>(
        &self,
        policies: &Policies<'p>,
        parts: &KeyParts,
        next: usize,
        mut tightest: Option<Decided<'p>>,
    ) -> Option<Decided<'p>> {
        for p in policies[next..].iter().flatten() {
            self.decisions.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            match fold(tightest, p.check(parts).await, p) {
                Ok(t) => tightest = t,
                Err(refused) => return Some(refused),
            }
        }
        tightest
    }
}

// Header names as constants: inserting under a `&str` builds (and, for a non-standard name, allocates) a
// `HeaderName` on every call.
const LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
const POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// Every rate-limit header a response may carry (exposed to browsers by the CORS layer).
pub(crate) const RATE_LIMIT_HEADERS: [HeaderName; 4] = [LIMIT, REMAINING, RESET, POLICY];

/// Room made in an answer's headers when the limits' are set: theirs, `Retry-After`, and what the outer layers
/// add on the way out (the request id, the security headers, CORS), so the map grows once, not twice
/// (docs/PERFORMANCE.md, "Instructions per request").
const ANSWER_HEADERS: usize = 16;

fn set_headers(headers: &mut HeaderMap, d: &Decision, policy: &Policy) {
    headers.reserve(ANSWER_HEADERS);
    headers.insert(LIMIT, policy.limit_header.clone());
    headers.insert(REMAINING, HeaderValue::from(d.remaining));
    headers.insert(RESET, HeaderValue::from(d.reset_secs));
    headers.insert(POLICY, policy.header.clone());
    if !d.allowed {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(d.retry_after_secs));
    }
}

fn refusal(d: &Decision, policy: &Policy) -> Response {
    let mut response =
        AppError::new(ErrorCode::RateLimited, format!("too many requests ({} limit), retry later", policy.name))
            .with_retry_after(d.retry_after_secs)
            .into_response();
    set_headers(response.headers_mut(), d, policy);
    response
}

/// The organization policy's allowance given inside [`per_caller`] ([`RateLimits::charge_org`]), for the
/// response's headers.
#[derive(Debug, Clone, Default)]
pub struct Reported(Arc<std::sync::Mutex<Option<Decision>>>);

impl Reported {
    fn take(&self) -> Option<Decision> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// `policy`'s headers on `response`, unless an inner, tighter limiter's are already there.
fn report_if_tighter(response: &mut Response, d: &Decision, policy: &Policy) {
    let current = response.headers().get(REMAINING).and_then(|v| v.to_str().ok()?.parse::<u32>().ok());
    if current.is_none_or(|r| d.remaining < r) {
        set_headers(response.headers_mut(), d, policy);
    }
}

/// Check `policies`; refused: 429, sent after `hold` (at most its `Retry-After`); allowed: `inner`, with the
/// tightest policy's headers on its response. Decided without waiting (the usual case), the rest runs as
/// it is; only a wait for Redis or a held refusal is a future of its own (`crate::flow`).
fn apply<'a, F>(
    limits: &'a RateLimits,
    policies: Policies<'a>,
    parts: KeyParts,
    hold: Duration,
    request: Request,
    inner: impl FnOnce(Request) -> F + Send + 'a,
) -> Flow<'a, F, impl FnOnce(Response) -> Response + Send + 'a>
where
    F: Future<Output = Response> + Send + 'a,
{
    let decided = match limits.check_now(&policies, &parts) {
        Checked::Done(decided) => decided,
        Checked::Wait { next, tightest } => {
            return Flow::later(async move {
                match limits.check_rest(&policies, &parts, next, tightest).await {
                    Some((d, policy)) if !d.allowed => held_refusal(d, policy, hold).await,
                    Some((d, policy)) => reported(inner(request).await, d, policy),
                    None => inner(request).await,
                }
            });
        }
    };
    match decided {
        None => Flow::pass(inner(request)),
        Some((d, policy)) if d.allowed => Flow::then(inner(request), move |response| reported(response, d, policy)),
        Some((d, policy)) if hold.is_zero() => Flow::now(refusal(&d, policy)),
        Some((d, policy)) => Flow::later(held_refusal(d, policy, hold)),
    }
}

/// `response` with `policy`'s headers, unless an inner, tighter limiter's are already there.
fn reported(mut response: Response, d: Decision, policy: &Policy) -> Response {
    report_if_tighter(&mut response, &d, policy);
    response
}

/// The refusal, sent after `hold` (at most its `Retry-After`).
async fn held_refusal(d: Decision, policy: &Policy, hold: Duration) -> Response {
    let hold = hold.min(Duration::from_secs(d.retry_after_secs));
    if !hold.is_zero() {
        tokio::time::sleep(hold).await;
    }
    refusal(&d, policy)
}

/// The per-ip limit on every request, then `inner` (a step of the outer stack, before audit and auth:
/// see `http::middleware`). A refusal is held for `RATE_LIMIT_IP_REFUSAL_DELAY_MS` before it is sent, its
/// body unread: a client over its limit waits on each connection instead of cycling it, so a flood costs
/// the server one request per connection per hold rather than its whole TCP rate (docs/PERFORMANCE.md,
/// "Body flood").
pub(crate) fn per_ip<'a, F>(
    limits: &'a RateLimits,
    ip: Option<std::net::IpAddr>,
    request: Request,
    inner: impl FnOnce(Request) -> F + Send + 'a,
) -> Flow<'a, F, impl FnOnce(Response) -> Response + Send + 'a>
where
    F: Future<Output = Response> + Send + 'a,
{
    let policy = limits.ip.as_ref().filter(|_| limits.enabled);
    let parts = KeyParts { ip, ..KeyParts::default() };
    apply(limits, [policy, None], parts, limits.ip_refusal_delay, request, inner)
}

/// The user and auth-endpoint limits of a request of `class` by the caller in `parts`, then `next` (a step
/// of the route steps, after auth, so the user is known). The organization's limit is charged later, by the
/// org extractor ([`RateLimits::charge_org`]); its allowance, when tighter, is reported on the response.
pub(crate) fn per_caller<'a, F>(
    limits: &'a RateLimits,
    class: RateClass,
    parts: KeyParts,
    mut request: Request,
    next: impl FnOnce(Request) -> F + Send + 'a,
) -> Flow<'a, impl Future<Output = Response> + Send + 'a, impl FnOnce(Response) -> Response + Send + 'a>
where
    F: Future<Output = Response> + Send + 'a,
{
    let charged = limits.enabled && class != RateClass::Ip;
    let auth = limits.auth.as_ref().filter(|_| charged && class == RateClass::Auth);
    let user = limits.user.as_ref().filter(|_| charged);
    let org = (charged && class.charges_org()).then(Reported::default);
    if let Some(r) = &org {
        request.extensions_mut().insert(r.clone());
    }
    let admitted = apply(limits, [auth, user], parts, Duration::ZERO, request, next);
    match (org, limits.org.as_ref()) {
        (Some(r), Some(policy)) => Flow::then(admitted, move |response| match r.take() {
            Some(d) => reported(response, d, policy),
            None => response,
        }),
        _ => Flow::pass(admitted),
    }
}

impl RateLimits {
    /// Charge the organization's policy for a request whose caller's membership has been confirmed: `Err`
    /// is the 429 to answer. An allowance is reported through `reported` (from [`per_caller`]).
    pub async fn charge_org(&self, parts: KeyParts, reported: Option<&Reported>) -> Result<(), Response> {
        let Some(policy) = self.org.as_ref().filter(|_| self.enabled) else {
            return Ok(());
        };
        self.decisions.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let d = policy.check(&parts).await;
        if !d.allowed {
            return Err(refusal(&d, policy));
        }
        if let Some(r) = reported {
            *r.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(d);
        }
        Ok(())
    }
}
