-- Verified plans and the blast-radius guard.
--
-- `cancelled`: the policy that planned the deletion was deleted, disabled,
-- made a dry run or changed before it ran. `awaiting_approval`: its plan
-- deleted more of the repository than the policy allows at once; it runs
-- only once approved.
ALTER TABLE deletions DROP CONSTRAINT deletions_status_check;
ALTER TABLE deletions ADD CONSTRAINT deletions_status_check CHECK (status IN
    ('pending_delete', 'deleting', 'deleted', 'restored', 'failed', 'cancelled',
     'awaiting_approval'));
-- The policy the plan was made under (empty for a cleanup created by hand,
-- and for deletions submitted before this migration), its id and revision.
ALTER TABLE deletions ADD COLUMN policy text NOT NULL DEFAULT '';
ALTER TABLE deletions ADD COLUMN policy_id bigint NOT NULL DEFAULT 0;
ALTER TABLE deletions ADD COLUMN policy_revision text NOT NULL DEFAULT '';
-- The rule that decided each tag, as JSON: [{"tag": "v1", "rule": "keep_n"}].
ALTER TABLE deletions ADD COLUMN reasons text;
-- Why the plan waits for approval.
ALTER TABLE deletions ADD COLUMN hold_reason text;
