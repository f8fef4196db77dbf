-- The audit record (see the PostgreSQL migration of the same name).
CREATE TABLE registry_requests (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    deletion_id INTEGER NOT NULL,
    registry    TEXT NOT NULL,
    method      TEXT NOT NULL,
    path        TEXT NOT NULL,
    status      INTEGER,
    sent_at     INTEGER NOT NULL,
    answered_at INTEGER
) STRICT;

CREATE INDEX registry_requests_deletion ON registry_requests (deletion_id, id);
CREATE INDEX registry_requests_sent ON registry_requests (sent_at);
CREATE INDEX deletions_repository ON deletions (registry, repository, id);
