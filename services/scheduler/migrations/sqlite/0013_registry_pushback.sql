-- The last time a registry pushed back on a scrubber (as PostgreSQL's).
ALTER TABLE registries ADD COLUMN pushback TEXT;
