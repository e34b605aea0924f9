-- 0001: schema, runtime role grants and row-level security.
--
-- Runs as the OWNER role (the one in DATABASE_MIGRATION_URL). The server connects as the runtime role
-- `intellifill_app`, which owns nothing, cannot bypass RLS and only holds the grants below. Every tenant
-- table has ENABLE + FORCE ROW LEVEL SECURITY, and every policy reads the transaction-local settings set by
-- `set_user_context` / `set_org_context`: a connection without context sees no rows and cannot write.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'intellifill_app') THEN
        CREATE ROLE intellifill_app NOLOGIN NOBYPASSRLS NOSUPERUSER NOCREATEDB NOCREATEROLE;
    END IF;
END
$$;

REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO intellifill_app;

-- ---------------------------------------------------------------------------------------------------------
-- Context: transaction-local settings only (set_config(..., true)), so a pooled connection (or a PgBouncer
-- server connection in transaction mode) never carries one request's identity into the next.
-- ---------------------------------------------------------------------------------------------------------
CREATE FUNCTION current_user_id() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT nullif(current_setting('app.current_user_id', true), '')::uuid $$;

CREATE FUNCTION current_org_id() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT nullif(current_setting('app.current_org_id', true), '')::uuid $$;

CREATE FUNCTION set_user_context(user_id uuid) RETURNS void
    LANGUAGE sql VOLATILE
    AS $$ SELECT set_config('app.current_user_id', coalesce(user_id::text, ''), true) $$;

CREATE FUNCTION set_org_context(org_id uuid) RETURNS void
    LANGUAGE sql VOLATILE
    AS $$ SELECT set_config('app.current_org_id', coalesce(org_id::text, ''), true) $$;

-- ---------------------------------------------------------------------------------------------------------
-- Tables
-- ---------------------------------------------------------------------------------------------------------
CREATE FUNCTION touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

