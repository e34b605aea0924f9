-- 0008: the request's context, caller and membership in one statement.
--
-- `open_request(uid, org, timeout)` is the first statement of every request transaction. It sets the same
-- transaction-local settings as `set_user_context` / `set_org_context` plus `statement_timeout`
-- (set_config(..., true): they end with the transaction, so pooled and PgBouncer connections stay clean), and
-- returns one row: the caller's own `users` row and the caller's membership in `org` (NULL columns when there
-- is none). It answers only about `uid`, the user whose context it has just set: the same rows the runtime
-- role reads with that context under `users_self_read` and `org_access`, nothing more.
--
-- Why SECURITY DEFINER: the owner reads users/memberships under its maintenance policy, so the RLS
-- sub-queries of `users_self_read` (and their helper calls) are neither planned nor run for this row
-- (docs/PERFORMANCE.md, "Database work per request": a SECURITY INVOKER version of it saved nothing).
-- PL/pgSQL keeps the plans of its statements for the session (see 0003). The function's own SET clause only
-- restores `search_path` on exit; the settings made with set_config(..., true) stay for the transaction.

CREATE FUNCTION open_request(uid uuid, org uuid, timeout text)
    RETURNS TABLE (r_id uuid, r_email text, r_role text, r_is_active boolean, r_organization_id uuid,
                   r_email_claimed_epoch int8, r_org_status text, r_member_role text, r_member_status text)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
    BEGIN
        PERFORM set_config('app.current_user_id', coalesce(uid::text, ''), true),
                set_config('app.current_org_id', coalesce(org::text, ''), true),
                set_config('statement_timeout', timeout, true);
        RETURN QUERY
            -- Cast to the declared result types: a later column type change (text to varchar) keeps working.
            SELECT u.id::uuid, u.email::text, u.role::text, u.is_active::boolean, u.organization_id::uuid,
                   extract(epoch FROM u.email_claimed_at)::int8,
                   a.org_status::text, a.member_role::text, a.member_status::text
              FROM (SELECT 1) AS one
              LEFT JOIN users u ON u.id = uid
              LEFT JOIN (SELECT o.status AS org_status, m.role AS member_role, m.status AS member_status
                           FROM organization_memberships m
                           JOIN organizations o ON o.id = m.organization_id
                          WHERE m.user_id = uid AND m.organization_id = org) AS a ON true;
    END
    $$;

REVOKE ALL ON FUNCTION open_request(uuid, uuid, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION open_request(uuid, uuid, text) TO intellifill_app;
