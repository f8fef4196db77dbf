//! The `tag_cleanup` job's contract: its arguments and its result, one
//! serde type each, shared by whoever creates the job (the selection, the
//! preview), the worker that runs it, and whoever reads its result.

use serde::{Deserialize, Serialize};

use crate::{Decision, ImagePlan, RuleSpec};

/// Arguments of a `tag_cleanup` job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagCleanupArgs {
    pub registry: String,
    pub repository: String,
    #[serde(default)]
    pub repository_id: u64,
    #[serde(default)]
    pub policy: String,
    #[serde(default)]
    pub rules: RuleSpec,
    #[serde(default)]
    pub dry_run: bool,
    /// Plans and reports, never submits (a policy preview).
    #[serde(default)]
    pub preview: bool,
    #[serde(default = "default_budget")]
    pub time_budget_seconds: u64,
}

fn default_budget() -> u64 {
    300
}

/// How a cleanup ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CleanupOutcome {
    /// Planned (and submitted, unless a dry run or blocked).
    #[default]
    Complete,
    /// Ran out of its time budget; resumed later.
    Unfinished,
}

/// The result of a `tag_cleanup` job. The stores read `outcome` and
/// `deleted_count` from it when the job ends.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TagCleanupResult {
    pub outcome: CleanupOutcome,
    pub registry: String,
    pub repository: String,
    pub repository_id: u64,
    pub policy: String,
    pub dry_run: bool,
    pub preview: bool,
    pub tags_evaluated: u64,
    pub elapsed_ms: u64,
    /// Tags the plan deletes.
    pub planned_tags: u64,
    /// Distinct manifests the plan deletes by digest.
    pub planned_digests: u64,
    /// What a dry run would have deleted; 0 for a real run, whose
    /// deletions are counted as the scrubber carries them out.
    pub deleted_count: u64,
    pub submitted_tags: u64,
    /// The scrubber's ids of the submitted deletions.
    pub deletions: Vec<i64>,
    /// Why the plan deletes nothing although it decided to.
    pub blocked: Option<String>,
    /// One decision per tag, by name.
    pub tags: Vec<Decision>,
    pub images: Vec<ImagePlan>,
    /// The space the plan frees (an upper bound until the registry's
    /// garbage collection runs).
    pub reclaim: crate::Reclaim,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_refuse_unknown_fields_and_default_the_rest() {
        let args: TagCleanupArgs =
            serde_json::from_str(r#"{"registry": "r", "repository": "a"}"#).expect("valid");
        assert_eq!(args.time_budget_seconds, 300);
        assert!(!args.dry_run && !args.preview);
        let bad = serde_json::from_str::<TagCleanupArgs>(
            r#"{"registry": "r", "repository": "a", "x": 1}"#,
        );
        assert!(bad.is_err());
    }

    #[test]
    fn the_stores_read_outcome_and_deleted_count() {
        let result = TagCleanupResult {
            outcome: CleanupOutcome::Unfinished,
            deleted_count: 3,
            ..Default::default()
        };
        let json = serde_json::to_value(&result).expect("serialize");
        assert_eq!(json["outcome"], "unfinished");
        assert_eq!(json["deleted_count"], 3);
    }
}
