//! regsweep's cleanup policies as pure code: rule validation, cadences,
//! repository selectors, and the tag filter that decides what a cleanup
//! deletes (README, "How cleanups are decided"). The scheduler validates with it; the
//! worker plans with it.

mod age;
mod cadence;
mod contract;
pub mod cron;
mod filter;
mod graph;
mod guard;
mod names;
mod overlap;
mod precedence;
mod protection;
mod reclaim;
mod rules;
mod ruleset;
mod selector;
mod wire;

pub use wire::protection_from_proto;

pub use age::{AgeFrom, AgeSource, believable};
pub use cadence::Cadence;
pub use contract::{CleanupOutcome, TagCleanupArgs, TagCleanupResult};
pub use filter::{
    Action, Decision, ImagePlan, Inventory, Linked, Plan, Relation, Rule, TagInput, TagKind, plan,
    plan_protected,
};
pub use graph::{ManifestLinks, attachment_subject};
pub use guard::{DEFAULT_MAX_DELETE_FRACTION, PlanSize, hold_reason, max_delete_fraction};
pub use names::{MAX_REPOSITORY_BYTES, validate_digest, validate_repository_name, validate_tag};
pub use precedence::{Candidate, Conflict, Governance, PRIORITY_RANGE, Precedence};
pub use protection::{InUse, MAX_PROTECTION_ENTRIES, Protection, ProtectionSpec, Shield};
pub use reclaim::{Blob, Reclaim, reached_manifests, reclaimable};
pub use rules::{
    AttachmentPolicy, MAX_KEEP_N, MAX_OLDER_THAN_SECONDS, MAX_REGEX_BYTES, RuleSpec, Rules,
    Violation, validate_policy_fields,
};
pub use ruleset::{MAX_RULES, RuleRef, TagRuleSpec, TagState, VersionGroup};
pub use selector::{MAX_SELECTOR_BYTES, Selector};
