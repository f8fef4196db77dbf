//! A policy's tag rules and their validation.

use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};

use crate::ruleset::{self, RuleList, TagRule, TagRuleSpec};
use crate::{AgeSource, Cadence, Selector};

/// Longest regex accepted, in bytes.
pub const MAX_REGEX_BYTES: usize = 1000;
/// Compiled size limit of one regex: the engine is linear-time in the input,
/// but a short pattern such as `\w{1000}` still compiles to a huge program.
const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Largest `keep_n`.
pub const MAX_KEEP_N: i64 = 100_000;
/// Longest `older_than`: ten years.
pub const MAX_OLDER_THAN_SECONDS: i64 = 10 * 365 * 86_400;

/// One problem with one field, e.g. `("name_regex_delete", "invalid regex: ...")`
/// or `("rules[2].semver", ...)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub field: String,
    pub description: String,
}

impl Violation {
    pub(crate) fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self { field: field.into(), description: description.into() }
    }
}

/// The rule fields as the API and the `tag_cleanup` job carry them: either
/// the single-rule fields (`keep_n`, `older_than_seconds`, the regexes),
/// or an ordered list of `rules` with those left unset (see `ruleset`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuleSpec {
    /// Candidates kept, newest first; 0 for no such rule.
    pub keep_n: i64,
    /// Only candidates older than this go; 0 for no age rule.
    pub older_than_seconds: i64,
    /// Candidates: tags matching this (anchored); empty means every tag.
    pub name_regex_delete: String,
    /// Tags matching this (anchored) are kept; empty keeps none by name.
    pub name_regex_keep: String,
    /// What happens to the attachments of a deleted image.
    pub attachments: AttachmentPolicy,
    /// Where an image's age comes from.
    pub age_source: AgeSource,
    /// Ordered rules; empty for a policy of the single-rule fields. Left
    /// out of the JSON when empty, so revisions of such policies, and the
    /// jobs older workers read, stay as they were.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<TagRuleSpec>,
}

impl RuleSpec {
    /// A fingerprint of these rules applied to the repositories `selector`
    /// covers: the same exactly when a cleanup would decide the same. A
    /// policy's revision; deletions planned under another are cancelled.
    pub fn revision(&self, selector: &str) -> String {
        use sha2::{Digest, Sha256};
        let mut hash = Sha256::new();
        hash.update(selector.as_bytes());
        hash.update([0]);
        // Field order is declaration order: the same spec, the same bytes.
        hash.update(serde_json::to_vec(self).unwrap_or_default());
        hex::encode(&hash.finalize()[..8])
    }
}

/// What happens to the signatures, SBOMs and attestations of a deleted
/// image. Attachments of a kept image are always kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttachmentPolicy {
    /// They go with it, before it, so none is left pointing at nothing.
    #[default]
    DeleteWithSubject,
    /// They stay.
    Keep,
}

/// Rules ready to apply.
pub struct Rules {
    spec: RuleSpec,
    list: RuleList,
}

impl std::fmt::Debug for Rules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rules").field("spec", &self.spec).finish_non_exhaustive()
    }
}

fn build(pattern: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(pattern).size_limit(REGEX_SIZE_LIMIT).dfa_size_limit(REGEX_SIZE_LIMIT).build()
}

/// `pattern` compiled to match whole names only, or why it cannot be.
pub(crate) fn anchored(pattern: &str) -> Result<Regex, String> {
    if pattern.len() > MAX_REGEX_BYTES {
        return Err(format!("must be at most {MAX_REGEX_BYTES} bytes"));
    }
    let explain = |e: regex::Error| match e {
        regex::Error::CompiledTooBig(_) => {
            format!("too complex: compiles to more than {} KiB", REGEX_SIZE_LIMIT >> 10)
        }
        // The syntax error's last line is the reason; the lines above
        // draw a caret under the pattern, which does not fit one field.
        other => {
            let text = other.to_string();
            let last = text.lines().last().unwrap_or_default();
            format!("invalid regex: {}", last.trim_start_matches("error: "))
        }
    };
    // The pattern alone must be valid, or `a)|(b` would escape the anchors
    // below and match anywhere.
    build(pattern).map_err(explain)?;
    build(&format!("^(?:{pattern})$")).map_err(explain)
}

impl Rules {
    /// Compiles `spec`, reporting every bad field, not only the first.
    pub fn compile(spec: &RuleSpec) -> Result<Self, Vec<Violation>> {
        let list = if spec.rules.is_empty() { single(spec)? } else { listed(spec)? };
        Ok(Self { spec: spec.clone(), list: RuleList::new(list) })
    }

    pub fn spec(&self) -> &RuleSpec {
        &self.spec
    }

