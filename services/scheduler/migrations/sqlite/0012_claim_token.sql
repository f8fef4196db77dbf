-- The claim that took a job's current attempt (as PostgreSQL's schema).
ALTER TABLE jobs ADD COLUMN claim_token BLOB;
