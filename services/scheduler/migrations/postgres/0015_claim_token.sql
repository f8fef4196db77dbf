-- The claim that took a job's current attempt. A dispatcher whose claim
-- failed without an answer (its connection cut after the commit) reads
-- what its claim took by this token and hands it out, instead of leaving
-- the jobs to their worker's heartbeat TTL. Nullable: no table rewrite.
ALTER TABLE jobs ADD COLUMN claim_token uuid;