    /// Whether the policy lists its rules (decisions then name them).
    pub fn is_listed(&self) -> bool {
        !self.spec.rules.is_empty()
    }

    pub(crate) fn list(&self) -> &RuleList {
        &self.list
    }
}

/// A policy of the single-rule fields as the one rule it is: candidates
/// are the tags matching the delete regex and not the keep regex; the
/// newest `keep_n` and those newer than `older_than` stay. The rule checks
/// (and compiles) its fields once; its violations are named after the
/// policy's fields, in the policy's order.
fn single(spec: &RuleSpec) -> Result<Vec<TagRule>, Vec<Violation>> {
    const NAMES: [(&str, &str); 4] = [
        ("keep_newest", "keep_n"),
        ("keep_within", "older_than"),
        ("tag_regex", "name_regex_delete"),
        ("exclude_regex", "name_regex_keep"),
    ];
    let rule = TagRuleSpec {
        tag_regex: spec.name_regex_delete.clone(),
        exclude_regex: spec.name_regex_keep.clone(),
        keep_newest: spec.keep_n,
        keep_within_seconds: spec.older_than_seconds,
        ..TagRuleSpec::default()
    };
    TagRule::compile(&rule, "").map(|rule| vec![rule]).map_err(|mut found| {
        let position = |v: &Violation| NAMES.iter().position(|(rule, _)| *rule == v.field);
        found.sort_by_key(position);
        for v in &mut found {
            if let Some(i) = position(v) {
                v.field = NAMES[i].1.to_string();
            }
        }
        found
    })
}

/// A policy's listed rules; the single-rule fields must then be unset.
fn listed(spec: &RuleSpec) -> Result<Vec<TagRule>, Vec<Violation>> {
    let mut violations = Vec::new();
    let why = "must be unset when rules are listed (put it in a rule)";
    for (field, set) in [
        ("keep_n", spec.keep_n != 0),
        ("older_than", spec.older_than_seconds != 0),
        ("name_regex_delete", !spec.name_regex_delete.is_empty()),
        ("name_regex_keep", !spec.name_regex_keep.is_empty()),
    ] {
        if set {
            violations.push(Violation::new(field, why));
        }
    }
    match ruleset::compile_all(&spec.rules) {
        Ok(list) if violations.is_empty() => Ok(list),
        Ok(_) => Err(violations),
        Err(found) => {
            violations.extend(found);
            Err(violations)
        }
    }
}

