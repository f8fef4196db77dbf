-- Registries, cleanup policies, repositories, and the limited-capacity
-- selection of repositories due for cleanup (DESIGN.md section 5).

CREATE TABLE registries (
    id                     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                   text NOT NULL UNIQUE,
    url                    text NOT NULL,
    -- Where workers find the credentials ({"username": .., "password_file": ..});
    -- never a secret.
    credentials            jsonb NOT NULL DEFAULT '{}',
    rate_limit             double precision NOT NULL DEFAULT 0 CHECK (rate_limit >= 0),
    max_parallel_deletions integer NOT NULL DEFAULT 0 CHECK (max_parallel_deletions >= 0),
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE policies (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                text NOT NULL UNIQUE,
    registry_id         bigint NOT NULL REFERENCES registries (id),
    repository_selector text NOT NULL,
    cadence             text NOT NULL,
    keep_n              integer NOT NULL DEFAULT 0 CHECK (keep_n >= 0),
    older_than_seconds  bigint NOT NULL DEFAULT 0 CHECK (older_than_seconds >= 0),
    name_regex_delete   text NOT NULL DEFAULT '',
    name_regex_keep     text NOT NULL DEFAULT '',
    dry_run             boolean NOT NULL DEFAULT false,
    enabled             boolean NOT NULL DEFAULT true,
    next_run_at         timestamptz NOT NULL,
    -- The run (a past next_run_at) whose repositories were marked
    -- `scheduled`. Equal to next_run_at while that run is in progress.
    armed_run_at        timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

-- The leader finds due policies without scanning them all.
CREATE INDEX policies_due ON policies (next_run_at) WHERE enabled;
CREATE INDEX policies_registry ON policies (registry_id, id);

CREATE TABLE repositories (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    registry_id         bigint NOT NULL REFERENCES registries (id) ON DELETE CASCADE,
    name                text NOT NULL,
    policy_id           bigint REFERENCES policies (id) ON DELETE SET NULL,
    cleanup_status      text NOT NULL DEFAULT 'unscheduled'
        CHECK (cleanup_status IN ('unscheduled', 'scheduled', 'unfinished', 'ongoing')),
    cleanup_started_at  timestamptz,
    cleanup_finished_at timestamptz,
    -- The job of the cleanup in progress (or the last one): only its end
    -- may change the repository's status.
    cleanup_job_id      bigint,
    last_deleted_count  bigint NOT NULL DEFAULT 0,
    last_error          text,
    -- The catalog_sync job that last saw the repository.
    last_sync_job_id    bigint,
    created_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (registry_id, name)
);

-- The selection's pick, in its order: due (`scheduled`) before
-- `unfinished`, never-run first, then longest waiting. The pick reads
-- `capacity` entries of this index whatever the table's size.
CREATE INDEX repositories_pick
    ON repositories ((cleanup_status = 'unfinished'), cleanup_started_at NULLS FIRST, id)
    WHERE cleanup_status IN ('scheduled', 'unfinished');

-- Running cleanups: counted for the free capacity, scanned for stale ones.
CREATE INDEX repositories_ongoing ON repositories (cleanup_started_at)
    WHERE cleanup_status = 'ongoing';

-- Marking a due policy's repositories, and checking whether its run is
-- complete.
CREATE INDEX repositories_policy ON repositories (policy_id, cleanup_status);

-- When a tag_cleanup job ends, its repository leaves `ongoing`:
-- `unfinished` when the worker ran out of its time budget, `scheduled`
-- again when its policy's current run began after this cleanup started
-- (it was busy when the run was marked), else `unscheduled`. A
-- notification wakes the leader to refill the freed slot.
CREATE FUNCTION cleanup_ended() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE repositories r SET
        cleanup_status = CASE
            WHEN NEW.status = 'done' AND NEW.result ->> 'outcome' = 'unfinished' THEN 'unfinished'
            WHEN EXISTS (
                SELECT 1 FROM policies p
                WHERE p.id = r.policy_id AND p.enabled
                  AND p.armed_run_at = p.next_run_at
                  AND r.cleanup_started_at < p.next_run_at
            ) THEN 'scheduled'
            ELSE 'unscheduled'
        END,
        -- The wall clock, not the transaction start: a selection that
        -- sees this commit starts its cleanups strictly after it.
        cleanup_finished_at = clock_timestamp(),
        -- Added: the scrubber may report deletions before the job ends.
        last_deleted_count = r.last_deleted_count + CASE
            WHEN NEW.status = 'done' THEN COALESCE((NEW.result ->> 'deleted_count')::bigint, 0)
            ELSE 0
        END,
        last_error = CASE
            WHEN NEW.status = 'done' THEN NULL
            WHEN NEW.status = 'error' THEN COALESCE(NEW.last_error, 'failed')
            ELSE 'cleanup ' || NEW.status
        END
    WHERE r.cleanup_job_id = NEW.id AND r.cleanup_status = 'ongoing';
    PERFORM pg_notify('regsweep_cleanups', NEW.id::text);
    RETURN NULL;
END;
$$;

CREATE TRIGGER jobs_cleanup_ended
    AFTER UPDATE OF status ON jobs
    FOR EACH ROW
    WHEN (NEW.kind = 'tag_cleanup'
          AND NEW.status IN ('done', 'error', 'cancel', 'deleted')
          AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION cleanup_ended();
