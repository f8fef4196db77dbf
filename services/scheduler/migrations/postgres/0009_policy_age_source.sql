-- Where a policy's cleanups take an image's age from: `auto` (`created`
-- where known, otherwise when regsweep first saw the tag on its digest),
-- `created` or `first_seen`.
ALTER TABLE policies ADD COLUMN age_source text NOT NULL DEFAULT 'auto'
    CHECK (age_source IN ('auto', 'created', 'first_seen'));

-- When regsweep first saw each tag of a repository on the digest it points
-- at, kept across cleanups: the age of an image whose `created` is
-- unknown (reproducible builds write the epoch). Keyed by name, not by
-- catalog row: a preview may read a repository the catalog has not listed
-- yet. A tag that moves to another digest starts again.
CREATE TABLE tag_sightings (
    registry_id bigint NOT NULL REFERENCES registries (id) ON DELETE CASCADE,
    repository text NOT NULL,
    tag text NOT NULL,
    digest text NOT NULL,
    first_seen timestamptz NOT NULL,
    last_seen timestamptz NOT NULL,
    PRIMARY KEY (registry_id, repository, tag)
);
