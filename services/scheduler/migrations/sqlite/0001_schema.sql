-- The scheduler's schema on SQLite: the same tables, states and rules as
-- the PostgreSQL migrations (which document each column), in SQLite's
-- terms. Times are integer microseconds since the Unix epoch (they compare
-- and add exactly); JSON documents and arrays are JSON text; ids are
-- never reused (AUTOINCREMENT), as with PostgreSQL identities.

CREATE TABLE workers (
    id                   BLOB PRIMARY KEY,
    name                 TEXT NOT NULL,
    version              TEXT NOT NULL,
    status               TEXT NOT NULL
        CHECK (status IN ('alive', 'draining', 'dead', 'offline')),
    capacity             TEXT NOT NULL,
    capacity_override    TEXT NOT NULL DEFAULT '{}',
    session_epoch        INTEGER NOT NULL DEFAULT 1,
    created_at           INTEGER NOT NULL,
    connected_at         INTEGER NOT NULL,
    last_heartbeat       INTEGER NOT NULL,
    heartbeat_expiration INTEGER NOT NULL
) STRICT;

CREATE INDEX workers_expiration ON workers (heartbeat_expiration)
    WHERE status IN ('alive', 'draining');

CREATE TABLE jobs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    kind         TEXT NOT NULL,
    args         TEXT NOT NULL DEFAULT '{}',
    status       TEXT NOT NULL DEFAULT 'waiting'
        CHECK (status IN ('waiting', 'running', 'done', 'error', 'cancel_request', 'cancel',
                          'deleted', 'worker_dead', 'worker_shutdown', 'worker_resurrection')),
    priority     INTEGER NOT NULL DEFAULT 0,
    scheduled_at INTEGER NOT NULL,
    attempt      INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL DEFAULT 3 CHECK (max_attempts > 0),
    given_back   INTEGER NOT NULL DEFAULT 0,
    worker_id    BLOB,
    created_at   INTEGER NOT NULL,
    claimed_at   INTEGER,
    started_at   INTEGER,
    heartbeat_at INTEGER,
    finished_at  INTEGER,
    progress     REAL NOT NULL DEFAULT 0,
    last_error   TEXT,
    errors       TEXT NOT NULL DEFAULT '[]',
    result       TEXT,
    unique_key   TEXT,
    parent_id    INTEGER REFERENCES jobs (id) ON DELETE SET NULL,
    updated_at   INTEGER NOT NULL
) STRICT;

CREATE INDEX jobs_claimable ON jobs (kind, priority DESC, scheduled_at, id)
    WHERE status IN ('waiting', 'worker_dead', 'worker_shutdown');

CREATE UNIQUE INDEX jobs_unique_key ON jobs (unique_key)
    WHERE unique_key IS NOT NULL
      AND status IN ('waiting', 'running', 'cancel_request', 'worker_dead',
                     'worker_shutdown', 'worker_resurrection');

CREATE INDEX jobs_running_worker ON jobs (worker_id)
    WHERE status IN ('running', 'cancel_request', 'worker_resurrection');

CREATE INDEX jobs_status_id ON jobs (status, id);

CREATE INDEX jobs_finished ON jobs (finished_at)
    WHERE status IN ('done', 'error', 'cancel', 'deleted');

CREATE INDEX jobs_parent ON jobs (parent_id) WHERE parent_id IS NOT NULL;

-- A chunk's lines as a JSON array of [time_us, text] pairs.
CREATE TABLE job_logs (
    job_id     INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt    INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    lines      TEXT NOT NULL,
    PRIMARY KEY (job_id, attempt, seq)
) STRICT, WITHOUT ROWID;

