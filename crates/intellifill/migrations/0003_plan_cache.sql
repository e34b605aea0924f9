-- The membership helpers in PL/pgSQL instead of SQL: same signatures, same answers, cheaper calls.
--
-- Why: a SECURITY DEFINER function is never inlined, and a non-inlined SQL-language function parses and
-- plans its body again in every statement that calls it (its plan lives only as long as the calling query).
-- The RLS policies call these helpers in every request's statements (the knowledge page, the user row,
-- org_access), so under load Postgres spent about a third of its time planning them (measured with
-- `perf` during `loadtest run`: pg_plan_query / fmgr_sql under fmgr_security_definer). PL/pgSQL prepares
-- each statement once per session and reuses the plan; the bodies use no parameters that would call for
-- custom plans. Still SECURITY DEFINER with a fixed search_path, still STABLE, still answering only about
-- the current user.

CREATE OR REPLACE FUNCTION current_member_org_id() RETURNS uuid
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
    BEGIN
        RETURN (SELECT m.organization_id
                  FROM organization_memberships m
                  JOIN organizations o ON o.id = m.organization_id
                 WHERE m.user_id = current_user_id()
                   AND m.organization_id = current_org_id()
                   AND m.status = 'ACTIVE'
                   AND o.status = 'ACTIVE');
    END
    $$;

CREATE OR REPLACE FUNCTION current_member_rank() RETURNS integer
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
    BEGIN
        RETURN (SELECT coalesce(max(role_rank(m.role)), 0)
                  FROM organization_memberships m
                  JOIN organizations o ON o.id = m.organization_id
                 WHERE m.user_id = current_user_id()
                   AND m.organization_id = current_org_id()
                   AND m.status = 'ACTIVE'
                   AND o.status = 'ACTIVE');
    END
    $$;

CREATE OR REPLACE FUNCTION current_user_org_ids() RETURNS SETOF uuid
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
    BEGIN
        RETURN QUERY SELECT m.organization_id FROM organization_memberships m
                      WHERE m.user_id = current_user_id() AND m.status = 'ACTIVE';
    END
    $$;

CREATE OR REPLACE FUNCTION org_access(org uuid)
    RETURNS TABLE (org_status text, member_role text, member_status text)
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
    BEGIN
        RETURN QUERY SELECT o.status, m.role, m.status
                       FROM organization_memberships m
                       JOIN organizations o ON o.id = m.organization_id
                      WHERE m.user_id = current_user_id() AND m.organization_id = org;
    END
    $$;

CREATE OR REPLACE FUNCTION current_user_is_platform_admin() RETURNS boolean
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
    BEGIN
        RETURN coalesce((SELECT u.role = 'ADMIN' AND u.is_active FROM users u WHERE u.id = current_user_id()),
                        false);
    END
    $$;
