-- The bytes the last completed cleanup plan of a repository frees (the
-- job result's `reclaim.bytes`): what `repositories list` shows. Copied
-- when the job ends done with a plan (not `unfinished`); a data copy
-- only, no decision. CAST saturates at the integer's range.
ALTER TABLE repositories ADD COLUMN last_reclaimable_bytes INTEGER NOT NULL DEFAULT 0;

CREATE TRIGGER jobs_cleanup_reclaim
    AFTER UPDATE OF status ON jobs
    FOR EACH ROW
    WHEN NEW.kind = 'tag_cleanup' AND NEW.status = 'done' AND OLD.status IS NOT NEW.status
         AND NEW.result ->> '$.outcome' IS NOT 'unfinished'
BEGIN
    UPDATE repositories
    SET last_reclaimable_bytes = CAST(coalesce(NEW.result ->> '$.reclaim.bytes', 0) AS INTEGER)
    WHERE cleanup_job_id = NEW.id;
END;
