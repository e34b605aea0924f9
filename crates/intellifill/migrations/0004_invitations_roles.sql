-- Invitations instead of forced membership, and the role hierarchy enforced by the database itself.
--
-- * `organization_invitations`: an admin invites an e-mail with a role; only the invitee's acceptance
--   (`accept_invitation`) creates the ACTIVE membership. The runtime role can no longer INSERT memberships at
--   all: they are made by `create_organization` (the creator's OWNER row) and `accept_invitation` only.
-- * The platform-wide e-mail lookup `find_user_id_by_email` is dropped: nothing answers whether an e-mail or a
--   user id has an account.
-- * Triggers re-check every membership change and removal made by the runtime role (rank rules, last active
--   OWNER) and every organization status change (OWNER only), whatever the application asked for.
-- * `membership_departures`: when a membership ends, so the security-event rules can tell a former member's
--   stale client from a cross-tenant probe.

-- ---------------------------------------------------------------------------------------------------------
-- Helpers (SECURITY DEFINER, pinned search_path, answering only about the current user)
-- ---------------------------------------------------------------------------------------------------------

-- The current user's rank in `org` (0 when not an ACTIVE member), whatever the organization's status.
CREATE FUNCTION member_rank(org uuid) RETURNS integer
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
    BEGIN
        RETURN (SELECT coalesce(max(role_rank(m.role)), 0) FROM organization_memberships m
                 WHERE m.user_id = current_user_id() AND m.organization_id = org AND m.status = 'ACTIVE');
    END
    $$;

-- The current user's e-mail, lower-cased (what an invitation is matched on).
CREATE FUNCTION current_user_email() RETURNS text
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
    BEGIN
        RETURN (SELECT lower(u.email) FROM users u WHERE u.id = current_user_id() AND u.is_active);
    END
    $$;

-- Refuse unless `org` keeps an ACTIVE OWNER other than `leaving`. Locks the organization row first, so two
-- transactions removing the last two owners are serialised and the second one sees the first one's change.
CREATE FUNCTION ensure_other_active_owner(org uuid, leaving uuid) RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
    BEGIN
        PERFORM 1 FROM organizations WHERE id = org FOR NO KEY UPDATE;
        IF NOT EXISTS (SELECT 1 FROM organization_memberships
                        WHERE organization_id = org AND role = 'OWNER' AND status = 'ACTIVE'
                          AND user_id <> leaving) THEN
            RAISE EXCEPTION 'an organization must keep at least one active OWNER' USING ERRCODE = 'IFL01';
        END IF;
    END
    $$;

-- True when the invoking role owns the table the trigger fired on (migrations, maintenance, and the
-- SECURITY DEFINER functions below): the rules are for the runtime role.
CREATE FUNCTION invoked_by_table_owner(rel oid) RETURNS boolean
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
    AS $$ SELECT pg_has_role(current_user, (SELECT relowner FROM pg_class WHERE oid = rel), 'MEMBER') $$;

-- ---------------------------------------------------------------------------------------------------------
-- Role hierarchy on memberships and organizations
-- ---------------------------------------------------------------------------------------------------------

-- A change of role or status, or a removal, by someone whose rank is at least the new role's and above the
-- target's current role (an OWNER may change any row, OWNER rows only by an OWNER); a member may leave; the
-- last ACTIVE OWNER can be neither demoted, suspended, removed nor leave.
CREATE FUNCTION membership_guard() RETURNS trigger
    LANGUAGE plpgsql SECURITY INVOKER SET search_path = public, pg_temp
    AS $$
DECLARE
    actor integer;
BEGIN
    IF invoked_by_table_owner(TG_RELID) THEN
        RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    END IF;
    actor := member_rank(OLD.organization_id);
    IF TG_OP = 'DELETE' THEN
        IF OLD.user_id IS DISTINCT FROM current_user_id()
           AND NOT (actor = 4 OR (actor >= 3 AND role_rank(OLD.role) < actor)) THEN
            RAISE EXCEPTION 'not allowed to remove this member' USING ERRCODE = '42501';
        END IF;
        IF OLD.role = 'OWNER' AND OLD.status = 'ACTIVE' THEN
            PERFORM ensure_other_active_owner(OLD.organization_id, OLD.user_id);
        END IF;
        RETURN OLD;
    END IF;
    IF NEW.user_id <> OLD.user_id OR NEW.organization_id <> OLD.organization_id THEN
        RAISE EXCEPTION 'a membership cannot move' USING ERRCODE = '42501';
    END IF;
    IF NEW.role IS DISTINCT FROM OLD.role OR NEW.status IS DISTINCT FROM OLD.status THEN
        IF NEW.status NOT IN ('ACTIVE', 'SUSPENDED') THEN
            RAISE EXCEPTION 'status must be ACTIVE or SUSPENDED' USING ERRCODE = '42501';
        END IF;
        IF NOT (actor = 4 OR (actor >= 3 AND role_rank(NEW.role) <= actor AND role_rank(OLD.role) < actor)) THEN
            RAISE EXCEPTION 'not allowed to change this member' USING ERRCODE = '42501';
        END IF;
        IF OLD.role = 'OWNER' AND OLD.status = 'ACTIVE' AND (NEW.role <> 'OWNER' OR NEW.status <> 'ACTIVE') THEN
            PERFORM ensure_other_active_owner(OLD.organization_id, OLD.user_id);
        END IF;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER memberships_guard BEFORE UPDATE OR DELETE ON organization_memberships
    FOR EACH ROW EXECUTE FUNCTION membership_guard();

-- An organization's status changes only by one of its OWNERs.
CREATE FUNCTION organization_guard() RETURNS trigger
    LANGUAGE plpgsql SECURITY INVOKER SET search_path = public, pg_temp
    AS $$
BEGIN
    IF NOT invoked_by_table_owner(TG_RELID) AND NEW.status IS DISTINCT FROM OLD.status
       AND member_rank(OLD.id) < 4 THEN
        RAISE EXCEPTION 'changing an organization''s status requires OWNER' USING ERRCODE = '42501';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER organizations_guard BEFORE UPDATE ON organizations
    FOR EACH ROW EXECUTE FUNCTION organization_guard();

-- Memberships are created by create_organization and accept_invitation only.
DROP POLICY memberships_admin_insert ON organization_memberships;
REVOKE INSERT ON organization_memberships FROM intellifill_app;

DROP FUNCTION find_user_id_by_email(text);

-- ---------------------------------------------------------------------------------------------------------
-- Departures: the last time a user's membership of an organization ended (removed, left, suspended)
-- ---------------------------------------------------------------------------------------------------------
CREATE TABLE membership_departures (
    user_id         uuid NOT NULL,
    organization_id uuid NOT NULL,
    departed_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, organization_id)
);
ALTER TABLE membership_departures ENABLE ROW LEVEL SECURITY;
ALTER TABLE membership_departures FORCE ROW LEVEL SECURITY;
CREATE POLICY owner_maintenance ON membership_departures TO CURRENT_USER USING (true) WITH CHECK (true);
-- No grant and no policy for the runtime role: read through `recently_member_of` only.

