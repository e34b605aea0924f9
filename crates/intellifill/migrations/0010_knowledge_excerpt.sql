-- 0010: knowledge sources keep their list excerpt, so a page does not cut every row's content on every read.
--
-- `excerpt` is the first 280 characters of `content` (`api::knowledge::EXCERPT_CHARS`), set by a trigger on
-- insert and on every change of `content`; the runtime role cannot write it (its column grants stay `title`,
-- `content`). Cutting UTF-8 text walks it character by character: ~35 µs of Postgres CPU per 20-row page
-- (docs/PERFORMANCE.md, "Database work per request"), paid once per write instead.
--
-- Expand only: the column is nullable and rows written before this migration keep NULL until backfilled; the
-- server reads `coalesce(excerpt, left(content, 280))`, the same answer either way, and the previous binary
-- ignores the column. Backfill in batches as the owner (DEPLOY 5.3); `updated_at` stays, because the touch
-- trigger now fires only when a user-visible column is in the update:
--   UPDATE knowledge_sources SET excerpt = left(content, 280)
--    WHERE id IN (SELECT id FROM knowledge_sources WHERE excerpt IS NULL LIMIT 1000);   -- until 0 rows

SET LOCAL lock_timeout = '5s';

ALTER TABLE knowledge_sources ADD COLUMN excerpt text;

CREATE FUNCTION knowledge_set_excerpt() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.excerpt := left(NEW.content, 280);
    RETURN NEW;
END
$$;

CREATE TRIGGER knowledge_excerpt BEFORE INSERT OR UPDATE OF content ON knowledge_sources
    FOR EACH ROW EXECUTE FUNCTION knowledge_set_excerpt();

DROP TRIGGER knowledge_touch ON knowledge_sources;
CREATE TRIGGER knowledge_touch BEFORE UPDATE OF title, content ON knowledge_sources
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
