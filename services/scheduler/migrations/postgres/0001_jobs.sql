-- The job queue: jobs, their logs, and the workers that run them.
-- Statuses are Docker Trusted Registry's (DESIGN.md section 4).

CREATE TABLE workers (
    id                   uuid PRIMARY KEY,
    name                 text NOT NULL,
    version              text NOT NULL,
    status               text NOT NULL
        CHECK (status IN ('alive', 'draining', 'dead', 'offline')),
    -- Capacity per kind as the worker declared it: {"sleep": 4}.
    capacity             jsonb NOT NULL,
    -- Bumped on every (re)connection; fences writes of superseded streams.
    session_epoch        bigint NOT NULL DEFAULT 1,
    created_at           timestamptz NOT NULL DEFAULT now(),
    connected_at         timestamptz NOT NULL DEFAULT now(),
    last_heartbeat       timestamptz NOT NULL DEFAULT now(),
    heartbeat_expiration timestamptz NOT NULL
);

-- The reaper scans only live workers by expiry.
CREATE INDEX workers_expiration ON workers (heartbeat_expiration)
    WHERE status IN ('alive', 'draining');

CREATE TABLE jobs (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind         text NOT NULL,
    args         jsonb NOT NULL DEFAULT '{}',
    status       text NOT NULL DEFAULT 'waiting'
        CHECK (status IN ('waiting', 'running', 'done', 'error', 'cancel_request', 'cancel',
                          'deleted', 'worker_dead', 'worker_shutdown', 'worker_resurrection')),
    priority     integer NOT NULL DEFAULT 0,
    scheduled_at timestamptz NOT NULL DEFAULT now(),
    -- Claims so far; the fencing token of every update.
    attempt      integer NOT NULL DEFAULT 0,
    max_attempts integer NOT NULL DEFAULT 3 CHECK (max_attempts > 0),
    -- Claims that ended with the worker draining and giving the job back;
    -- they do not count against max_attempts.
    given_back   integer NOT NULL DEFAULT 0,
    worker_id    uuid,
    created_at   timestamptz NOT NULL DEFAULT now(),
    claimed_at   timestamptz,
    started_at   timestamptz,
    heartbeat_at timestamptz,
    finished_at  timestamptz,
    progress     real NOT NULL DEFAULT 0,
    last_error   text,
    -- [{"attempt": n, "error": "...", "at": "..."}], one per failed attempt.
    errors       jsonb NOT NULL DEFAULT '[]',
    result       jsonb,
    unique_key   text,
    parent_id    bigint REFERENCES jobs (id) ON DELETE SET NULL,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- Serves the claim: due jobs of a kind in priority order.
CREATE INDEX jobs_claimable ON jobs (kind, priority DESC, scheduled_at, id)
    WHERE status IN ('waiting', 'worker_dead', 'worker_shutdown');

-- At most one non-terminal job per unique key.
CREATE UNIQUE INDEX jobs_unique_key ON jobs (unique_key)
    WHERE unique_key IS NOT NULL
      AND status IN ('waiting', 'running', 'cancel_request', 'worker_dead',
                     'worker_shutdown', 'worker_resurrection');

-- What a worker runs: resume, drain and reaping.
CREATE INDEX jobs_running_worker ON jobs (worker_id)
    WHERE status IN ('running', 'cancel_request', 'worker_resurrection');

-- Listing by status, newest first.
CREATE INDEX jobs_status_id ON jobs (status, id);

CREATE TABLE job_logs (
    job_id     bigint NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt    integer NOT NULL,
    seq        integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    times      timestamptz[] NOT NULL,
    lines      text[] NOT NULL,
    PRIMARY KEY (job_id, attempt, seq)
);

-- Wakes dispatchers on every replica when a job becomes claimable.
CREATE FUNCTION notify_job_claimable() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('regsweep_jobs', NEW.kind);
    RETURN NULL;
END;
$$;

CREATE TRIGGER jobs_claimable_notify
    AFTER INSERT OR UPDATE OF status ON jobs
    FOR EACH ROW
    WHEN (NEW.status IN ('waiting', 'worker_dead', 'worker_shutdown'))
    EXECUTE FUNCTION notify_job_claimable();