CREATE FUNCTION membership_departed() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
BEGIN
    IF TG_OP = 'DELETE' OR (OLD.status = 'ACTIVE' AND NEW.status <> 'ACTIVE') THEN
        INSERT INTO membership_departures (user_id, organization_id, departed_at)
             VALUES (OLD.user_id, OLD.organization_id, now())
        ON CONFLICT (user_id, organization_id) DO UPDATE SET departed_at = EXCLUDED.departed_at;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER memberships_departed AFTER UPDATE OR DELETE ON organization_memberships
    FOR EACH ROW EXECUTE FUNCTION membership_departed();

-- Whether the current user's membership of `org` ended less than `window_seconds` ago.
CREATE FUNCTION recently_member_of(org uuid, window_seconds integer) RETURNS boolean
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
    BEGIN
        RETURN EXISTS (SELECT 1 FROM membership_departures d
                        WHERE d.user_id = current_user_id() AND d.organization_id = org
                          AND d.departed_at > now() - make_interval(secs => window_seconds));
    END
    $$;

-- ---------------------------------------------------------------------------------------------------------
-- Invitations
-- ---------------------------------------------------------------------------------------------------------
CREATE TABLE organization_invitations (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    email           text NOT NULL CHECK (length(email) BETWEEN 3 AND 320 AND position('@' IN email) > 0),
    role            text NOT NULL DEFAULT 'MEMBER' CHECK (role IN ('OWNER', 'ADMIN', 'MEMBER', 'VIEWER')),
    status          text NOT NULL DEFAULT 'PENDING' CHECK (status IN ('PENDING', 'ACCEPTED', 'DECLINED', 'REVOKED')),
    invited_by      uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    responded_at    timestamptz,
    CHECK (expires_at > created_at)
);
-- One pending invitation per organization and address: inviting again refreshes it.
CREATE UNIQUE INDEX organization_invitations_pending_key
    ON organization_invitations (organization_id, lower(email)) WHERE status = 'PENDING';
CREATE INDEX organization_invitations_email_idx ON organization_invitations (lower(email)) WHERE status = 'PENDING';
CREATE INDEX organization_invitations_org_page_idx ON organization_invitations (organization_id, created_at, id);

ALTER TABLE organization_invitations ENABLE ROW LEVEL SECURITY;
ALTER TABLE organization_invitations FORCE ROW LEVEL SECURITY;
CREATE POLICY owner_maintenance ON organization_invitations TO CURRENT_USER USING (true) WITH CHECK (true);

-- Admins of the current org see its invitations; an invitee sees those addressed to their own e-mail.
CREATE POLICY invitations_read ON organization_invitations FOR SELECT TO intellifill_app
    USING ((organization_id = (SELECT current_member_org_id()) AND (SELECT current_member_rank()) >= 3)
           OR lower(email) = (SELECT current_user_email()));
