-- The audit record: every destructive request (a manifest DELETE or PUT)
-- a scrubber sent to a registry, written before it left and answered when
-- it returned. Append-only but for the answer; pruned after
-- `--audit-retention`.
CREATE TABLE registry_requests (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The deletion it was sent for.
    deletion_id bigint NOT NULL,
    registry    text NOT NULL,
    method      text NOT NULL,
    path        text NOT NULL,
    -- The registry's HTTP status; 0 when no answer came; NULL when the
    -- scrubber stopped before it could record one.
    status      integer,
    sent_at     timestamptz NOT NULL DEFAULT now(),
    answered_at timestamptz
);

CREATE INDEX registry_requests_deletion ON registry_requests (deletion_id, id);
CREATE INDEX registry_requests_sent ON registry_requests (sent_at);
-- `scrub history` finds deletions by repository and tag.
CREATE INDEX deletions_repository ON deletions (registry, repository, id);
