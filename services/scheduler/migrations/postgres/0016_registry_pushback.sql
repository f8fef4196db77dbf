-- The last time a registry pushed back on a scrubber (429 or 503) and the
-- rate it had been sent: `RegistryPushback` as JSON, like capabilities.
ALTER TABLE registries ADD COLUMN pushback text;
