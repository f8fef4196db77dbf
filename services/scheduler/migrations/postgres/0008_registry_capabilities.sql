-- What the registry was found to allow by its last catalog sync: the
-- `RegistryCapabilities` message as JSON, `checked_at` included; NULL
-- before the first.
ALTER TABLE registries ADD COLUMN capabilities text;
