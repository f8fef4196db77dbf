-- Hosts whose Bearer realms are followed besides the registry's own
-- origin (DESIGN.md section 6): `host` or `host:port`, lowercase.
ALTER TABLE registries ADD COLUMN realm_allow_list text[] NOT NULL DEFAULT '{}';
