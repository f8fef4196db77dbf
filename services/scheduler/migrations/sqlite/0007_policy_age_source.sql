-- Where a policy's cleanups take an image's age from: `auto` (`created`
-- where known, otherwise when regsweep first saw the tag on its digest),
-- `created` or `first_seen`.
ALTER TABLE policies ADD COLUMN age_source TEXT NOT NULL DEFAULT 'auto'
    CHECK (age_source IN ('auto', 'created', 'first_seen'));

-- When regsweep first saw each tag of a repository on the digest it points
-- at (times in microseconds since the epoch, as everywhere in this store).
-- See the PostgreSQL migration of the same name for why.
CREATE TABLE tag_sightings (
    registry_id INTEGER NOT NULL REFERENCES registries (id) ON DELETE CASCADE,
    repository TEXT NOT NULL,
    tag TEXT NOT NULL,
    digest TEXT NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    PRIMARY KEY (registry_id, repository, tag)
) WITHOUT ROWID;
