//! Seeding through the real API and emulator: users in the emulator (`users` rows through the owner
//! connection, as an operator's provisioning would), organizations through `POST /api/organizations`,
//! members, a few knowledge sources per organization through the API; tokens minted by signing in, and the
//! token cache warmed with one request per user.

use std::net::SocketAddr;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http::{HeaderValue, Method};
use uuid::Uuid;

use crate::client::{Conn, bearer};
use crate::stack::Stack;

pub(crate) const PASSWORD: &str = "load-password-123";

/// Words the seeded and created knowledge is made of (searches pick from them).
pub(crate) const WORDS: &[&str] = &[
    "invoice",
    "contract",
    "onboarding",
    "payroll",
    "vendor",
    "compliance",
    "receipt",
    "policy",
    "renewal",
    "audit",
    "tax",
    "shipping",
    "warranty",
    "refund",
    "budget",
    "forecast",
];

#[derive(Debug, Clone)]
pub(crate) struct SeedUser {
    pub id: Uuid,
    pub email: String,
    pub org: Uuid,
    pub token: String,
    pub auth: HeaderValue,
}

#[derive(Debug, Clone)]
pub(crate) struct Seeded {
    pub users: Vec<SeedUser>,
    /// A platform ADMIN (reads `/health/detailed`).
    pub admin: SeedUser,
}

/// Some text made of [`WORDS`].
pub(crate) fn content(seed: usize, words: usize) -> String {
    (0..words).map(|i| WORDS[(seed * 7 + i * 3) % WORDS.len()]).collect::<Vec<_>>().join(" ")
}

async fn expect(
    conn: &mut Conn,
    method: Method,
    path: &str,
    auth: &HeaderValue,
    body: serde_json::Value,
) -> Result<serde_json::Value> {
    let resp = conn.send(method.clone(), path, Some(auth), Some(Bytes::from(body.to_string()))).await?;
    if !(200..300).contains(&resp.status) {
        bail!("{method} {path}: {} {}", resp.status, String::from_utf8_lossy(&resp.body));
    }
    Ok(resp.json())
}

/// A user in the emulator with a `users` row; returns it signed in.
pub(crate) async fn user(stack: &Stack, owner: &tokio_postgres::Client, email: &str) -> Result<SeedUser> {
    let created = stack.emulator.create_user(email, PASSWORD)?;
    owner
        .execute("INSERT INTO users (id, email) VALUES ($1, $2)", &[&created.id, &email])
        .await
        .context("users row")?;
    let session = stack.emulator.sign_in(email, PASSWORD)?;
    Ok(SeedUser {
        id: created.id,
        email: email.to_owned(),
        org: Uuid::nil(),
        auth: bearer(&session.access_token),
        token: session.access_token,
    })
}

/// `orgs` organizations of `users_per_org` users each (the first is OWNER, the others MEMBER), `knowledge`
/// sources per organization, and a platform ADMIN.
pub(crate) async fn seed(
    stack: &Stack,
    addr: SocketAddr,
    orgs: usize,
    users_per_org: usize,
    knowledge: usize,
) -> Result<Seeded> {
    let owner = stack.owner().await?;
    let mut conn = Conn::new(addr);
    let run = Uuid::new_v4().simple().to_string();
    let run = &run[..8];
    let mut users = Vec::with_capacity(orgs * users_per_org);
    for o in 0..orgs {
        let mut first = user(stack, &owner, &format!("owner.o{o}.{run}@load.test")).await?;
        let body = serde_json::json!({ "name": format!("Load org {o} {run}") });
        let created = expect(&mut conn, Method::POST, "/api/organizations", &first.auth, body).await?;
        let org: Uuid = created["id"].as_str().and_then(|s| s.parse().ok()).context("organization id")?;
        first.org = org;
        users.push(first.clone());
        for u in 1..users_per_org {
            let mut member = user(stack, &owner, &format!("u{u}.o{o}.{run}@load.test")).await?;
            owner
                .execute(
                    "INSERT INTO organization_memberships (user_id, organization_id, role, status, joined_at)
                     VALUES ($1, $2, 'MEMBER', 'ACTIVE', now())",
                    &[&member.id, &org],
                )
                .await
                .context("membership")?;
            owner.execute("UPDATE users SET organization_id = $2 WHERE id = $1", &[&member.id, &org]).await?;
            member.org = org;
            users.push(member);
        }
        for k in 0..knowledge {
            let body = serde_json::json!({ "title": format!("Seeded {k}"), "content": content(o * 31 + k, 40) });
            expect(&mut conn, Method::POST, &format!("/api/organizations/{org}/knowledge"), &first.auth, body).await?;
        }
    }
    // Statistics as autovacuum keeps them on a production database. A never-analyzed table of a few pages
    // plans the page query as a scan and sort of the whole organization; a prepared statement keeps that
    // generic plan while the table grows, until autovacuum analyzes it (DEPLOY 1.2a).
    owner.batch_execute("ANALYZE").await.context("ANALYZE after seeding")?;
    let admin = user(stack, &owner, &format!("admin.{run}@load.test")).await?;
    owner.execute("UPDATE users SET role = 'ADMIN' WHERE id = $1", &[&admin.id]).await?;
    // Warm the token cache: every token verified once (the ES256 check and the auth-service call).
    for u in &users {
        let path = format!("/api/organizations/{}/knowledge", u.org);
        let resp = conn.send(Method::GET, &path, Some(&u.auth), None).await?;
        if resp.status != 200 {
            bail!("warming {}: {} {}", u.email, resp.status, String::from_utf8_lossy(&resp.body));
        }
    }
    let resp = conn.send(Method::GET, "/api/me", Some(&admin.auth), None).await?;
    if resp.status != 200 {
        bail!("warming the admin: {}", resp.status);
    }
    Ok(Seeded { users, admin })
}
