//! A policy's ordered tag rules. Each rule selects tags (by name, by
//! semantic version) and keeps some of what it selects: all of them, the
//! newest N images, the newest N versions per major or minor, or what was
//! pushed within D. A tag is kept if any rule keeps it; it is deleted only
//! if some rule selects it and no rule keeps it; a tag no rule selects is
//! kept. Each rule is evaluated on its own, over everything it selects, so
//! the order of the rules changes only which rule a decision names (the
//! first by position), never the outcome, and adding a rule that keeps
//! can never delete more.
//!
//! That is Harbor's retention model (retained by any rule) with ECR's
//! selections (tag state, patterns) and semantic versions, where neither
//! says which rule decided. A policy written with the single-rule fields
//! (`keep_n`, `older_than`, the two regexes) is one rule of this kind, so
//! both forms are decided by the same code.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use globset::{GlobBuilder, GlobMatcher};
use regex::Regex;
use semver::{Version, VersionReq};
use serde::{Deserialize, Serialize};

use crate::age::AgeFrom;
use crate::filter::Rule;
use crate::rules::{MAX_KEEP_N, MAX_OLDER_THAN_SECONDS, Violation, anchored};

/// Most rules in one policy (a selection is a 64-bit mask).
pub const MAX_RULES: usize = 50;
/// Longest rule name, and longest tag glob or version range, in bytes.
pub const MAX_RULE_TEXT_BYTES: usize = 256;
const MAX_RULE_NAME_BYTES: usize = 64;

/// Which manifests a rule selects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TagState {
    /// Tags (the default).
    #[default]
    Tagged,
    /// Manifests no tag names.
    Untagged,
    /// Both.
    Any,
}

/// How `keep_newest` counts versions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionGroup {
    /// Images, newest first by age.
    #[default]
    None,
    /// Versions, highest first, within each major version.
    Major,
    /// Versions, highest first, within each major.minor.
    Minor,
}

/// One rule as the API, the job and policy files carry it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TagRuleSpec {
    /// Shown beside every decision it makes; may be empty.
    pub name: String,
    /// Selects tags matching this anchored regex; with `tag_glob` empty
    /// too, every tag.
    pub tag_regex: String,
    /// Selects tags matching this glob (`*`, `?`, `[...]`, `{a,b}`).
    pub tag_glob: String,
    /// Tags matching this anchored regex are not selected.
    pub exclude_regex: String,
    pub tag_state: TagState,
    /// Selects only semantic versions (a leading `v` allowed) in this
    /// range, e.g. `>=1.0.0, <2`. A prerelease is in a range exactly when
    /// its release is: `1.3.0-rc.1` when `1.3.0` is.
    pub semver: String,
    /// Keeps everything it selects.
    pub keep_all: bool,
    /// Keeps the newest N images it selects, or with `per` the highest N
    /// versions of each group.
    pub keep_newest: i64,
    /// Keeps what was pushed within this many seconds (by the policy's
    /// age source); an image of unknown age is kept.
    pub keep_within_seconds: i64,
    /// Groups `keep_newest` by version; the rule then selects semantic
    /// versions only.
    pub per: VersionGroup,
    /// Whether prereleases take `per` slots. When they do not, they are
    /// selected but kept only by another clause or rule.
    pub count_prereleases: bool,
}

/// Which rule decided, for people: its position from 1 and its name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleRef {
    pub position: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

enum NameMatch {
    Every,
    Regex(Regex),
    Glob(GlobMatcher),
}

/// One rule ready to apply.
pub(crate) struct TagRule {
    spec: TagRuleSpec,
    include: NameMatch,
    exclude: Option<Regex>,
    range: Option<VersionReq>,
}

/// Which rules select a tag, and which exclude it, as bit masks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Selection {
    pub selected: u64,
    pub excluded: u64,
}

impl Selection {
    pub fn selects(self, rule: usize) -> bool {
        self.selected & (1 << rule) != 0
    }
}

/// The version a tag names: `1.2.3`, `v1.2.3-rc.1`.
pub(crate) fn version_of(tag: &str) -> Option<Version> {
    let bare = tag.strip_prefix(['v', 'V']).unwrap_or(tag);
    if !bare.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    Version::parse(bare).ok()
}

/// A rule's field, named the way the API names it.
fn field(prefix: &str, name: &str) -> String {
    format!("{prefix}{name}")
}

