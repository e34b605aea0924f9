//! The role hierarchy as the database enforces it: direct SQL as the runtime role, with each member's context
//! set the way the server sets it (`set_user_context` / `set_org_context`, transaction-local), so a bug in
//! the handlers (or SQL injected through one) still cannot break the rules.

use tokio_postgres::Client;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use crate::helpers::{TestApp, TestUser, email, scalar};

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
    let mut db = app.runtime_client().await;
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
    let mut db = app.runtime_client().await;
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
        let (mut da, mut db) = (app.runtime_client().await, app.runtime_client().await);
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
    let mut db = app.runtime_client().await;
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

/// `open_request` (migration 0008), the first statement of every request transaction, called as the server
/// calls it: it sets the same transaction-local context as `set_user_context` / `set_org_context` plus
/// `statement_timeout`, and answers only about the user whose context it has just set.
#[tokio::test]
async fn open_request_sets_the_request_context_and_answers_only_about_its_own_caller() {
    let (app, owner, org) = TestApp::with_org("SQL Open Request").await;
    let member = app.member(org, "MEMBER").await;
    let outsider = app.user(&email("open-outsider")).await;
    let mut db = app.runtime_client().await;
    let search_path: String = db.query_one("SELECT current_setting('search_path')", &[]).await.expect("path").get(0);

    let a = open_request(&mut db, member.id, Some(org)).await;
    assert_eq!(
        (a.id, a.member_role.as_deref(), a.member_status.as_deref(), a.org_status.as_deref()),
        (Some(member.id), Some("MEMBER"), Some("ACTIVE"), Some("ACTIVE"))
    );
    assert_eq!((a.user_context, a.org_context), (member.id.to_string(), org.to_string()));
    assert_eq!(a.statement_timeout, "1234ms");
    assert_eq!(a.search_path, search_path, "the function's own search_path does not outlive it");

    // An outsider: their own row, no membership; the context is theirs.
    let a = open_request(&mut db, outsider.id, Some(org)).await;
    assert_eq!((a.id, a.member_role, a.org_status), (Some(outsider.id), None, None));
    assert_eq!(a.user_context, outsider.id.to_string());
    // No organization: the user row, no membership, an empty org context.
    let a = open_request(&mut db, owner.id, None).await;
    assert_eq!((a.id, a.member_role, a.org_context.as_str()), (Some(owner.id), None, ""));
    // An unknown user: one row of NULLs.
    let a = open_request(&mut db, Uuid::new_v4(), Some(org)).await;
    assert_eq!((a.id, a.member_role), (None, None));

    // A suspended member is answered as such; a removed member has no membership on the next call.
    app.owner
        .execute("UPDATE organization_memberships SET status = 'SUSPENDED' WHERE user_id = $1", &[&member.id])
        .await
        .expect("suspend");
    assert_eq!(open_request(&mut db, member.id, Some(org)).await.member_status.as_deref(), Some("SUSPENDED"));
    app.owner.execute("DELETE FROM organization_memberships WHERE user_id = $1", &[&member.id]).await.expect("remove");
    assert_eq!(open_request(&mut db, member.id, Some(org)).await.member_role, None);

    // Owned by the owner, SECURITY DEFINER with a fixed search_path, executable by the runtime role only.
    let row = app
        .owner
        .query_one(
            "SELECT p.prosecdef, p.proconfig, pg_get_userbyid(p.proowner) = current_user,
                    has_function_privilege('intellifill_app', p.oid, 'EXECUTE'),
                    EXISTS (SELECT 1 FROM aclexplode(p.proacl) a WHERE a.grantee = 0)
               FROM pg_proc p WHERE p.proname = 'open_request'",
            &[],
        )
        .await
        .expect("pg_proc");
    let (definer, config, owned, app_may, public_may): (bool, Vec<String>, bool, bool, bool) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    assert!(
        definer && owned && app_may && !public_may,
        "definer {definer} owned {owned} app {app_may} public {public_may}"
    );
    assert_eq!(config, ["search_path=public, pg_temp"]);
}

/// What `open_request` answered, and the settings in force right after it.
struct Opened {
    id: Option<Uuid>,
    member_role: Option<String>,
    member_status: Option<String>,
    org_status: Option<String>,
    user_context: String,
    org_context: String,
    statement_timeout: String,
    search_path: String,
}

/// `open_request(user, org, '1234')` in a transaction of its own, as the server's first statement; checks that
/// its context ends with the transaction.
async fn open_request(db: &mut Client, user: Uuid, org: Option<Uuid>) -> Opened {
    let tx = db.transaction().await.expect("begin");
    let rows = tx
        .query(
            "SELECT r_id, r_member_role, r_member_status, r_org_status FROM open_request($1, $2, '1234')",
            &[&user, &org],
        )
        .await
        .expect("open_request");
    assert_eq!(rows.len(), 1, "one row, whoever asks");
    let settings = tx
        .query_one(
            "SELECT current_setting('app.current_user_id'), current_setting('app.current_org_id'),
                    current_setting('statement_timeout'), current_setting('search_path')",
            &[],
        )
        .await
        .expect("settings");
    tx.commit().await.expect("commit");
    let after = db
        .query_one("SELECT current_setting('app.current_user_id', true), current_setting('statement_timeout')", &[])
        .await
        .expect("after");
    assert_eq!(after.get::<_, String>(0), "", "the user context ended with the transaction");
    assert_ne!(after.get::<_, String>(1), "1234ms", "the statement timeout ended with the transaction");
    let r = &rows[0];
    Opened {
        id: r.get(0),
        member_role: r.get(1),
        member_status: r.get(2),
        org_status: r.get(3),
        user_context: settings.get(0),
        org_context: settings.get(1),
        statement_timeout: settings.get(2),
        search_path: settings.get(3),
    }
}
