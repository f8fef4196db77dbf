-- A policy's ordered tag rules, as JSON (regsweep_policy::TagRuleSpec);
-- '[]' for a policy of the single-rule fields, which keeps its meaning.
ALTER TABLE policies ADD COLUMN rules text NOT NULL DEFAULT '[]';