impl TagRule {
    /// Compiles `spec`, naming each bad field after `prefix` (`rules[2].`).
    pub(crate) fn compile(spec: &TagRuleSpec, prefix: &str) -> Result<Self, Vec<Violation>> {
        let mut v = Vec::new();
        let mut bad = |name: &str, why: String| v.push(Violation::new(field(prefix, name), why));
        if spec.name.len() > MAX_RULE_NAME_BYTES || spec.name.chars().any(char::is_control) {
            bad(
                "name",
                format!("must be at most {MAX_RULE_NAME_BYTES} bytes, no control characters"),
            );
        }
        let regex = |pattern: &str| (!pattern.is_empty()).then(|| anchored(pattern)).transpose();
        let include_regex = regex(&spec.tag_regex).unwrap_or_else(|why| {
            bad("tag_regex", why);
            None
        });
        let exclude = regex(&spec.exclude_regex).unwrap_or_else(|why| {
            bad("exclude_regex", why);
            None
        });
        let include = match (include_regex, spec.tag_glob.as_str()) {
            (Some(_), glob) if !glob.is_empty() => {
                bad("tag_glob", "give tag_regex or tag_glob, not both".into());
                NameMatch::Every
            }
            (Some(re), _) => NameMatch::Regex(re),
            (None, "") => NameMatch::Every,
            (None, glob) => tag_glob(glob).map(NameMatch::Glob).unwrap_or_else(|why| {
                bad("tag_glob", why);
                NameMatch::Every
            }),
        };
        let range = match spec.semver.as_str() {
            "" => None,
            text if text.len() > MAX_RULE_TEXT_BYTES => {
                bad("semver", format!("must be at most {MAX_RULE_TEXT_BYTES} bytes"));
                None
            }
            text => VersionReq::parse(text).map(Some).unwrap_or_else(|e| {
                bad("semver", format!("invalid version range: {e}"));
                None
            }),
        };
        check_keep(spec, &mut bad);
        if v.is_empty() { Ok(Self { spec: spec.clone(), include, exclude, range }) } else { Err(v) }
    }

    fn versions_only(&self) -> bool {
        self.range.is_some() || self.spec.per != VersionGroup::None
    }

    /// Whether the rule selects `tag` (`Some(true)`), excludes it by its
    /// exclude regex (`Some(false)`), or neither (`None`).
    fn select(&self, tag: &str, version: Option<&Version>) -> Option<bool> {
        if self.spec.tag_state == TagState::Untagged {
            return None;
        }
        let named = match &self.include {
            NameMatch::Every => true,
            NameMatch::Regex(re) => re.is_match(tag),
            NameMatch::Glob(glob) => glob.is_match(tag),
        };
        if self.exclude.as_ref().is_some_and(|re| re.is_match(tag)) {
            return Some(false);
        }
        let versioned = match (self.versions_only(), version) {
            (false, _) => true,
            (true, None) => false,
            (true, Some(v)) => self.range.as_ref().is_none_or(|r| r.matches(&release(v))),
        };
        (named && versioned).then_some(true)
    }
}

fn check_keep(spec: &TagRuleSpec, bad: &mut impl FnMut(&str, String)) {
    if !(0..=MAX_KEEP_N).contains(&spec.keep_newest) {
        bad("keep_newest", format!("must be from 0 to {MAX_KEEP_N}"));
    }
    if !(0..=MAX_OLDER_THAN_SECONDS).contains(&spec.keep_within_seconds) {
        bad(
            "keep_within",
            format!("must be from 0 to 10 years ({MAX_OLDER_THAN_SECONDS} seconds)"),
        );
    }
    let counts = spec.keep_newest > 0 || spec.keep_within_seconds > 0;
    if spec.keep_all && counts {
        bad(
            "keep_all",
            "keeps everything the rule selects: drop keep_newest and keep_within".into(),
        );
    }
    if spec.per != VersionGroup::None && spec.keep_newest == 0 {
        bad("per", "groups keep_newest: set keep_newest too".into());
    }
    if spec.count_prereleases && spec.per == VersionGroup::None {
        bad("count_prereleases", "applies only with per".into());
    }
}

