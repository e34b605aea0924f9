-- 0007 audit digests: tamper evidence for audit_log (docs/ARCHITECTURE.md, "Audit sealing").
--
-- Every row records the id of the transaction that wrote it (txid, 64-bit, never wraps). The server's sealer
-- takes the rows whose writing transactions are all finished (txid below the xmin of its snapshot: rows
-- written inside request transactions commit in any order, so neither ids nor created_at are a safe cursor),
-- hashes each row's canonical content and appends a digest signed with a key the database never holds. Each
-- digest names the previous digest's hash and the transaction-id range it covers, so the digests form one
-- chain and the ranges tile the whole history without gaps.
--
-- Written to apply whether audit_log is a plain or a partitioned table: ADD COLUMN and CREATE INDEX on the
-- parent reach every partition, present and future.

ALTER TABLE audit_log ADD COLUMN txid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX audit_log_txid_idx ON audit_log (txid);

CREATE TABLE audit_digests (
    seq           bigint PRIMARY KEY CHECK (seq > 0),
    prev_hash     bytea NOT NULL,        -- SHA-256 of the previous digest's signed payload (zeros for seq 1)
    from_xid      bigint NOT NULL,       -- covered rows: from_xid <= txid < to_xid
    to_xid        bigint NOT NULL,
    first_created timestamptz NOT NULL,  -- earliest and latest created_at of the entries (range look-ups)
    last_created  timestamptz NOT NULL,
    row_count     integer NOT NULL,
    entries       bytea NOT NULL,        -- per row: id, created_at, organization tag, retention class, hash
    entries_hash  bytea NOT NULL,        -- SHA-256 of entries (signed, so headers verify without entries)
    sealed_at     timestamptz NOT NULL,
    key_id        text NOT NULL,         -- which public key verifies the signature (rotation)
    signature     bytea NOT NULL         -- Ed25519 over the payload (seq .. key_id)
);

-- The runtime role appends and reads digests; it can neither change nor remove one.
GRANT SELECT, INSERT ON audit_digests TO intellifill_app;
ALTER TABLE audit_digests ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_digests FORCE ROW LEVEL SECURITY;
CREATE POLICY owner_maintenance ON audit_digests TO CURRENT_USER USING (true) WITH CHECK (true);
CREATE POLICY digest_append ON audit_digests FOR INSERT TO intellifill_app WITH CHECK (true);
CREATE POLICY digest_read ON audit_digests FOR SELECT TO intellifill_app USING (true);

-- The sealer's read: rows of a transaction-id range, in (txid, id) order, as canonical-ready JSON without
-- txid (not content: the database sets it). The runtime role sees no audit row without a user context, so
-- this runs as the owner; it only reads, and timestamps render in UTC whatever the session's zone.
CREATE FUNCTION audit_seal_rows(after_xid bigint, below_xid bigint, max_rows integer)
    RETURNS TABLE (txid bigint, doc text)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp SET "TimeZone" = 'UTC'
    AS $$
        SELECT a.txid::text::bigint, (to_jsonb(a) - 'txid')::text
          FROM audit_log a
         WHERE a.txid >= after_xid::text::xid8 AND a.txid < below_xid::text::xid8
         ORDER BY a.txid, a.id
         LIMIT max_rows
    $$;

REVOKE ALL ON FUNCTION audit_seal_rows(bigint, bigint, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_seal_rows(bigint, bigint, integer) TO intellifill_app;
