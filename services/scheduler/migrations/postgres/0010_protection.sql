-- What no policy of a registry may delete: its protection list (tag
-- patterns, digests, repository globs), as JSON in the shape of
-- `regsweep_policy::ProtectionSpec`; NULL protects nothing.
ALTER TABLE registries ADD COLUMN protection text;

-- Digests clients mark as in use (the images a cluster runs). A mark
-- lapses at `expires_at` unless its holder refreshes it; lapsed marks are
-- never read and are removed when the registry is next marked.
CREATE TABLE in_use_marks (
    registry_id bigint NOT NULL REFERENCES registries (id) ON DELETE CASCADE,
    repository text NOT NULL,
    digest text NOT NULL,
    holder text NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (registry_id, repository, digest, holder)
);
CREATE INDEX in_use_marks_holder ON in_use_marks (registry_id, holder);
