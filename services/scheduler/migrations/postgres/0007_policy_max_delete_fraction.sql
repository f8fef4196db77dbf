-- The largest share of a repository one cleanup of the policy may delete
-- before its plan is held for approval; 0 means the default (0.5), 1 turns
-- the guard off. Existing policies get the default.
ALTER TABLE policies ADD COLUMN max_delete_fraction double precision NOT NULL DEFAULT 0;