CREATE TABLE leases (
    name        TEXT PRIMARY KEY,
    holder      BLOB NOT NULL,
    acquired_at INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE crons (
    name         TEXT PRIMARY KEY,
    schedule     TEXT NOT NULL,
    kind         TEXT NOT NULL,
    args         TEXT NOT NULL DEFAULT '{}',
    enabled      INTEGER NOT NULL DEFAULT 1,
    priority     INTEGER NOT NULL DEFAULT 0,
    next_fire_at INTEGER NOT NULL,
    last_fire_at INTEGER,
    last_job_id  INTEGER,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
) STRICT;

CREATE INDEX crons_due ON crons (next_fire_at) WHERE enabled;

CREATE TABLE registries (
    id                     INTEGER PRIMARY KEY AUTOINCREMENT,
    name                   TEXT NOT NULL UNIQUE,
    url                    TEXT NOT NULL,
    credentials            TEXT NOT NULL DEFAULT '{}',
    rate_limit             REAL NOT NULL DEFAULT 0 CHECK (rate_limit >= 0),
    max_parallel_deletions INTEGER NOT NULL DEFAULT 0 CHECK (max_parallel_deletions >= 0),
    created_at             INTEGER NOT NULL,
    updated_at             INTEGER NOT NULL
) STRICT;

CREATE TABLE policies (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    name                TEXT NOT NULL UNIQUE,
    registry_id         INTEGER NOT NULL REFERENCES registries (id),
    repository_selector TEXT NOT NULL,
    cadence             TEXT NOT NULL,
    keep_n              INTEGER NOT NULL DEFAULT 0 CHECK (keep_n >= 0),
    older_than_seconds  INTEGER NOT NULL DEFAULT 0 CHECK (older_than_seconds >= 0),
    name_regex_delete   TEXT NOT NULL DEFAULT '',
    name_regex_keep     TEXT NOT NULL DEFAULT '',
    dry_run             INTEGER NOT NULL DEFAULT 0,
    enabled             INTEGER NOT NULL DEFAULT 1,
    next_run_at         INTEGER NOT NULL,
    armed_run_at        INTEGER,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL
) STRICT;

CREATE INDEX policies_due ON policies (next_run_at) WHERE enabled;
CREATE INDEX policies_registry ON policies (registry_id, id);

CREATE TABLE repositories (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    registry_id         INTEGER NOT NULL REFERENCES registries (id) ON DELETE CASCADE,
    name                TEXT NOT NULL,
    policy_id           INTEGER REFERENCES policies (id) ON DELETE SET NULL,
    cleanup_status      TEXT NOT NULL DEFAULT 'unscheduled'
        CHECK (cleanup_status IN ('unscheduled', 'scheduled', 'unfinished', 'ongoing')),
    cleanup_started_at  INTEGER,
    cleanup_finished_at INTEGER,
    cleanup_job_id      INTEGER,
    last_deleted_count  INTEGER NOT NULL DEFAULT 0,
    last_error          TEXT,
    last_sync_job_id    INTEGER,
    created_at          INTEGER NOT NULL,
    UNIQUE (registry_id, name)
) STRICT;

-- The selection's pick, in its order (NULLs sort first in SQLite).
CREATE INDEX repositories_pick
    ON repositories ((cleanup_status = 'unfinished'), cleanup_started_at, id)
    WHERE cleanup_status IN ('scheduled', 'unfinished');

CREATE INDEX repositories_ongoing ON repositories (cleanup_started_at)
    WHERE cleanup_status = 'ongoing';

CREATE INDEX repositories_policy ON repositories (policy_id, cleanup_status);

CREATE INDEX repositories_cleanup_job ON repositories (cleanup_job_id)
    WHERE cleanup_job_id IS NOT NULL;

-- When a tag_cleanup job ends, its repository leaves `ongoing` (the rules
-- of the PostgreSQL trigger `cleanup_ended`). The store announces the
-- freed slot itself after the commit.
CREATE TRIGGER jobs_cleanup_ended
    AFTER UPDATE OF status ON jobs
    FOR EACH ROW
    WHEN NEW.kind = 'tag_cleanup'
         AND NEW.status IN ('done', 'error', 'cancel', 'deleted')
         AND OLD.status IS NOT NEW.status
BEGIN
    UPDATE repositories SET
        cleanup_status = CASE
            WHEN NEW.status = 'done' AND NEW.result ->> '$.outcome' = 'unfinished' THEN 'unfinished'
            WHEN EXISTS (
                SELECT 1 FROM policies p
                WHERE p.id = repositories.policy_id AND p.enabled
                  AND p.armed_run_at = p.next_run_at
                  AND repositories.cleanup_started_at < p.next_run_at
            ) THEN 'scheduled'
            ELSE 'unscheduled'
        END,
        cleanup_finished_at = CAST(unixepoch('subsec') * 1000000 AS INTEGER),
        last_deleted_count = last_deleted_count + CASE
            WHEN NEW.status = 'done'
                THEN CAST(coalesce(NEW.result ->> '$.deleted_count', 0) AS INTEGER)
            ELSE 0
        END,
        last_error = CASE
            WHEN NEW.status = 'done' THEN NULL
            WHEN NEW.status = 'error' THEN coalesce(NEW.last_error, 'failed')
            ELSE 'cleanup ' || NEW.status
        END
    WHERE cleanup_job_id = NEW.id AND cleanup_status = 'ongoing';
END;
