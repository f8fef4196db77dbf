-- A registry's protection list and the digests clients mark as in use
-- (times in microseconds since the epoch, as everywhere in this store).
-- See the PostgreSQL migration of the same name for why.
ALTER TABLE registries ADD COLUMN protection TEXT;

CREATE TABLE in_use_marks (
    registry_id INTEGER NOT NULL REFERENCES registries (id) ON DELETE CASCADE,
    repository TEXT NOT NULL,
    digest TEXT NOT NULL,
    holder TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (registry_id, repository, digest, holder)
) WITHOUT ROWID;
CREATE INDEX in_use_marks_holder ON in_use_marks (registry_id, holder);
