-- W3C trace context (a `traceparent`) of the submission, so a deletion run
-- after the undo window joins the trace of the cleanup that planned it.
ALTER TABLE deletions ADD COLUMN trace_context text;
