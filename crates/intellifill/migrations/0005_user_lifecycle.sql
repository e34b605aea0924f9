-- 0004 user lifecycle: users provisioned on first sight, anonymous users, and an e-mail address that belongs
-- to the user the auth service vouched for last.
--
-- The rule (docs/DEPLOY.md, "User lifecycle"): a verified caller whose e-mail the auth service reports
-- confirmed gets a `users` row on its first request (id = the Supabase user id), and the row's e-mail follows
-- the auth service. An address is unique here as it is in Supabase Auth; when a confirmed address is claimed
-- by a user whose evidence (the issue time of its token) is newer than the holder's, the holder's row lets
-- the address go (e-mail NULL, `email_released_at` set): the holder no longer has it in the auth service
-- (deleted, or it changed its address), since Supabase Auth gives a confirmed address to one user at a time.
-- The holder's row keeps its id, memberships and audit history; nothing of it passes to the new user, who
-- gets a row of its own. Anonymous users have no e-mail (NULL).

SET LOCAL lock_timeout = '5s';

ALTER TABLE users ALTER COLUMN email DROP NOT NULL;
-- Issue time of the token whose verified user carried this e-mail when it was written here.
ALTER TABLE users ADD COLUMN email_claimed_at timestamptz;
-- When a newer claimant took this row's e-mail.
ALTER TABLE users ADD COLUMN email_released_at timestamptz;

-- The current user's row, created when missing, with `addr` (a confirmed e-mail, or NULL) claimed on the word
-- of a token issued at `claimed`. Answers the row as the server reads it. Runs as the owner because the
-- runtime role may neither touch another user's row nor write `email_claimed_at`; it only ever creates or
-- changes the row of `current_user_id()`, and releases another row's e-mail only to a newer claim.
-- Concurrent first requests of one user create one row: the second insert waits for the first and does
-- nothing. Provisioning and every release are audited in the same transaction.
CREATE FUNCTION claim_current_user(addr text, claimed timestamptz)
    RETURNS TABLE (r_id uuid, r_email text, r_role text, r_is_active boolean, r_organization_id uuid,
                   r_email_claimed_at timestamptz)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
DECLARE
    uid uuid := current_user_id();
    wanted text := nullif(btrim(addr), '');
    mine_email text;
    mine_claimed timestamptz;
    holder_id uuid;
    holder_claimed timestamptz;
BEGIN
    IF uid IS NULL THEN
        RAISE EXCEPTION 'no user context' USING ERRCODE = '42501';
    END IF;
    IF claimed IS NULL THEN
        RAISE EXCEPTION 'a claim needs the issue time of its token' USING ERRCODE = '22004';
    END IF;
    INSERT INTO users (id) VALUES (uid) ON CONFLICT (id) DO NOTHING;
    IF FOUND THEN
        INSERT INTO audit_log (user_id, action, entity_type, entity_id, metadata)
            VALUES (uid, 'user.provisioned', 'user', uid::text, jsonb_build_object('anonymous', wanted IS NULL));
    END IF;
    SELECT u.email, u.email_claimed_at INTO mine_email, mine_claimed FROM users u WHERE u.id = uid FOR UPDATE;
    IF wanted IS NULL
       OR lower(mine_email) IS NOT DISTINCT FROM lower(wanted)
       OR mine_claimed >= claimed THEN
        RETURN QUERY SELECT u.id, u.email, u.role, u.is_active, u.organization_id, u.email_claimed_at
                       FROM users u WHERE u.id = uid;
        RETURN;
    END IF;
    SELECT u.id, u.email_claimed_at INTO holder_id, holder_claimed FROM users u
     WHERE lower(u.email) = lower(wanted) AND u.id <> uid
     FOR UPDATE;
    IF holder_id IS NOT NULL AND (holder_claimed IS NULL OR holder_claimed < claimed) THEN
        UPDATE users SET email = NULL, email_released_at = now() WHERE id = holder_id;
        INSERT INTO audit_log (user_id, action, entity_type, entity_id, severity, metadata)
            VALUES (uid, 'user.email_released', 'user', holder_id::text, 'medium',
                    jsonb_build_object('releasedFrom', holder_id, 'claimedBy', uid));
        holder_id := NULL;
    END IF;
    IF holder_id IS NULL THEN
        BEGIN
            UPDATE users SET email = wanted, email_claimed_at = claimed, email_released_at = NULL WHERE id = uid;
        EXCEPTION WHEN unique_violation THEN
            -- Claimed in the meantime by a transaction this one could not see: that claim stands, and this
            -- row goes on without the address until a later token claims it again.
            NULL;
        END;
    END IF;
    RETURN QUERY SELECT u.id, u.email, u.role, u.is_active, u.organization_id, u.email_claimed_at
                   FROM users u WHERE u.id = uid;
END
$$;

REVOKE ALL ON FUNCTION claim_current_user(text, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION claim_current_user(text, timestamptz) TO intellifill_app;

-- The binary provisions through claim_current_user only. The runtime role's own INSERT (id, email) on users
-- and its users_self_insert policy stay for the previous binary during a rolling deploy (expand); a later
-- migration removes them (contract, docs/DEPLOY.md 5.3).
