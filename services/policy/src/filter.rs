//! The tag filter, in GitLab's order: `latest` is never deleted; tags
//! matching the keep regex stay; candidates are the tags matching the
//! delete regex; the newest `keep_n` candidates stay; of the rest, only
//! those older than `older_than` go. Then the plan is grouped per digest.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::Rules;

/// One tag as the worker read it from the registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagInput {
    pub tag: String,
    /// `None` when the tag could not be resolved: never deleted.
    pub digest: Option<String>,
    /// `None` when unknown: sorts as newest, never "older than".
    pub created: Option<DateTime<Utc>>,
}

/// The rule that decided a tag, in the order they apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    Latest,
    KeepRegex,
    NotMatchingDeleteRegex,
    Unresolved,
    KeepN,
    NewerThan,
    Delete,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Keep,
    Delete,
}

/// The decision on one tag.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub tag: String,
    pub digest: Option<String>,
    pub created: Option<DateTime<Utc>>,
    pub action: Action,
    pub rule: Rule,
}

/// What must go for one digest: its planned tags, and the digest itself
/// only when no kept tag points at it (else the tags are untagged one by
/// one and the digest stays).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ImagePlan {
    pub digest: String,
    /// By name.
    pub tags: Vec<String>,
    pub delete_digest: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// One per distinct input tag, by tag name.
    pub decisions: Vec<Decision>,
    /// One per digest with a deleted tag, by digest.
    pub images: Vec<ImagePlan>,
}

/// The rule that keeps `tag` before candidates are ranked, if any.
fn kept_by_name(rules: &Rules, tag: &TagInput) -> Option<Rule> {
    if tag.tag == "latest" {
        Some(Rule::Latest)
    } else if rules.matches_keep(&tag.tag) {
        Some(Rule::KeepRegex)
    } else if !rules.matches_delete(&tag.tag) {
        Some(Rule::NotMatchingDeleteRegex)
    } else if tag.digest.is_none() {
        // Never delete what could not be inspected.
        Some(Rule::Unresolved)
    } else {
        None
    }
}

/// Newest first; an unknown creation time is newest; ties by name, so the
/// ranking does not depend on the order the registry listed the tags in.
fn newest_first(a: &TagInput, b: &TagInput) -> Ordering {
    let age = |t: &TagInput| (t.created.is_some(), Reverse(t.created));
    age(a).cmp(&age(b)).then_with(|| a.tag.cmp(&b.tag))
}

/// Decides every tag of `tags` at `now`, in DESIGN.md section 5's order.
///
/// The plan only ever deletes tags it was given, and never deletes a
/// digest that a kept tag (of any rule) references: such a digest's
/// deleted tags are untagged one by one (`delete_digest` false). A tag is
/// deleted only when it is a candidate beyond the newest `keep_n`, its
/// digest is known, and it was created at or before `now - older_than`.
///
/// A tag name given twice is decided once, from its most cautious reading
/// (an unresolved digest, then an unknown creation time, first), whatever
/// the input order.
pub fn plan(rules: &Rules, mut tags: Vec<TagInput>, now: DateTime<Utc>) -> Plan {
    tags.sort_by(|a, b| {
        (&a.tag, &a.digest, a.created.is_some(), a.created).cmp(&(
            &b.tag,
            &b.digest,
            b.created.is_some(),
            b.created,
        ))
    });
    tags.dedup_by(|later, first| later.tag == first.tag);

    let by_name: Vec<Option<Rule>> = tags.iter().map(|t| kept_by_name(rules, t)).collect();
    let mut candidates: Vec<usize> = (0..tags.len()).filter(|&i| by_name[i].is_none()).collect();
    candidates.sort_by(|&a, &b| newest_first(&tags[a], &tags[b]));
    let mut rank = vec![0; tags.len()];
    for (r, &i) in candidates.iter().enumerate() {
        rank[i] = r;
    }

    let keep_n = usize::try_from(rules.spec().keep_n).unwrap_or(0);
    let older_than = Duration::seconds(rules.spec().older_than_seconds.max(0));
    // Out of range means nothing is old enough.
    let cutoff = now.checked_sub_signed(older_than).unwrap_or(DateTime::<Utc>::MIN_UTC);
    let by_rank = |rank: usize, created: Option<DateTime<Utc>>| {
        if rank < keep_n {
            Rule::KeepN
        } else if created.is_none_or(|c| c > cutoff) {
            Rule::NewerThan
        } else {
            Rule::Delete
        }
    };

    let decisions: Vec<Decision> = tags
        .into_iter()
        .zip(by_name.into_iter().zip(rank))
        .map(|(t, (by_name, rank))| {
            let rule = by_name.unwrap_or_else(|| by_rank(rank, t.created));
            let action = if rule == Rule::Delete { Action::Delete } else { Action::Keep };
            Decision { tag: t.tag, digest: t.digest, created: t.created, action, rule }
        })
        .collect();
    let images = group_by_digest(&decisions);
    Plan { decisions, images }
}

fn group_by_digest(decisions: &[Decision]) -> Vec<ImagePlan> {
    let kept: BTreeSet<&str> = decisions
        .iter()
        .filter(|d| d.action == Action::Keep)
        .filter_map(|d| d.digest.as_deref())
        .collect();
    let mut deleted: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for d in decisions.iter().filter(|d| d.action == Action::Delete) {
        if let Some(digest) = d.digest.as_deref() {
            deleted.entry(digest).or_default().push(d.tag.clone());
        }
    }
    deleted
        .into_iter()
        .map(|(digest, tags)| ImagePlan {
            digest: digest.to_string(),
            tags,
            delete_digest: !kept.contains(digest),
        })
        .collect()
}

#[cfg(test)]
mod tests;
