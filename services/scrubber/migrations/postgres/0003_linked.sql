-- The manifests deleted with an image (attachments before it, children
-- after it), as JSON: {"before": [...], "after": [...]}. NULL: none.
ALTER TABLE deletions ADD COLUMN linked text;
