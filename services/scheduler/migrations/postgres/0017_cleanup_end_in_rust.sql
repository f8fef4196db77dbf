-- How a repository's cleanup ends is decided in Rust
-- (`store::cleanup_end`), by the leader's selection tick, which closes
-- every `ongoing` cleanup whose job ended. What stays here is the wake-up:
-- a tag_cleanup job's end notifies the leader so that the tick runs at
-- once, as `jobs_claimable_notify` wakes dispatchers. The copy of the
-- plan's reclaimable bytes moves to the same step.
CREATE OR REPLACE FUNCTION cleanup_ended() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('regsweep_cleanups', NEW.id::text);
    RETURN NULL;
END;
$$;

DROP TRIGGER jobs_cleanup_reclaim ON jobs;
DROP FUNCTION cleanup_reclaim();
