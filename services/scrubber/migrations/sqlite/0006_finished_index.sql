-- Deletions finished per hour (the console's chart) read a window of
-- recent history without scanning all of it.
CREATE INDEX deletions_finished ON deletions (finished_at) WHERE finished_at IS NOT NULL;
