-- 0002 audit: reading the audit log under RLS, severity, automatic lock-out.
--
-- The runtime role stays append-only on audit_log (no UPDATE, no DELETE). It gains SELECT, filtered by
-- policies: an org's OWNER/ADMIN sees the rows of the current org; a platform ADMIN sees every row. A
-- request without context sees nothing, as everywhere else.

ALTER TABLE audit_log ADD COLUMN severity text
    CHECK (severity IS NULL OR severity IN ('low', 'medium', 'high', 'critical'));
CREATE INDEX audit_log_time_idx ON audit_log (created_at DESC, id DESC);
CREATE INDEX audit_log_security_idx ON audit_log (created_at DESC) WHERE severity IS NOT NULL;

-- Whether the current user is a platform ADMIN (and active).
CREATE FUNCTION current_user_is_platform_admin() RETURNS boolean
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
        SELECT coalesce((SELECT u.role = 'ADMIN' AND u.is_active FROM users u WHERE u.id = current_user_id()), false)
    $$;

-- SECURITY_AUTO_LOCK: deactivate a user after a critical security event. The runtime role cannot write
-- users.is_active itself; this function can only ever switch a user off, and returns whether it did.
CREATE FUNCTION security_lock_user(target uuid) RETURNS boolean
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
DECLARE
    changed integer;
BEGIN
    UPDATE users SET is_active = false WHERE id = target AND is_active;
    GET DIAGNOSTICS changed = ROW_COUNT;
    RETURN changed > 0;
END
$$;

-- The audit writer's one way in: a batch of rows as arrays, inserted once each (replays are idempotent on
-- the event id). It runs as the owner because, under RLS, INSERT ... ON CONFLICT must also pass SELECT
-- policies, and a writer without a user context must see nothing. It can only add rows.
CREATE FUNCTION audit_append(
    ids uuid[], created timestamptz[], user_ids uuid[], org_ids uuid[], actions text[], entity_types text[],
    entity_ids text[], request_ids text[], methods text[], paths text[], statuses integer[], durations integer[],
    ips inet[], agents text[], severities text[], metas jsonb[]
) RETURNS integer
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
DECLARE
    inserted integer;
BEGIN
    INSERT INTO audit_log (id, created_at, user_id, organization_id, action, entity_type, entity_id, request_id,
                           method, path, status, duration_ms, ip, user_agent, severity, metadata)
    SELECT * FROM unnest(ids, created, user_ids, org_ids, actions, entity_types, entity_ids, request_ids, methods,
                         paths, statuses, durations, ips, agents, severities, metas)
    ON CONFLICT (id) DO NOTHING;
    GET DIAGNOSTICS inserted = ROW_COUNT;
    RETURN inserted;
END
$$;

REVOKE ALL ON FUNCTION current_user_is_platform_admin(), security_lock_user(uuid),
    audit_append(uuid[], timestamptz[], uuid[], uuid[], text[], text[], text[], text[], text[], text[], integer[],
                 integer[], inet[], text[], text[], jsonb[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION current_user_is_platform_admin(), security_lock_user(uuid),
    audit_append(uuid[], timestamptz[], uuid[], uuid[], text[], text[], text[], text[], text[], text[], integer[],
                 integer[], inet[], text[], text[], jsonb[]) TO intellifill_app;

GRANT SELECT ON audit_log TO intellifill_app;

CREATE POLICY audit_org_admin_read ON audit_log FOR SELECT TO intellifill_app
    USING (organization_id = (SELECT current_member_org_id()) AND (SELECT current_member_rank()) >= 3);
CREATE POLICY audit_platform_admin_read ON audit_log FOR SELECT TO intellifill_app
    USING ((SELECT current_user_is_platform_admin()));
