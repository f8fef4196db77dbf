-- What a policy's cleanups do with the attachments (signatures, SBOMs,
-- attestations) of an image they delete: `delete_with_subject` or `keep`.
ALTER TABLE policies ADD COLUMN attachments TEXT NOT NULL DEFAULT 'delete_with_subject';
