-- Hosts whose Bearer realms are followed besides the registry's own
-- origin, as a JSON array (see the PostgreSQL migration).
ALTER TABLE registries ADD COLUMN realm_allow_list TEXT NOT NULL DEFAULT '[]';
