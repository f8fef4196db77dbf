-- W3C trace context (a `traceparent`) carried from the work that created a
-- row to the work that acts on it later (see the PostgreSQL migration).
ALTER TABLE jobs ADD COLUMN trace_context TEXT;
ALTER TABLE repositories ADD COLUMN trace_context TEXT;