fn tag_glob(glob: &str) -> Result<GlobMatcher, String> {
    if glob.len() > MAX_RULE_TEXT_BYTES {
        return Err(format!("must be at most {MAX_RULE_TEXT_BYTES} bytes"));
    }
    let built = GlobBuilder::new(glob).backslash_escape(true).build();
    built.map(|g| g.compile_matcher()).map_err(|e| format!("invalid glob: {}", e.kind()))
}

/// `v` without its prerelease: the version a range judges it by.
fn release(v: &Version) -> Version {
    Version::new(v.major, v.minor, v.patch)
}

/// Compiles a policy's rule list, naming fields `rules[i].<field>`.
pub(crate) fn compile_all(specs: &[TagRuleSpec]) -> Result<Vec<TagRule>, Vec<Violation>> {
    let mut violations = Vec::new();
    if specs.len() > MAX_RULES {
        violations.push(Violation::new("rules", format!("at most {MAX_RULES} rules")));
        return Err(violations);
    }
    let mut names = BTreeSet::new();
    let mut compiled = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let prefix = format!("rules[{i}].");
        if !spec.name.is_empty() && !names.insert(spec.name.as_str()) {
            let why = format!("another rule is named {:?}", spec.name);
            violations.push(Violation::new(field(&prefix, "name"), why));
        }
        match TagRule::compile(spec, &prefix) {
            Ok(rule) => compiled.push(rule),
            Err(found) => violations.extend(found),
        }
    }
    if violations.is_empty() { Ok(compiled) } else { Err(violations) }
}

/// An age and where it came from.
pub(crate) type Age = (Option<DateTime<Utc>>, AgeFrom);

/// A tag a rule may rank: an image tag nothing outside the rules decided.
pub(crate) struct Member<'a> {
    pub digest: &'a str,
    pub age: Age,
    pub first_seen: Option<DateTime<Utc>>,
    pub version: Option<&'a Version>,
    pub selection: Selection,
}

/// What one rule decided for one member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub rule: Rule,
    /// Position of the deciding rule, from 0.
    pub by: usize,
    /// The age the decision used (its image's newest reading).
    pub age: Age,
}

/// The rules, compiled.
pub(crate) struct RuleList {
    rules: Vec<TagRule>,
}

impl RuleList {
    pub(crate) fn new(rules: Vec<TagRule>) -> Self {
        Self { rules }
    }

    /// The rule at `position` (from 0), for people.
    pub(crate) fn rule_ref(&self, position: usize) -> Option<RuleRef> {
        let rule = self.rules.get(position)?;
        Some(RuleRef { position: u32::try_from(position + 1).ok()?, name: rule.spec.name.clone() })
    }

    /// Which rules select and exclude `tag`.
    pub(crate) fn select(&self, tag: &str, version: Option<&Version>) -> Selection {
        let mut s = Selection::default();
        for (i, rule) in self.rules.iter().enumerate() {
            match rule.select(tag, version) {
                Some(true) => s.selected |= 1 << i,
                Some(false) => s.excluded |= 1 << i,
                None => {}
            }
        }
        s
    }

    /// The first rule keeping everything it selects, among `selection`.
    pub(crate) fn keeps_all(&self, selection: Selection) -> Option<usize> {
        (0..self.rules.len()).find(|&i| selection.selects(i) && self.rules[i].spec.keep_all)
    }

    /// The first rule needing manifests no tag names, if any.
    pub(crate) fn needs_untagged(&self) -> Option<usize> {
        self.rules.iter().position(|r| r.spec.tag_state != TagState::Tagged)
    }