CREATE TABLE organizations (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name       text NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    slug       text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$' AND length(slug) <= 64),
    status     text NOT NULL DEFAULT 'ACTIVE' CHECK (status IN ('ACTIVE', 'INACTIVE', 'SUSPENDED')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id              uuid PRIMARY KEY,           -- the Supabase Auth user id (JWT `sub`)
    email           text NOT NULL,
    role            text NOT NULL DEFAULT 'USER' CHECK (role IN ('ADMIN', 'USER', 'VIEWER')),
    is_active       boolean NOT NULL DEFAULT true,
    organization_id uuid REFERENCES organizations (id) ON DELETE SET NULL,   -- current organization
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

CREATE TABLE organization_memberships (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id         uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    role            text NOT NULL DEFAULT 'MEMBER' CHECK (role IN ('OWNER', 'ADMIN', 'MEMBER', 'VIEWER')),
    status          text NOT NULL DEFAULT 'ACTIVE' CHECK (status IN ('PENDING', 'ACTIVE', 'SUSPENDED', 'LEFT')),
    invited_by      uuid REFERENCES users (id) ON DELETE SET NULL,
    joined_at       timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, organization_id)
);
CREATE INDEX organization_memberships_org_idx ON organization_memberships (organization_id, role, status);

CREATE TABLE knowledge_sources (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    created_by      uuid REFERENCES users (id) ON DELETE SET NULL,
    title           text NOT NULL CHECK (length(btrim(title)) BETWEEN 1 AND 500),
    content         text NOT NULL CHECK (length(content) <= 1000000),
    search_vector   tsvector GENERATED ALWAYS AS (
                        setweight(to_tsvector('english', coalesce(title, '')), 'A') ||
                        setweight(to_tsvector('english', coalesce(content, '')), 'B')) STORED,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX knowledge_sources_org_page_idx ON knowledge_sources (organization_id, created_at DESC, id DESC);
CREATE INDEX knowledge_sources_search_idx ON knowledge_sources USING gin (search_vector);

CREATE TABLE audit_log (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),   -- event id: replay is idempotent on it
    user_id         uuid,
    organization_id uuid,
    action          text NOT NULL,
    entity_type     text,
    entity_id       text,
    request_id      text,
    method          text,
    path            text,
    status          integer,
    duration_ms     integer,
    ip              inet,
    user_agent      text,
    metadata        jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_org_time_idx ON audit_log (organization_id, created_at DESC);
CREATE INDEX audit_log_user_time_idx ON audit_log (user_id, created_at DESC);

CREATE TRIGGER organizations_touch BEFORE UPDATE ON organizations FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
CREATE TRIGGER users_touch BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
CREATE TRIGGER memberships_touch BEFORE UPDATE ON organization_memberships FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
CREATE TRIGGER knowledge_touch BEFORE UPDATE ON knowledge_sources FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

-- ---------------------------------------------------------------------------------------------------------
-- Membership helpers. SECURITY DEFINER (run as the owner) because a policy on organization_memberships
-- cannot query organization_memberships under the caller's own policies without recursing. They only ever
-- answer about the *current* user, so they reveal nothing a member could not see anyway.
-- ---------------------------------------------------------------------------------------------------------
CREATE FUNCTION role_rank(role text) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT CASE role WHEN 'OWNER' THEN 4 WHEN 'ADMIN' THEN 3 WHEN 'MEMBER' THEN 2 WHEN 'VIEWER' THEN 1 ELSE 0 END $$;

-- The current org if the current user is an ACTIVE member of it and it is ACTIVE, else NULL.
CREATE FUNCTION current_member_org_id() RETURNS uuid
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
        SELECT m.organization_id
          FROM organization_memberships m
          JOIN organizations o ON o.id = m.organization_id
         WHERE m.user_id = current_user_id()
           AND m.organization_id = current_org_id()
           AND m.status = 'ACTIVE'
           AND o.status = 'ACTIVE'
    $$;

-- The current user's role rank in the current org (0 when not an active member of an active org).
CREATE FUNCTION current_member_rank() RETURNS integer
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
        SELECT coalesce(max(role_rank(m.role)), 0)
          FROM organization_memberships m
          JOIN organizations o ON o.id = m.organization_id
         WHERE m.user_id = current_user_id()
           AND m.organization_id = current_org_id()
           AND m.status = 'ACTIVE'
           AND o.status = 'ACTIVE'
    $$;

-- Orgs the current user is an ACTIVE member of (any org status: the list shows suspended ones too).
CREATE FUNCTION current_user_org_ids() RETURNS SETOF uuid
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
        SELECT organization_id FROM organization_memberships
         WHERE user_id = current_user_id() AND status = 'ACTIVE'
    $$;

-- What the current user may do in `org`: one row when the user has any membership row there.
-- The application maps it to NOT_ORG_MEMBER / ORG_SUSPENDED / ADMIN_REQUIRED / OWNER_REQUIRED.
CREATE FUNCTION org_access(org uuid)
    RETURNS TABLE (org_status text, member_role text, member_status text)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
        SELECT o.status, m.role, m.status
          FROM organization_memberships m
          JOIN organizations o ON o.id = m.organization_id
         WHERE m.user_id = current_user_id() AND m.organization_id = org
    $$;

-- Users an org admin may add by e-mail. Answers only an ADMIN/OWNER of the current org.
CREATE FUNCTION find_user_id_by_email(addr text) RETURNS uuid
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
        SELECT u.id FROM users u
         WHERE lower(u.email) = lower(addr) AND current_member_rank() >= 3
    $$;

-- Creating an organization: the org row, the creator's OWNER membership and the creator's current org,
-- atomically. Runs as the owner because the creator is not a member (cannot see the org) until it exists.
CREATE FUNCTION create_organization(org_name text, org_slug text) RETURNS uuid
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
DECLARE
    uid uuid := current_user_id();
    oid uuid;
BEGIN
    IF uid IS NULL THEN
        RAISE EXCEPTION 'no user context' USING ERRCODE = '42501';
    END IF;
    INSERT INTO organizations (name, slug) VALUES (org_name, org_slug) RETURNING id INTO oid;
    INSERT INTO organization_memberships (user_id, organization_id, role, status, joined_at)
        VALUES (uid, oid, 'OWNER', 'ACTIVE', now());
    UPDATE users SET organization_id = oid WHERE id = uid;
    RETURN oid;
END
$$;

-- A removed member whose current org pointed at the org loses it as current org.
CREATE FUNCTION membership_removed() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
BEGIN
    UPDATE users SET organization_id = NULL
     WHERE id = OLD.user_id AND organization_id = OLD.organization_id;
    RETURN OLD;
END
$$;
CREATE TRIGGER memberships_removed AFTER DELETE ON organization_memberships
    FOR EACH ROW EXECUTE FUNCTION membership_removed();

REVOKE ALL ON FUNCTION current_member_org_id(), current_member_rank(), current_user_org_ids(), org_access(uuid),
    find_user_id_by_email(text), create_organization(text, text), membership_removed() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION current_member_org_id(), current_member_rank(), current_user_org_ids(), org_access(uuid),
    find_user_id_by_email(text), create_organization(text, text) TO intellifill_app;

-- ---------------------------------------------------------------------------------------------------------
-- Grants: the least the API needs. Column lists keep the runtime role from writing ids, roles or flags.
-- ---------------------------------------------------------------------------------------------------------
GRANT SELECT, UPDATE (name, status) ON organizations TO intellifill_app;
GRANT SELECT, INSERT (id, email), UPDATE (organization_id) ON users TO intellifill_app;
GRANT SELECT, INSERT (user_id, organization_id, role, status, invited_by, joined_at),
      UPDATE (role, status), DELETE ON organization_memberships TO intellifill_app;
GRANT SELECT, INSERT (organization_id, created_by, title, content), UPDATE (title, content), DELETE
      ON knowledge_sources TO intellifill_app;
GRANT INSERT ON audit_log TO intellifill_app;   -- append-only for the runtime role
GRANT SELECT ON schema_migrations TO intellifill_app;   -- the start-up check reads the schema version

-- ---------------------------------------------------------------------------------------------------------
-- Row-level security: ENABLE + FORCE everywhere. The owner keeps a maintenance policy of its own
-- (CURRENT_USER is the migrating role) so SECURITY DEFINER helpers and data migrations work; the server
-- refuses to start when connected as that role.
-- ---------------------------------------------------------------------------------------------------------
ALTER TABLE organizations ENABLE ROW LEVEL SECURITY;
ALTER TABLE organizations FORCE ROW LEVEL SECURITY;
ALTER TABLE users ENABLE ROW LEVEL SECURITY;
ALTER TABLE users FORCE ROW LEVEL SECURITY;
ALTER TABLE organization_memberships ENABLE ROW LEVEL SECURITY;
ALTER TABLE organization_memberships FORCE ROW LEVEL SECURITY;
ALTER TABLE knowledge_sources ENABLE ROW LEVEL SECURITY;
ALTER TABLE knowledge_sources FORCE ROW LEVEL SECURITY;
ALTER TABLE audit_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_log FORCE ROW LEVEL SECURITY;

CREATE POLICY owner_maintenance ON organizations TO CURRENT_USER USING (true) WITH CHECK (true);
CREATE POLICY owner_maintenance ON users TO CURRENT_USER USING (true) WITH CHECK (true);
CREATE POLICY owner_maintenance ON organization_memberships TO CURRENT_USER USING (true) WITH CHECK (true);
CREATE POLICY owner_maintenance ON knowledge_sources TO CURRENT_USER USING (true) WITH CHECK (true);
CREATE POLICY owner_maintenance ON audit_log TO CURRENT_USER USING (true) WITH CHECK (true);

-- organizations: visible to active members; only ADMIN+ of the (current) org may update it.
CREATE POLICY org_member_read ON organizations FOR SELECT TO intellifill_app
    USING (id IN (SELECT current_user_org_ids()));
CREATE POLICY org_admin_update ON organizations FOR UPDATE TO intellifill_app
    USING (id = (SELECT current_member_org_id()) AND (SELECT current_member_rank()) >= 3)
    WITH CHECK (id = (SELECT current_member_org_id()));

-- users: yourself, and the members of the current org; you may provision and update only yourself.
CREATE POLICY users_self_read ON users FOR SELECT TO intellifill_app
    USING (id = current_user_id()
           OR id IN (SELECT m.user_id FROM organization_memberships m
                      WHERE m.organization_id = (SELECT current_member_org_id())));
CREATE POLICY users_self_insert ON users FOR INSERT TO intellifill_app
    WITH CHECK (id = current_user_id());
CREATE POLICY users_self_update ON users FOR UPDATE TO intellifill_app
    USING (id = current_user_id())
    WITH CHECK (id = current_user_id()
                AND (organization_id IS NULL OR organization_id IN (SELECT current_user_org_ids())));

-- memberships: your own rows, and all rows of the current org; ADMIN+ of the current org may change them.
CREATE POLICY memberships_read ON organization_memberships FOR SELECT TO intellifill_app
    USING (user_id = current_user_id() OR organization_id = (SELECT current_member_org_id()));
CREATE POLICY memberships_admin_insert ON organization_memberships FOR INSERT TO intellifill_app
    WITH CHECK (organization_id = (SELECT current_member_org_id()) AND (SELECT current_member_rank()) >= 3);
CREATE POLICY memberships_admin_update ON organization_memberships FOR UPDATE TO intellifill_app
    USING (organization_id = (SELECT current_member_org_id()) AND (SELECT current_member_rank()) >= 3)
    WITH CHECK (organization_id = (SELECT current_member_org_id()));
CREATE POLICY memberships_admin_delete ON organization_memberships FOR DELETE TO intellifill_app
    USING (organization_id = (SELECT current_member_org_id())
           AND ((SELECT current_member_rank()) >= 3 OR user_id = current_user_id()));

-- knowledge: the current org only; VIEWERs read, MEMBER+ write.
CREATE POLICY knowledge_read ON knowledge_sources FOR SELECT TO intellifill_app
    USING (organization_id = (SELECT current_member_org_id()));
CREATE POLICY knowledge_insert ON knowledge_sources FOR INSERT TO intellifill_app
    WITH CHECK (organization_id = (SELECT current_member_org_id())
                AND (SELECT current_member_rank()) >= 2
                AND created_by = current_user_id());
CREATE POLICY knowledge_update ON knowledge_sources FOR UPDATE TO intellifill_app
    USING (organization_id = (SELECT current_member_org_id()) AND (SELECT current_member_rank()) >= 2)
    WITH CHECK (organization_id = (SELECT current_member_org_id()));
CREATE POLICY knowledge_delete ON knowledge_sources FOR DELETE TO intellifill_app
    USING (organization_id = (SELECT current_member_org_id()) AND (SELECT current_member_rank()) >= 2);

-- audit_log: the writer inserts from a background task (no user context), so inserts are open to the
-- runtime role; it has no SELECT/UPDATE/DELETE grant at all.
CREATE POLICY audit_append ON audit_log FOR INSERT TO intellifill_app WITH CHECK (true);