/// Every problem of a policy's fields: the rules, the repository selector
/// and the cadence, named `keep_n`, `older_than`, `name_regex_delete`,
/// `name_regex_keep`, `repository_selector` and `cadence`.
pub fn validate_policy_fields(spec: &RuleSpec, selector: &str, cadence: &str) -> Vec<Violation> {
    let mut violations = Rules::compile(spec).err().unwrap_or_default();
    if let Err(reason) = Selector::parse(selector) {
        violations.push(Violation::new("repository_selector", reason));
    }
    if let Err(reason) = Cadence::parse(cadence) {
        violations.push(Violation::new("cadence", reason));
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(delete: &str, keep: &str) -> RuleSpec {
        RuleSpec {
            name_regex_delete: delete.into(),
            name_regex_keep: keep.into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_revision_changes_exactly_with_the_rules_and_selector() {
        let a = spec("v.*", "");
        assert_eq!(a.revision("team/**"), spec("v.*", "").revision("team/**"));
        assert_eq!(a.revision("team/**").len(), 16);
        assert_ne!(a.revision("team/**"), a.revision("team/*"));
        assert_ne!(a.revision("team/**"), spec("v.*", "keep").revision("team/**"));
        let kept = RuleSpec { attachments: AttachmentPolicy::Keep, ..a.clone() };
        assert_ne!(a.revision("x"), kept.revision("x"));
        let older = RuleSpec { older_than_seconds: 1, ..a.clone() };
        assert_ne!(a.revision("x"), older.revision("x"));
    }

    fn violations(spec: &RuleSpec) -> Vec<(String, String)> {
        Rules::compile(spec)
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|v| (v.field, v.description))
            .collect()
    }

    #[test]
    fn every_bad_field_is_named() {
        let spec = RuleSpec {
            keep_n: -1,
            older_than_seconds: -5,
            name_regex_delete: "(".into(),
            name_regex_keep: "a{99999}".into(),
            ..Default::default()
        };
        let found = validate_policy_fields(&spec, "[", "2d");
        let fields: Vec<&str> = found.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "keep_n",
                "older_than",
                "name_regex_delete",
                "name_regex_keep",
                "repository_selector",
                "cadence"
            ]
        );
        assert!(validate_policy_fields(&RuleSpec::default(), "team/*", "7d").is_empty());
    }

    #[test]
    fn messages_say_what_is_wrong() {
        let found = violations(&spec("(", ""));
        assert_eq!(found, [("name_regex_delete".into(), "invalid regex: unclosed group".into())]);
        let found = violations(&spec("", r"\w{1000}"));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, "name_regex_keep");
        assert!(found[0].1.starts_with("too complex"), "{}", found[0].1);
        let found = violations(&spec(&"x".repeat(MAX_REGEX_BYTES + 1), ""));
        assert_eq!(found, [("name_regex_delete".into(), "must be at most 1000 bytes".into())]);
        assert!(violations(&spec(&"x".repeat(MAX_REGEX_BYTES), "")).is_empty());
    }

    #[test]
    fn bounds_of_the_numbers() {
        let numbers = |keep_n, older_than_seconds| {
            let spec = RuleSpec { keep_n, older_than_seconds, ..Default::default() };
            violations(&spec).into_iter().map(|(field, _)| field).collect::<Vec<String>>()
        };
        assert!(numbers(0, 0).is_empty());
        assert!(numbers(MAX_KEEP_N, MAX_OLDER_THAN_SECONDS).is_empty());
        assert_eq!(numbers(MAX_KEEP_N + 1, 0), ["keep_n"]);
        assert_eq!(numbers(-1, 0), ["keep_n"]);
        assert_eq!(numbers(0, MAX_OLDER_THAN_SECONDS + 1), ["older_than"]);
        assert_eq!(numbers(0, -1), ["older_than"]);
    }

    /// Whether the single rule of `rules` selects `tag`.
    fn selects(rules: &Rules, tag: &str) -> bool {
        rules.list().select(tag, None).selects(0)
    }

    #[test]
    fn regexes_are_anchored() {
        let rules = Rules::compile(&spec("v1", "")).expect("valid");
        assert!(selects(&rules, "v1"));
        assert!(!selects(&rules, "v10") && !selects(&rules, "xv1"));
        // An alternation stays inside the anchors.
        let rules = Rules::compile(&spec("a|b", "")).expect("valid");
        assert!(selects(&rules, "b") && !selects(&rules, "ab"));
        let rules = Rules::compile(&spec("", "keep|k.*p")).expect("valid");
        assert!(!selects(&rules, "keep") && !selects(&rules, "kxp") && selects(&rules, "xkeep"));
    }

    #[test]
    fn a_pattern_cannot_escape_the_anchors() {
        // Wrapped, `a)|(b` would read `^(?:a)|(b)$` and match "xa..." tags.
        let found = violations(&spec("a)|(b", ""));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "name_regex_delete");
    }

    #[test]
    fn empty_regexes_mean_every_tag_and_none() {
        let rules = Rules::compile(&RuleSpec::default()).expect("valid");
        assert_eq!(rules.list().select("anything", None).excluded, 0);
        assert!(selects(&rules, "anything"));
    }

    #[test]
    fn listed_rules_leave_the_single_rule_fields_unset() {
        let listed = RuleSpec {
            keep_n: 3,
            name_regex_keep: "x".into(),
            rules: vec![TagRuleSpec { keep_newest: 1, ..Default::default() }],
            ..Default::default()
        };
        let fields: Vec<String> = violations(&listed).into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, ["keep_n", "name_regex_keep"]);
        let bad_rule = RuleSpec {
            rules: vec![
                TagRuleSpec::default(),
                TagRuleSpec { semver: "><".into(), ..Default::default() },
            ],
            ..Default::default()
        };
        let found = violations(&bad_rule);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "rules[1].semver");
        assert!(found[0].1.starts_with("invalid version range"), "{}", found[0].1);
    }

    #[test]
    fn an_empty_rule_list_keeps_the_revision_of_the_single_rule_fields() {
        // Policies written before rules were listed keep their revision,
        // so their planned deletions are not cancelled by the upgrade.
        let spec = spec("v.*", "");
        let json = serde_json::to_string(&spec).expect("json");
        assert!(!json.contains("rules"), "{json}");
        // sha256("x\0" + the JSON these fields had before `rules`), first 8 bytes.
        assert_eq!(spec.revision("x"), "50bded30b3b2a62e");
    }

    #[test]
    fn specs_reject_unknown_fields() {
        let parsed: Result<RuleSpec, _> = serde_json::from_str(r#"{"keep_n": 1, "nope": 2}"#);
        assert!(parsed.is_err());
        let parsed: RuleSpec = serde_json::from_str(r#"{"keep_n": 1}"#).expect("valid");
        assert_eq!(parsed, RuleSpec { keep_n: 1, ..Default::default() });
    }
}