-- An admin invites with a role up to their own (OWNER only by an OWNER), as themself, pending.
CREATE POLICY invitations_admin_insert ON organization_invitations FOR INSERT TO intellifill_app
    WITH CHECK (organization_id = (SELECT current_member_org_id())
                AND (SELECT current_member_rank()) >= 3
                AND role_rank(role) <= (SELECT current_member_rank())
                AND invited_by = current_user_id()
                AND status = 'PENDING'
                AND expires_at > now());
-- An admin refreshes (as the new inviter) or revokes a pending invitation whose role is not above their own.
CREATE POLICY invitations_admin_update ON organization_invitations FOR UPDATE TO intellifill_app
    USING (organization_id = (SELECT current_member_org_id())
           AND (SELECT current_member_rank()) >= 3
           AND role_rank(role) <= (SELECT current_member_rank())
           AND status = 'PENDING')
    WITH CHECK (organization_id = (SELECT current_member_org_id())
                AND role_rank(role) <= (SELECT current_member_rank())
                AND ((status = 'PENDING' AND invited_by = current_user_id()) OR status = 'REVOKED'));

GRANT SELECT, INSERT (organization_id, email, role, invited_by, expires_at),
      UPDATE (role, invited_by, expires_at, status, responded_at) ON organization_invitations TO intellifill_app;

-- The current user's pending, unexpired invitations, with the organization's name (the invitee is not a
-- member yet, so cannot read the organization itself).
CREATE FUNCTION my_invitations()
    RETURNS TABLE (id uuid, organization_id uuid, organization_name text, organization_slug text, role text,
                   created_at timestamptz, expires_at timestamptz)
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
    BEGIN
        RETURN QUERY
            SELECT i.id, i.organization_id, o.name, o.slug, i.role, i.created_at, i.expires_at
              FROM organization_invitations i JOIN organizations o ON o.id = i.organization_id
             WHERE lower(i.email) = current_user_email() AND i.status = 'PENDING' AND i.expires_at > now()
             ORDER BY i.created_at, i.id
             LIMIT 100;
    END
    $$;

-- Accept: the invitation must be pending, unexpired and addressed to the current user's e-mail; creates the
-- ACTIVE membership with the invitation's role (or reactivates one the user had left) and returns the org.
-- Errors: IFI01 no such invitation (unknown, not the caller's, answered or revoked: one answer for all),
-- IFI02 expired, IFI03 already a member.
CREATE FUNCTION accept_invitation(invitation uuid) RETURNS uuid
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
DECLARE
    uid uuid := current_user_id();
    inv organization_invitations%ROWTYPE;
    made uuid;
BEGIN
    SELECT * INTO inv FROM organization_invitations WHERE id = invitation FOR UPDATE;
    IF NOT FOUND OR uid IS NULL OR inv.status <> 'PENDING' OR lower(inv.email) IS DISTINCT FROM current_user_email() THEN
        RAISE EXCEPTION 'invitation not found' USING ERRCODE = 'IFI01';
    END IF;
    IF inv.expires_at <= now() THEN
        RAISE EXCEPTION 'invitation expired' USING ERRCODE = 'IFI02';
    END IF;
    INSERT INTO organization_memberships (user_id, organization_id, role, status, invited_by, joined_at)
         VALUES (uid, inv.organization_id, inv.role, 'ACTIVE', inv.invited_by, now())
    ON CONFLICT (user_id, organization_id) DO UPDATE
            SET role = EXCLUDED.role, status = 'ACTIVE', invited_by = EXCLUDED.invited_by, joined_at = now()
          WHERE organization_memberships.status = 'LEFT'
    RETURNING id INTO made;
    IF made IS NULL THEN
        RAISE EXCEPTION 'already a member' USING ERRCODE = 'IFI03';
    END IF;
    UPDATE organization_invitations SET status = 'ACCEPTED', responded_at = now() WHERE id = invitation;
    RETURN inv.organization_id;
END
$$;

-- Decline: same conditions as accepting (an expired invitation may be declined too).
CREATE FUNCTION decline_invitation(invitation uuid) RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
BEGIN
    UPDATE organization_invitations SET status = 'DECLINED', responded_at = now()
     WHERE id = invitation AND status = 'PENDING' AND current_user_id() IS NOT NULL
       AND lower(email) = current_user_email();
    IF NOT FOUND THEN
        RAISE EXCEPTION 'invitation not found' USING ERRCODE = 'IFI01';
    END IF;
END
$$;

REVOKE ALL ON FUNCTION member_rank(uuid), current_user_email(), ensure_other_active_owner(uuid, uuid),
    membership_departed(), recently_member_of(uuid, integer), my_invitations(), accept_invitation(uuid),
    decline_invitation(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION member_rank(uuid), current_user_email(), ensure_other_active_owner(uuid, uuid),
    recently_member_of(uuid, integer), my_invitations(), accept_invitation(uuid), decline_invitation(uuid)
    TO intellifill_app;