    /// Decides every member: kept by the first rule that keeps it, else
    /// deleted by the first rule that selects it. Members must be
    /// selected by some rule.
    pub(crate) fn decide(&self, members: &[Member<'_>], now: DateTime<Utc>) -> Vec<Verdict> {
        let mut kept: Vec<Option<Verdict>> = vec![None; members.len()];
        for (i, rule) in self.rules.iter().enumerate() {
            let chosen: Vec<usize> =
                (0..members.len()).filter(|&m| members[m].selection.selects(i)).collect();
            for (m, rule, age) in keep(rule, members, &chosen, now) {
                kept[m].get_or_insert(Verdict { rule, by: i, age });
            }
        }
        kept.into_iter()
            .zip(members)
            .map(|(verdict, member)| {
                verdict.unwrap_or_else(|| {
                    let by = member.selection.selected.trailing_zeros() as usize;
                    Verdict { rule: Rule::Delete, by, age: member.age }
                })
            })
            .collect()
    }
}

/// One image among a rule's members: the newest reading of its tags.
struct Unit {
    age: Age,
    first_seen: Option<DateTime<Utc>>,
}

/// What `rule` keeps of `members[chosen]`: `(member, reason, age)`, one
/// per kept member, with the first clause that keeps it.
fn keep(
    rule: &TagRule,
    members: &[Member<'_>],
    chosen: &[usize],
    now: DateTime<Utc>,
) -> Vec<(usize, Rule, Age)> {
    let spec = &rule.spec;
    let mut units: BTreeMap<&str, Unit> = BTreeMap::new();
    for &m in chosen {
        let t = &members[m];
        let unit = units.entry(t.digest).or_insert(Unit { age: t.age, first_seen: None });
        if (t.age.0.is_some(), t.age.0) > (unit.age.0.is_some(), unit.age.0) {
            unit.age = t.age;
        }
        unit.first_seen = unit.first_seen.max(t.first_seen);
    }
    let newest: BTreeSet<&str> = match spec.per {
        VersionGroup::None => newest_images(&units, spec.keep_newest),
        _ => BTreeSet::new(),
    };
    let versions = highest_versions(spec, members, chosen);
    // Out of range means nothing was pushed within it.
    let cutoff = now
        .checked_sub_signed(Duration::seconds(spec.keep_within_seconds.max(0)))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    chosen
        .iter()
        .filter_map(|&m| {
            let t = &members[m];
            let age = units.get(t.digest).map_or(t.age, |u| u.age);
            let reason = if spec.keep_all {
                Rule::KeepAll
            } else if newest.contains(t.digest) {
                Rule::KeepN
            } else if versions.contains(&m) {
                Rule::KeepVersion
            } else if spec.keep_within_seconds <= 0 {
                return None;
            } else {
                match age.0 {
                    None => Rule::AgeUnknown,
                    Some(at) if at > cutoff => Rule::NewerThan,
                    Some(_) => return None,
                }
            };
            Some((m, reason, age))
        })
        .collect()
}

/// The newest `n` images: known ages first, newest first; then the later
/// first seen; then by digest, never by tag name.
fn newest_images<'a>(units: &BTreeMap<&'a str, Unit>, n: i64) -> BTreeSet<&'a str> {
    let mut order: Vec<(&str, &Unit)> = units.iter().map(|(d, u)| (*d, u)).collect();
    order.sort_by_key(|(digest, u)| {
        let (age, seen) = (u.age.0, u.first_seen);
        (Reverse((age.is_some(), age)), Reverse((seen.is_some(), seen)), *digest)
    });
    order.into_iter().take(usize::try_from(n).unwrap_or(0)).map(|(d, _)| d).collect()
}

/// Members among the highest `keep_newest` versions of their group.
fn highest_versions(
    spec: &TagRuleSpec,
    members: &[Member<'_>],
    chosen: &[usize],
) -> BTreeSet<usize> {
    let mut groups: BTreeMap<(u64, u64), BTreeSet<Reverse<&Version>>> = BTreeMap::new();
    let group = |v: &Version| match spec.per {
        VersionGroup::Major => Some((v.major, 0)),
        VersionGroup::Minor => Some((v.major, v.minor)),
        VersionGroup::None => None,
    };
    let counted = |v: &&Version| spec.count_prereleases || v.pre.is_empty();
    for &m in chosen {
        if let Some(v) = members[m].version.filter(counted)
            && let Some(key) = group(v)
        {
            groups.entry(key).or_default().insert(Reverse(v));
        }
    }
    let n = usize::try_from(spec.keep_newest).unwrap_or(0);
    let kept: BTreeSet<(u64, u64, &Version)> = groups
        .iter()
        .flat_map(|(&(major, minor), versions)| {
            versions.iter().take(n).map(move |Reverse(v)| (major, minor, *v))
        })
        .collect();
    chosen
        .iter()
        .copied()
        .filter(|&m| {
            let Some(v) = members[m].version.filter(counted) else { return false };
            group(v).is_some_and(|(major, minor)| kept.contains(&(major, minor, v)))
        })
        .collect()
}

#[cfg(test)]
mod tests;
