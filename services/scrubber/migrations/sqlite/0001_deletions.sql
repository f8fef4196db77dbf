-- The scrubber's schema on SQLite: the PostgreSQL migrations' table (which
-- documents each column) in SQLite's terms. Times are integer
-- microseconds since the Unix epoch; tag lists are JSON arrays.

CREATE TABLE deletions (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    registry       TEXT NOT NULL,
    repository     TEXT NOT NULL,
    digest         TEXT NOT NULL,
    tags           TEXT NOT NULL,
    delete_digest  INTEGER NOT NULL,
    job_id         INTEGER NOT NULL,
    attempt        INTEGER NOT NULL,
    status         TEXT NOT NULL DEFAULT 'pending_delete'
        CHECK (status IN ('pending_delete', 'deleting', 'deleted', 'restored', 'failed')),
    submitted_at   INTEGER NOT NULL,
    delete_after   INTEGER NOT NULL,
    lease_holder   BLOB,
    lease_until    INTEGER,
    attempts       INTEGER NOT NULL DEFAULT 0,
    error          TEXT,
    deleted_tags   TEXT NOT NULL DEFAULT '[]',
    skipped_tags   TEXT NOT NULL DEFAULT '[]',
    digest_deleted INTEGER NOT NULL DEFAULT 0,
    finished_at    INTEGER,
    UNIQUE (job_id, attempt, digest)
) STRICT;

CREATE INDEX deletions_due ON deletions (delete_after, id) WHERE status = 'pending_delete';
CREATE INDEX deletions_leased ON deletions (lease_until) WHERE status = 'deleting';
CREATE INDEX deletions_status_id ON deletions (status, id);
CREATE INDEX deletions_job ON deletions (job_id, id);
