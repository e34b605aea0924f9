//! The role hierarchy as the database enforces it: direct SQL as the runtime role, with each member's context
//! set the way the server sets it (`set_user_context` / `set_org_context`, transaction-local), so a bug in
//! the handlers (or SQL injected through one) still cannot break the rules.

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls};
use uuid::Uuid;

use crate::helpers::{TestApp, TestUser, email, scalar};

async fn runtime_client(app: &TestApp) -> Client {
    let (client, conn) = tokio_postgres::connect(&app.runtime_url, NoTls).await.expect("runtime connection");
    tokio::spawn(conn);
    client
}

/// Run `sql` in a transaction with `user`'s context in `org`; commit on success. Returns the rows changed or
/// the SQLSTATE of the refusal.
async fn as_user(
    db: &mut Client,
    user: &TestUser,
    org: Uuid,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, String> {
    let tx = db.transaction().await.expect("begin");
    tx.execute("SELECT set_user_context($1), set_org_context($2)", &[&user.id, &org]).await.expect("context");
    match tx.execute(sql, params).await {
        Ok(n) => {
            tx.commit().await.expect("commit");
            Ok(n)
        }
        Err(e) => Err(e.code().map(|c| c.code().to_owned()).unwrap_or_else(|| e.to_string())),
    }
}

const PRIVILEGE: &str = "42501";
const LAST_OWNER: &str = "IFL01";

fn refused(result: Result<u64, String>, code: &str, what: &str) {
    assert_eq!(result, Err(code.to_owned()), "{what}");
}

#[tokio::test]
async fn an_admin_cannot_raise_itself_touch_owners_or_peers_insert_members_or_suspend_the_org() {
    let (app, owner, org) = TestApp::with_org("SQL Ranks").await;
    let admin = app.member(org, "ADMIN").await;
    let peer = app.member(org, "ADMIN").await;
    let member = app.member(org, "MEMBER").await;
    let outsider = app.user(&email("outsider")).await;
    let mut db = runtime_client(&app).await;
    let set_role = "UPDATE organization_memberships SET role = $2 WHERE user_id = $1";

    refused(as_user(&mut db, &admin, org, set_role, &[&admin.id, &"OWNER"]).await, PRIVILEGE, "self-promotion");
    refused(as_user(&mut db, &admin, org, set_role, &[&owner.id, &"ADMIN"]).await, PRIVILEGE, "demote the owner");
    refused(as_user(&mut db, &admin, org, set_role, &[&peer.id, &"MEMBER"]).await, PRIVILEGE, "demote a peer");
    refused(as_user(&mut db, &admin, org, set_role, &[&member.id, &"OWNER"]).await, PRIVILEGE, "grant OWNER");
    refused(
        as_user(
            &mut db,
            &admin,
            org,
            "UPDATE organization_memberships SET status = 'SUSPENDED' WHERE user_id = $1",
            &[&owner.id],
        )
        .await,
        PRIVILEGE,
        "suspend the owner",
    );
    refused(
        as_user(&mut db, &admin, org, "DELETE FROM organization_memberships WHERE user_id = $1", &[&owner.id]).await,
        PRIVILEGE,
        "remove the owner",
    );
    refused(
        as_user(
            &mut db,
            &admin,
            org,
            "INSERT INTO organization_memberships (user_id, organization_id, role, status) VALUES ($1, $2, 'OWNER', 'ACTIVE')",
            &[&outsider.id, &org],
        )
        .await,
        PRIVILEGE,
        "insert a membership",
    );
    refused(
        as_user(&mut db, &admin, org, "UPDATE organizations SET status = 'SUSPENDED' WHERE id = $1", &[&org]).await,
        PRIVILEGE,
        "suspend the organization",
    );
    refused(
        as_user(
            &mut db,
            &admin,
            org,
            "INSERT INTO organization_invitations (organization_id, email, role, invited_by, expires_at)
             VALUES ($1, 'x@example.test', 'OWNER', $2, now() + interval '1 day')",
            &[&org, &admin.id],
        )
        .await,
        PRIVILEGE,
        "invite an OWNER",
    );
    // What an admin may do, it may do.
    assert_eq!(as_user(&mut db, &admin, org, set_role, &[&member.id, &"ADMIN"]).await, Ok(1));
    assert_eq!(
        as_user(&mut db, &admin, org, "UPDATE organizations SET name = 'Renamed' WHERE id = $1", &[&org]).await,
        Ok(1)
    );
    let roles: Vec<String> = crate::helpers::column(
        &app.owner,
        "SELECT role FROM organization_memberships WHERE organization_id = $1 ORDER BY role",
        &[&org],
    )
    .await;
    assert_eq!(roles, ["ADMIN", "ADMIN", "ADMIN", "OWNER"]);
    let status: String = scalar(&app.owner, "SELECT status FROM organizations WHERE id = $1", &[&org]).await;
    assert_eq!(status, "ACTIVE");
}

#[tokio::test]
async fn the_last_active_owner_cannot_be_demoted_suspended_removed_or_leave() {
    let (app, owner, org) = TestApp::with_org("SQL Last Owner").await;
    let member = app.member(org, "MEMBER").await;
    let mut db = runtime_client(&app).await;
    for (sql, what) in [
        ("UPDATE organization_memberships SET role = 'ADMIN' WHERE user_id = $1", "demote"),
        ("UPDATE organization_memberships SET status = 'SUSPENDED' WHERE user_id = $1", "suspend"),
        ("DELETE FROM organization_memberships WHERE user_id = $1", "leave"),
    ] {
        refused(as_user(&mut db, &owner, org, sql, &[&owner.id]).await, LAST_OWNER, what);
    }
    // A member leaves; an OWNER changes the organization's status.
    assert_eq!(
        as_user(&mut db, &member, org, "DELETE FROM organization_memberships WHERE user_id = $1", &[&member.id]).await,
        Ok(1)
    );
    assert_eq!(
        as_user(&mut db, &owner, org, "UPDATE organizations SET status = 'INACTIVE' WHERE id = $1", &[&org]).await,
        Ok(1)
    );
    // The removed helpers are gone: no e-mail lookup across the platform.
    refused(
        as_user(&mut db, &owner, org, "SELECT find_user_id_by_email('x@example.test')", &[]).await,
        "42883",
        "find_user_id_by_email",
    );
}

#[tokio::test]
async fn two_owners_demoting_each_other_in_sql_at_once_leave_one_owner() {
    for round in 0..4 {
        let (app, a, org) = TestApp::with_org(&format!("SQL Race {round}")).await;
        let b = app.member(org, "OWNER").await;
        let (mut da, mut db) = (runtime_client(&app).await, runtime_client(&app).await);
        let demote = "UPDATE organization_memberships SET role = 'ADMIN' WHERE user_id = $1";
        let (pa, pb): ([&(dyn ToSql + Sync); 1], [&(dyn ToSql + Sync); 1]) = ([&b.id], [&a.id]);
        let (ra, rb) = tokio::join!(as_user(&mut da, &a, org, demote, &pa), as_user(&mut db, &b, org, demote, &pb));
        let owners: i64 = scalar(
            &app.owner,
            "SELECT count(*) FROM organization_memberships WHERE organization_id = $1 AND role = 'OWNER' AND status = 'ACTIVE'",
            &[&org],
        )
        .await;
        assert_eq!(owners, 1, "{ra:?} {rb:?}");
        assert!(ra == Ok(1) || rb == Ok(1), "{ra:?} {rb:?}");
    }
}

#[tokio::test]
async fn an_invitation_is_accepted_only_by_its_addressee_and_only_once() {
    let (app, owner, org) = TestApp::with_org("SQL Invites").await;
    let invitee = app.user(&email("invitee")).await;
    let other = app.user(&email("other")).await;
    let id = app.invite(&owner, org, &invitee.email, "ADMIN").await;
    let mut db = runtime_client(&app).await;
    let accept = "SELECT accept_invitation($1)";
    refused(as_user(&mut db, &other, org, accept, &[&id]).await, "IFI01", "someone else's invitation");
    // The invitee cannot rewrite the invitation (no policy lets a non-admin update it) before accepting.
    assert_eq!(
        as_user(&mut db, &invitee, org, "UPDATE organization_invitations SET role = 'OWNER' WHERE id = $1", &[&id])
            .await,
        Ok(0)
    );
    assert_eq!(as_user(&mut db, &invitee, org, accept, &[&id]).await, Ok(1));
    refused(as_user(&mut db, &invitee, org, accept, &[&id]).await, "IFI01", "accepted twice");
    let role: String = scalar(
        &app.owner,
        "SELECT role FROM organization_memberships WHERE organization_id = $1 AND user_id = $2",
        &[&org, &invitee.id],
    )
    .await;
    assert_eq!(role, "ADMIN");
}
