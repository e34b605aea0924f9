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

REVOKE ALL ON FUNCTION current_user_is_platform_admin(), security_lock_user(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION current_user_is_platform_admin(), security_lock_user(uuid) TO intellifill_app;

GRANT SELECT ON audit_log TO intellifill_app;

CREATE POLICY audit_org_admin_read ON audit_log FOR SELECT TO intellifill_app
    USING (organization_id = (SELECT current_member_org_id()) AND (SELECT current_member_rank()) >= 3);
CREATE POLICY audit_platform_admin_read ON audit_log FOR SELECT TO intellifill_app
    USING ((SELECT current_user_is_platform_admin()));
