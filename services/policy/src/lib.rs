//! regsweep's cleanup policies as pure code: rule validation, cadences,
//! repository selectors, and the tag filter that decides what a cleanup
//! deletes (DESIGN.md section 5). The scheduler validates with it; the
//! worker plans with it.

mod cadence;
pub mod cron;
mod filter;
mod names;
mod rules;
mod selector;

pub use cadence::Cadence;
pub use filter::{Action, Decision, ImagePlan, Plan, Rule, TagInput, plan};
pub use names::{MAX_REPOSITORY_BYTES, validate_repository_name, validate_tag};
pub use rules::{
    MAX_KEEP_N, MAX_OLDER_THAN_SECONDS, MAX_REGEX_BYTES, RuleSpec, Rules, Violation,
    validate_policy_fields,
};
pub use selector::{MAX_SELECTOR_BYTES, Selector};
