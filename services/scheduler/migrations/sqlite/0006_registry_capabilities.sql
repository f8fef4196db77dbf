-- What the registry was found to allow by its last catalog sync (see the
-- PostgreSQL migration of the same name).
ALTER TABLE registries ADD COLUMN capabilities TEXT;
