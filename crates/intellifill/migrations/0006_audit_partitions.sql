-- 0006 audit partitions: audit_log partitioned by retention class, then by month, so that retention drops
-- whole partitions and never deletes rows one by one.
--
--   audit_log                          PARTITION BY LIST (retention_class)
--     audit_log_security               PARTITION BY RANGE (created_at): auth.*, security.*, user.*, audit.*
--       audit_log_security_202612      one month, [2026-12-01, 2027-01-01) UTC
--       audit_log_security_default     anything no month covers (normally empty)
--     audit_log_write                  (same shape): data changes (POST, PUT, PATCH, DELETE)
--     audit_log_read                   (same shape): routine reads (GET, HEAD, OPTIONS)
--
-- The server creates months ahead (`audit_partitions_ensure`, under a transaction-level advisory lock, so any
-- number of instances may call it, through PgBouncer too); an insert no month covers lands in its class's
-- DEFAULT partition and is never refused, and the next maintenance run moves it into a month of its own.
-- Retention (`intellifill audit retention`, owner only) detaches and drops months older than the class's
-- retention and records each drop in audit_retention_log. The runtime role keeps INSERT and policed SELECT on
-- audit_log only: it has no grant on any partition, and no UPDATE, DELETE or TRUNCATE anywhere.
--
-- Conversion: the rows are copied into the new table (time proportional to their number, under the
-- migration's transaction; docs/DEPLOY.md "Audit retention and partitions").

SET LOCAL lock_timeout = '5s';

-- The retention class of an audit row, from what every caller already passes.
CREATE FUNCTION audit_retention_class(action text, method text, severity text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
        SELECT CASE
            WHEN severity IS NOT NULL
              OR action LIKE 'auth.%' OR action LIKE 'security.%' OR action LIKE 'user.%' OR action LIKE 'audit.%'
                THEN 'security'
            WHEN upper(method) IN ('GET', 'HEAD', 'OPTIONS') THEN 'read'
            ELSE 'write'
        END
    $$;

ALTER TABLE audit_log RENAME TO audit_log_unpartitioned;
ALTER INDEX audit_log_pkey RENAME TO audit_log_unpartitioned_pkey;

-- Same columns in the same order; `retention_class` last. A direct INSERT that does not name the class (the
-- SECURITY DEFINER helpers of 0005) gets `security`, the longest-kept class: never shorter than intended.
-- The primary key must hold every partition key column; replays carry the same id, time and class.
CREATE TABLE audit_log (
    id              uuid NOT NULL DEFAULT gen_random_uuid(),
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
    created_at      timestamptz NOT NULL DEFAULT now(),
    severity        text CONSTRAINT audit_log_severity_check CHECK (severity IS NULL OR severity IN ('low', 'medium', 'high', 'critical')),
    retention_class text NOT NULL DEFAULT 'security' CONSTRAINT audit_log_retention_class_check CHECK (retention_class IN ('security', 'write', 'read')),
    PRIMARY KEY (id, created_at, retention_class)
) PARTITION BY LIST (retention_class);

CREATE TABLE audit_log_security PARTITION OF audit_log FOR VALUES IN ('security') PARTITION BY RANGE (created_at);
CREATE TABLE audit_log_write PARTITION OF audit_log FOR VALUES IN ('write') PARTITION BY RANGE (created_at);
CREATE TABLE audit_log_read PARTITION OF audit_log FOR VALUES IN ('read') PARTITION BY RANGE (created_at);
CREATE TABLE audit_log_security_default PARTITION OF audit_log_security DEFAULT;
CREATE TABLE audit_log_write_default PARTITION OF audit_log_write DEFAULT;
CREATE TABLE audit_log_read_default PARTITION OF audit_log_read DEFAULT;

-- Detached partitions kept for archiving (`audit retention --keep-detached`): the owner's alone.
CREATE SCHEMA audit_archive;
REVOKE ALL ON SCHEMA audit_archive FROM PUBLIC;

-- Every retention drop: every row of `class` created before `cutoff` may have been removed by policy.
CREATE TABLE audit_retention_log (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    class      text NOT NULL CHECK (class IN ('security', 'write', 'read')),
    cutoff     timestamptz NOT NULL,
    dropped_at timestamptz NOT NULL DEFAULT now(),
    rows       bigint NOT NULL,
    partitions text[] NOT NULL,
    -- `dropped` (gone) or `detached` (moved to schema audit_archive, to be archived and dropped by hand).
    disposition text NOT NULL DEFAULT 'dropped' CHECK (disposition IN ('dropped', 'detached'))
);
CREATE INDEX audit_retention_log_class_idx ON audit_retention_log (class, cutoff DESC);

-- The month partition of `class` that starts at `month` (UTC), created when missing; rows of that month
-- waiting in the class's DEFAULT partition move into it. Created as a plain table and attached, which takes
-- SHARE UPDATE EXCLUSIVE on the class table (inserts and reads go on) instead of the ACCESS EXCLUSIVE of
-- CREATE TABLE ... PARTITION OF. Returns whether it created the partition.
CREATE FUNCTION audit_partition_create(cls text, month_start timestamptz) RETURNS boolean
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp SET TimeZone = 'UTC'
    AS $$
DECLARE
    parent text := 'audit_log_' || cls;
    start timestamptz := date_trunc('month', month_start);
    stop timestamptz := date_trunc('month', month_start) + interval '1 month';
    leaf text := 'audit_log_' || cls || '_' || to_char(date_trunc('month', month_start), 'YYYYMM');
BEGIN
    IF cls IS NULL OR cls NOT IN ('security', 'write', 'read') THEN
        RAISE EXCEPTION 'unknown retention class %', cls USING ERRCODE = '22023';
    END IF;
    IF to_regclass(leaf) IS NOT NULL THEN
        RETURN false;
    END IF;
    EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', leaf, parent);
    -- Lets ATTACH skip scanning the new table for rows outside its range.
    EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I CHECK (retention_class = %L AND created_at >= %L AND created_at < %L)',
                   leaf, leaf || '_range', cls, start, stop);
    EXECUTE format('WITH moved AS (DELETE FROM %I WHERE created_at >= %L AND created_at < %L RETURNING *)
                    INSERT INTO %I SELECT * FROM moved', parent || '_default', start, stop, leaf);
    EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', parent, leaf, start, stop);
    EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', leaf, leaf || '_range');
    RETURN true;
END
$$;

-- The newest retention cutoff recorded for `class` (rows before it are expired by policy), or -infinity.
CREATE FUNCTION audit_retention_cutoff(cls text) RETURNS timestamptz
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$ SELECT coalesce(max(l.cutoff), '-infinity') FROM audit_retention_log l WHERE l.class = cls $$;

-- Partition maintenance, as the server runs it (any instance, any number at once): months from the current
-- one to `months_ahead` ahead, for every class, and a month for any row waiting in a DEFAULT partition that
-- retention has not expired. Serialised by a transaction-level advisory lock (PgBouncer-safe: it ends with
-- the statement's transaction). Returns how many partitions it created, the rows still in DEFAULT
-- partitions, and the end of the covered range (the earliest, over the classes, of their last month's end).
CREATE FUNCTION audit_partitions_ensure(months_ahead integer)
    RETURNS TABLE (created integer, default_rows bigint, covered_until timestamptz)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = public, pg_temp SET TimeZone = 'UTC' SET lock_timeout = '5s'
    AS $$
DECLARE
    cls text;
    m timestamptz;
    made integer := 0;
    this_month timestamptz := date_trunc('month', now());
BEGIN
    IF months_ahead IS NULL OR months_ahead < 1 OR months_ahead > 24 THEN
        RAISE EXCEPTION 'months_ahead must be between 1 and 24, got %', months_ahead USING ERRCODE = '22023';
    END IF;
    PERFORM pg_advisory_xact_lock(7523049161250431488);   -- 'audit_partitions'
    FOREACH cls IN ARRAY ARRAY['security', 'write', 'read'] LOOP
        FOR i IN 0..months_ahead LOOP
            IF audit_partition_create(cls, this_month + make_interval(months => i)) THEN
                made := made + 1;
            END IF;
        END LOOP;
        FOR m IN EXECUTE format('SELECT DISTINCT date_trunc(''month'', created_at) FROM %I WHERE created_at >= $1',
                                'audit_log_' || cls || '_default')
                 USING audit_retention_cutoff(cls) LOOP
            IF audit_partition_create(cls, m) THEN
                made := made + 1;
            END IF;
        END LOOP;
    END LOOP;
    RETURN QUERY
        SELECT made,
               (SELECT count(*) FROM audit_log_security_default) + (SELECT count(*) FROM audit_log_write_default)
                 + (SELECT count(*) FROM audit_log_read_default),
               (SELECT min(b.last_end) FROM (
                    SELECT max(substring(pg_get_expr(c.relpartbound, c.oid) FROM 'TO \(''([^'']+)''\)')::timestamptz)
                           AS last_end
                      FROM pg_inherits i
                      JOIN pg_class c ON c.oid = i.inhrelid
                     WHERE i.inhparent IN ('audit_log_security'::regclass, 'audit_log_write'::regclass,
                                           'audit_log_read'::regclass)
                     GROUP BY i.inhparent) b);
END
$$;

-- Retention of one class (owner only, `intellifill audit retention`): every month partition that ends at or
-- before `cutoff` (the month boundary at or before now - keep_days) is detached, then dropped or moved to the
-- audit_archive schema, and the expired rows waiting in the DEFAULT partition are deleted (a replayed event
-- older than its class's retention: few). One audit_retention_log row records what went. `dry_run` reports
-- and changes nothing. Runs as the caller (not SECURITY DEFINER): the runtime role cannot run it.
CREATE FUNCTION audit_retention_apply(cls text, keep_days integer, keep_detached boolean, dry_run boolean)
    RETURNS TABLE (leaf text, leaf_rows bigint, leaf_end timestamptz)
    LANGUAGE plpgsql VOLATILE SET search_path = public, pg_temp SET TimeZone = 'UTC' SET lock_timeout = '5s'
    AS $$
DECLARE
    parent text := 'audit_log_' || cls;
    cutoff timestamptz;
    r record;
    n bigint;
    names text[] := '{}';
    total bigint := 0;
BEGIN
    IF cls IS NULL OR cls NOT IN ('security', 'write', 'read') THEN
        RAISE EXCEPTION 'unknown retention class %', cls USING ERRCODE = '22023';
    END IF;
    IF keep_days IS NULL OR keep_days < 1 THEN
        RAISE EXCEPTION 'keep_days must be at least 1, got %', keep_days USING ERRCODE = '22023';
    END IF;
    cutoff := date_trunc('month', now() - make_interval(days => keep_days));
    -- Not while maintenance moves rows out of the DEFAULT partition.
    PERFORM pg_advisory_xact_lock(7523049161250431488);
    FOR r IN SELECT p.name, p.range_end FROM (
                 SELECT c.relname::text AS name,
                        substring(pg_get_expr(c.relpartbound, c.oid) FROM 'TO \(''([^'']+)''\)')::timestamptz AS range_end
                   FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                  WHERE i.inhparent = parent::regclass) p
              WHERE p.range_end <= cutoff
              ORDER BY p.range_end LOOP
        EXECUTE format('SELECT count(*) FROM %I', r.name) INTO n;
        IF NOT dry_run THEN
            EXECUTE format('ALTER TABLE %I DETACH PARTITION %I', parent, r.name);
            IF keep_detached THEN
                EXECUTE format('ALTER TABLE %I SET SCHEMA audit_archive', r.name);
            ELSE
                EXECUTE format('DROP TABLE %I', r.name);
            END IF;
        END IF;
        names := names || r.name;
        total := total + n;
        leaf := r.name; leaf_rows := n; leaf_end := r.range_end;
        RETURN NEXT;
    END LOOP;
    IF dry_run THEN
        EXECUTE format('SELECT count(*) FROM %I WHERE created_at < $1', parent || '_default') USING cutoff INTO n;
    ELSE
        EXECUTE format('DELETE FROM %I WHERE created_at < $1', parent || '_default') USING cutoff;
        GET DIAGNOSTICS n = ROW_COUNT;
    END IF;
    IF n > 0 THEN
        names := names || (parent || '_default');
        total := total + n;
        leaf := parent || '_default'; leaf_rows := n; leaf_end := cutoff;
        RETURN NEXT;
    END IF;
    IF NOT dry_run AND cardinality(names) > 0 THEN
        INSERT INTO audit_retention_log (class, cutoff, rows, partitions, disposition)
            VALUES (cls, cutoff, total, names, CASE WHEN keep_detached THEN 'detached' ELSE 'dropped' END);
    END IF;
END
$$;

-- The existing rows: a month for each (class, month) they need, then the copy.
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT DISTINCT audit_retention_class(action, method, severity) AS class,
                             date_trunc('month', created_at, 'UTC') AS month
               FROM audit_log_unpartitioned LOOP
        PERFORM audit_partition_create(r.class, r.month);
    END LOOP;
END
$$;
SELECT audit_partitions_ensure(3);

INSERT INTO audit_log (id, user_id, organization_id, action, entity_type, entity_id, request_id, method, path,
                       status, duration_ms, ip, user_agent, metadata, created_at, severity, retention_class)
SELECT id, user_id, organization_id, action, entity_type, entity_id, request_id, method, path, status,
       duration_ms, ip, user_agent, metadata, created_at, severity, audit_retention_class(action, method, severity)
  FROM audit_log_unpartitioned;
DROP TABLE audit_log_unpartitioned;

-- Indexes (created on every partition, present and future). The keyset pages of the audit endpoints read
-- (organization_id | user_id | nothing, created_at DESC, id DESC) in one index each.
CREATE INDEX audit_log_org_time_idx ON audit_log (organization_id, created_at DESC, id DESC);
CREATE INDEX audit_log_user_time_idx ON audit_log (user_id, created_at DESC, id DESC);
CREATE INDEX audit_log_time_idx ON audit_log (created_at DESC, id DESC);
CREATE INDEX audit_log_security_idx ON audit_log (created_at DESC) WHERE severity IS NOT NULL;

-- Row-level security and grants as before (0001, 0002): FORCE, the owner's maintenance policy, append for the
-- runtime role, reads for org admins and platform admins.
ALTER TABLE audit_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_log FORCE ROW LEVEL SECURITY;
CREATE POLICY owner_maintenance ON audit_log TO CURRENT_USER USING (true) WITH CHECK (true);
CREATE POLICY audit_append ON audit_log FOR INSERT TO intellifill_app WITH CHECK (true);
CREATE POLICY audit_org_admin_read ON audit_log FOR SELECT TO intellifill_app
    USING (organization_id = (SELECT current_member_org_id()) AND (SELECT current_member_rank()) >= 3);
CREATE POLICY audit_platform_admin_read ON audit_log FOR SELECT TO intellifill_app
    USING ((SELECT current_user_is_platform_admin()));
GRANT INSERT, SELECT ON audit_log TO intellifill_app;

-- Same signature; the class is derived here so that no caller changes. Replays are idempotent on the
-- primary key (id, created_at, retention_class): a replayed row carries all three unchanged.
CREATE OR REPLACE FUNCTION audit_append(
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
                           method, path, status, duration_ms, ip, user_agent, severity, metadata, retention_class)
    SELECT u.*, audit_retention_class(u.action, u.method, u.severity)
      FROM unnest(ids, created, user_ids, org_ids, actions, entity_types, entity_ids, request_ids, methods,
                  paths, statuses, durations, ips, agents, severities, metas)
           AS u (id, created_at, user_id, organization_id, action, entity_type, entity_id, request_id, method,
                 path, status, duration_ms, ip, user_agent, severity, metadata)
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS inserted = ROW_COUNT;
    RETURN inserted;
END
$$;

REVOKE ALL ON FUNCTION audit_retention_class(text, text, text), audit_partition_create(text, timestamptz),
    audit_retention_cutoff(text), audit_partitions_ensure(integer),
    audit_retention_apply(text, integer, boolean, boolean) FROM PUBLIC;
-- Creating partitions ahead only ever adds empty tables (or moves rows into them): the runtime role may.
GRANT EXECUTE ON FUNCTION audit_partitions_ensure(integer) TO intellifill_app;
