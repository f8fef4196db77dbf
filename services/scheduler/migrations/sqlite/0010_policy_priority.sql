-- Precedence among a registry's policies: a repository is governed by the
-- matching policy of highest priority. Existing policies get the number of
-- policies created after them on their registry, so the oldest still wins
-- and no two of them share a priority.
ALTER TABLE policies ADD COLUMN priority integer NOT NULL DEFAULT 0;
UPDATE policies SET priority = (
    SELECT count(*) FROM policies later
    WHERE later.registry_id = policies.registry_id AND later.id > policies.id
);
