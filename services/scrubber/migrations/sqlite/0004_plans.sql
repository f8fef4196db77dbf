-- Verified plans and the blast-radius guard (see the PostgreSQL migration
-- of the same name for the columns). SQLite cannot change a CHECK
-- constraint, so the table is copied into one with the new statuses.
CREATE TABLE deletions_new (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    registry        TEXT NOT NULL,
    repository      TEXT NOT NULL,
    digest          TEXT NOT NULL,
    tags            TEXT NOT NULL,
    delete_digest   INTEGER NOT NULL,
    job_id          INTEGER NOT NULL,
    attempt         INTEGER NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending_delete'
        CHECK (status IN ('pending_delete', 'deleting', 'deleted', 'restored', 'failed',
                          'cancelled', 'awaiting_approval')),
    submitted_at    INTEGER NOT NULL,
    delete_after    INTEGER NOT NULL,
    lease_holder    BLOB,
    lease_until     INTEGER,
    attempts        INTEGER NOT NULL DEFAULT 0,
    error           TEXT,
    deleted_tags    TEXT NOT NULL DEFAULT '[]',
    skipped_tags    TEXT NOT NULL DEFAULT '[]',
    digest_deleted  INTEGER NOT NULL DEFAULT 0,
    finished_at     INTEGER,
    trace_context   TEXT,
    linked          TEXT,
    policy          TEXT NOT NULL DEFAULT '',
    policy_id       INTEGER NOT NULL DEFAULT 0,
    policy_revision TEXT NOT NULL DEFAULT '',
    reasons         TEXT,
    hold_reason     TEXT,
    UNIQUE (job_id, attempt, digest)
) STRICT;

INSERT INTO deletions_new (id, registry, repository, digest, tags, delete_digest, job_id,
    attempt, status, submitted_at, delete_after, lease_holder, lease_until, attempts, error,
    deleted_tags, skipped_tags, digest_deleted, finished_at, trace_context, linked)
SELECT id, registry, repository, digest, tags, delete_digest, job_id,
    attempt, status, submitted_at, delete_after, lease_holder, lease_until, attempts, error,
    deleted_tags, skipped_tags, digest_deleted, finished_at, trace_context, linked
FROM deletions;

-- Ids are never reused: the copy continues the old table's sequence.
UPDATE sqlite_sequence SET seq = max(seq, (SELECT seq FROM sqlite_sequence WHERE name = 'deletions'))
WHERE name = 'deletions_new';
INSERT INTO sqlite_sequence (name, seq)
SELECT 'deletions_new', seq FROM sqlite_sequence
WHERE name = 'deletions' AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'deletions_new');

DROP TABLE deletions;
ALTER TABLE deletions_new RENAME TO deletions;

CREATE INDEX deletions_due ON deletions (delete_after, id) WHERE status = 'pending_delete';
CREATE INDEX deletions_leased ON deletions (lease_until) WHERE status = 'deleting';
CREATE INDEX deletions_status_id ON deletions (status, id);
CREATE INDEX deletions_job ON deletions (job_id, id);
