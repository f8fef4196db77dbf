-- W3C trace context (a `traceparent`) carried from the work that created a
-- row to the work that acts on it later: a policy run to the cleanups of
-- its repositories, a job's creator to its runs. NULL when traces were not
-- exported.
ALTER TABLE jobs ADD COLUMN trace_context text;
ALTER TABLE repositories ADD COLUMN trace_context text;
