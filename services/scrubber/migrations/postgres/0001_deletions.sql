-- Deletions planned by cleanups, waiting out their delay, then scrubbed
-- (DESIGN.md section 6).

CREATE TABLE deletions (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    registry       text NOT NULL,
    repository     text NOT NULL,
    digest         text NOT NULL,
    -- Tags to remove; each is re-resolved first and skipped if it moved.
    tags           text[] NOT NULL,
    -- Delete the digest itself once its tags are gone.
    delete_digest  boolean NOT NULL,
    job_id         bigint NOT NULL,
    attempt        integer NOT NULL,
    status         text NOT NULL DEFAULT 'pending_delete'
        CHECK (status IN ('pending_delete', 'deleting', 'deleted', 'restored', 'failed')),
    submitted_at   timestamptz NOT NULL DEFAULT now(),
    -- Not scrubbed before this (the undo window; later after a failure).
    delete_after   timestamptz NOT NULL,
    -- The replica scrubbing it and until when its claim holds.
    lease_holder   uuid,
    lease_until    timestamptz,
    attempts       integer NOT NULL DEFAULT 0,
    error          text,
    deleted_tags   text[] NOT NULL DEFAULT '{}',
    skipped_tags   text[] NOT NULL DEFAULT '{}',
    digest_deleted boolean NOT NULL DEFAULT false,
    finished_at    timestamptz,
    -- Submissions are idempotent per job attempt and image.
    UNIQUE (job_id, attempt, digest)
);

-- Claims read due pending deletions oldest first.
CREATE INDEX deletions_due ON deletions (delete_after, id) WHERE status = 'pending_delete';
-- Expired leases (a scrubber died) are found without a scan.
CREATE INDEX deletions_leased ON deletions (lease_until) WHERE status = 'deleting';
-- Listing by status and by job, newest first.
CREATE INDEX deletions_status_id ON deletions (status, id);
CREATE INDEX deletions_job ON deletions (job_id, id);
