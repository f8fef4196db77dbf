-- The bytes the last completed cleanup plan of a repository frees (the
-- job result's `reclaim.bytes`): what `repositories list` shows. Copied
-- when the job ends done with a plan (not `unfinished`); a data copy
-- only, no decision. Capped at bigint: the sizes come from manifests.
ALTER TABLE repositories ADD COLUMN last_reclaimable_bytes bigint NOT NULL DEFAULT 0;

CREATE FUNCTION cleanup_reclaim() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE repositories
    SET last_reclaimable_bytes = LEAST(
            COALESCE((NEW.result -> 'reclaim' ->> 'bytes')::numeric, 0), 9223372036854775807
        )::bigint
    WHERE cleanup_job_id = NEW.id;
    RETURN NULL;
END;
$$;

CREATE TRIGGER jobs_cleanup_reclaim
    AFTER UPDATE OF status ON jobs
    FOR EACH ROW
    WHEN (NEW.kind = 'tag_cleanup' AND NEW.status = 'done'
          AND NEW.result ->> 'outcome' IS DISTINCT FROM 'unfinished'
          AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION cleanup_reclaim();
