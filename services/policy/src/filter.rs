//! The planner: what a policy deletes from one repository, decided over
//! the repository's graph (see `graph`), never over a flat list of tags.
//!
//! Tags are of three kinds. An *attachment* tag (a cosign `.sig`, `.att`
//! or `.sbom` tag, a referrers fallback tag, or any manifest with an OCI
//! `subject`) follows its subject and is never a candidate of its own. A
//! *platform* tag names a manifest that another tag's index lists
//! (`v1-amd64` beside the index `v1`): name rules apply to it, but it is
//! never ranked; it follows its index. Every other tag names an *image*.
//!
//! Images go through GitLab's filter: `latest` is kept; tags matching the
//! keep regex stay; candidates are the tags matching the delete regex; the
//! newest `keep_n` candidate images stay (an image is a digest: its tags
//! stay together); of the rest only those older than `older_than` go
//! (with no `older_than`, every one goes). Ages come from `age`: unknown
//! ages rank after known ones and are never old enough; ties are broken by
//! first-seen time, then by digest, never by tag name.
//!
//! Then the plan closes over references: nothing reachable from a kept tag
//! (children, attachments, their children, ...) is deleted by digest; a
//! deleted image takes with it the children and attachments nothing kept
//! reaches, ordered so that a puller never meets a reference to a deleted
//! manifest. A graph that could not be read whole deletes nothing.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use semver::Version;
use serde::{Deserialize, Serialize};

use crate::age::{self, AgeFrom};
use crate::graph::{Graph, ManifestLinks, Walk, attachment_subject};
use crate::protection::{Protection, Shield};
use crate::ruleset::{Age, Member, RuleRef, Selection, version_of};
use crate::{AttachmentPolicy, Rules};

/// One tag as the worker read it from the registry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TagInput {
    pub tag: String,
    /// `None` when the tag could not be resolved: the plan then deletes
    /// nothing (the graph is incomplete).
    pub digest: Option<String>,
    /// The image's `created`, as written (it may lie; see `age`).
    pub created: Option<DateTime<Utc>>,
    /// When regsweep first saw this tag on this digest, if known.
    pub first_seen: Option<DateTime<Utc>>,
}

/// Everything the planner knows of one repository.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inventory {
    pub tags: Vec<TagInput>,
    /// The links of every manifest read, by digest.
    pub manifests: BTreeMap<String, ManifestLinks>,
    /// What could not be read; any gap blocks every deletion.
    pub gaps: Vec<String>,
}

impl Inventory {
    /// A repository of plain images: tags and nothing known about links.
    pub fn from_tags(tags: Vec<TagInput>) -> Self {
        Self { tags, ..Self::default() }
    }
}

/// The rule that decided a tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// On the registry's protection list (tag, digest or repository).
    Protected,
    /// Marked in use by a client.
    InUse,
    Latest,
    KeepRegex,
    NotMatchingDeleteRegex,
    /// Listed rules: none selects the tag.
    NotSelected,
    /// Selected by a `keep_all` rule.
    KeepAll,
    /// Among the highest versions of its group (`per`).
    KeepVersion,
    /// Could not be read: kept, and the plan deletes nothing.
    Unresolved,
    KeepN,
    NewerThan,
    /// An age rule applies and the image's age is unknown.
    AgeUnknown,
    Delete,
    /// A platform of a kept index, or reachable from a kept tag.
    KeptWithIndex,
    /// An attachment of a kept image.
    KeptWithSubject,
    /// A platform of a deleted index: it goes with it.
    DeletedWithIndex,
    /// An attachment of a deleted image: it goes with it.
    DeletedWithSubject,
    /// An attachment of a deleted image, kept by the policy's
    /// `attachments: keep`.
    AttachmentsKept,
    /// An attachment whose subject is not in the repository.
    SubjectMissing,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Keep,
    Delete,
}

/// What a tag names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TagKind {
    Image,
    /// A manifest another tag's index lists.
    Platform,
    /// A signature, SBOM, attestation or referrers index.
    Attachment,
}

/// The decision on one tag.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub tag: String,
    pub digest: Option<String>,
    /// The image's `created` as written.
    pub created: Option<DateTime<Utc>>,
    pub action: Action,
    pub rule: Rule,
    pub kind: TagKind,
    /// The age the decision used, and where it came from.
    pub age: Option<DateTime<Utc>>,
    pub age_from: AgeFrom,
    /// The subject (attachments) or index (platforms) the tag follows.
    pub follows: Option<String>,
    /// Why a `protected` or `in_use` tag is shielded, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shield: Option<String>,
    /// The listed rule that decided (`keep_n`, `delete`, ... or, for
    /// `not_selected`, the first rule that excluded the tag); none for a
    /// policy of the single-rule fields and for what no rule decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<RuleRef>,
}

/// How a linked manifest relates to the image it goes with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Relation {
    /// Listed by an index of the image (a platform, an artifact).
    Child,
    /// Attached to the image or to one of its manifests.
    Attachment,
}

/// A manifest deleted together with an image, and its tags that go with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Linked {
    pub digest: String,
    pub tags: Vec<String>,
    pub relation: Relation,
    /// The manifests it is attached to: it stays while any of them is kept
    /// (a subject may gain a tag after planning).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subjects: Vec<String>,
}

/// What must go for one image: its planned tags, the digest itself only
/// when nothing kept reaches it (else its tags are untagged one by one),
/// and the manifests that go with it, in the order they are deleted:
/// `before` the digest (what references it), then `after` it (what it
/// references).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImagePlan {
    pub digest: String,
    /// By name.
    pub tags: Vec<String>,
    pub delete_digest: bool,
    #[serde(default)]
    pub before: Vec<Linked>,
    #[serde(default)]
    pub after: Vec<Linked>,
    /// The manifests the image itself is attached to (when it is an
    /// artifact): its digest stays while any of them is kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subjects: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// One per distinct input tag, by tag name.
    pub decisions: Vec<Decision>,
    /// One per image with a deleted tag, by digest; empty when blocked.
    pub images: Vec<ImagePlan>,
    /// Why nothing may be deleted, when the graph was not read whole.
    pub blocked: Option<String>,
}

impl Plan {
    /// Tags the plan deletes.
    pub fn deleted_tags(&self) -> usize {
        self.decisions.iter().filter(|d| d.action == Action::Delete).count()
    }

    /// Distinct manifests the plan deletes by digest.
    pub fn deleted_digests(&self) -> usize {
        self.deleted_manifests().len()
    }

    /// The manifests the plan deletes by digest: each image deleted
    /// outright with what goes before and after it.
    pub fn deleted_manifests(&self) -> BTreeSet<&str> {
        let mut digests = BTreeSet::new();
        for image in self.images.iter().filter(|i| i.delete_digest) {
            digests.insert(image.digest.as_str());
            digests.extend(image.before.iter().chain(&image.after).map(|l| l.digest.as_str()));
        }
        digests
    }
}

/// The decision on a tag settled by its name alone, and the listed rule
/// that made it: `latest`, a tag no rule selects, and a platform tag a
/// `keep_all` rule selects. Other image tags are ranked; other platform
/// tags follow their index.
fn settled_by_name(rules: &Rules, t: &Tagged<'_>) -> Option<(Rule, Option<usize>)> {
    let selection = t.selection;
    if t.input.tag == "latest" {
        return Some((Rule::Latest, None));
    }
    if selection.selected == 0 {
        let excluded = (selection.excluded != 0).then(|| selection.excluded.trailing_zeros());
        return Some(match (rules.is_listed(), excluded) {
            (true, by) => (Rule::NotSelected, by.map(|i| i as usize)),
            (false, Some(_)) => (Rule::KeepRegex, None),
            (false, None) => (Rule::NotMatchingDeleteRegex, None),
        });
    }
    match t.kind {
        TagKind::Platform => rules.list().keeps_all(selection).map(|i| (Rule::KeepAll, Some(i))),
        _ => None,
    }
}

/// A tag name given twice is decided once, from its most cautious reading
/// (unresolved first, then an unknown creation time), whatever the order.
fn dedup(mut tags: Vec<TagInput>) -> Vec<TagInput> {
    tags.sort_by(|a, b| {
        let key = |t: &TagInput| (t.digest.is_some(), t.created.is_some(), t.created);
        a.tag.cmp(&b.tag).then_with(|| key(a).cmp(&key(b))).then_with(|| a.digest.cmp(&b.digest))
    });
    tags.dedup_by(|later, first| later.tag == first.tag);
    tags
}

/// What the planner works out per tag before the closure.
struct Tagged<'a> {
    input: &'a TagInput,
    kind: TagKind,
    follows: Option<String>,
    /// Decided by name or by rank; `None` for a follower still to decide.
    rule: Option<Rule>,
    /// The listed rule that decided, from 0.
    by: Option<usize>,
    age: Age,
    shield: Option<Shield>,
    version: Option<Version>,
    /// Which rules select it (image and platform tags).
    selection: Selection,
}

/// Decides every tag of `inventory` at `now`, with nothing protected.
pub fn plan(rules: &Rules, inventory: Inventory, now: DateTime<Utc>) -> Plan {
    plan_protected(rules, inventory, &Protection::none(), now)
}

/// Decides every tag of `inventory` at `now`. See the module comment.
/// Whatever `protection` shields is kept, with everything it reaches.
pub fn plan_protected(
    rules: &Rules,
    inventory: Inventory,
    protection: &Protection,
    now: DateTime<Utc>,
) -> Plan {
    let tags = dedup(inventory.tags);
    // Attachments by tag name (cosign, referrers fallback).
    let named: Vec<Option<String>> = tags.iter().map(|t| attachment_subject(&t.tag)).collect();
    let mut graph = Graph::new(&inventory.manifests);
    let known = Known { manifests: &inventory.manifests, protection };
    let mut tagged = classify(&tags, &named, known, &mut graph, rules, now);
    rank(rules, &mut tagged, now);
    let pinned: Vec<&str> = protection.pinned().collect();
    let closure = Closure::settle(&graph, &mut tagged, &pinned, rules.spec().attachments);
    let mut blocked = inventory.gaps.first().map(|g| format!("graph incomplete: {g}"));
    if let Some(t) = tagged.iter().find(|t| t.rule == Some(Rule::Unresolved)) {
        blocked.get_or_insert(format!("graph incomplete: tag {} could not be read", t.input.tag));
    }
    if let Some(i) = rules.list().needs_untagged() {
        // Never guess what the registry holds untagged.
        blocked.get_or_insert(format!(
            "rule {} selects untagged manifests, which cannot be listed in this registry",
            i + 1
        ));
    }
    let decisions: Vec<Decision> = tagged.iter().map(|t| decide(rules, t)).collect();
    let images = match &blocked {
        Some(_) => Vec::new(),
        None => match closure.images(&graph, &decisions) {
            Some(images) => images,
            None => {
                blocked = Some("manifest graph has a cycle".into());
                Vec::new()
            }
        },
    };
    Plan { decisions, images, blocked }
}

/// What the planner knows besides the tags: the manifests read and what
/// is protected.
#[derive(Clone, Copy)]
struct Known<'a> {
    manifests: &'a BTreeMap<String, ManifestLinks>,
    protection: &'a Protection,
}

fn classify<'a>(
    tags: &'a [TagInput],
    named: &'a [Option<String>],
    known: Known<'_>,
    graph: &mut Graph<'a>,
    rules: &Rules,
    now: DateTime<Utc>,
) -> Vec<Tagged<'a>> {
    // Attachments by tag name join the graph before platforms are found.
    for (t, subject) in tags.iter().zip(named) {
        if let (Some(digest), Some(subject)) = (&t.digest, subject) {
            graph.attach(digest, subject);
        }
    }
    // Which tagged manifest lists which: a platform's index.
    let mut index_of: BTreeMap<&str, &str> = BTreeMap::new();
    for digest in tags.iter().filter_map(|t| t.digest.as_deref()) {
        for child in graph.descendants(digest) {
            if child != digest {
                index_of.entry(child).or_insert(digest);
            }
        }
    }
    let source = rules.spec().age_source;
    tags.iter()
        .zip(named)
        .map(|(input, by_name)| {
            let digest = input.digest.as_deref();
            let subject = by_name.clone().or_else(|| known.manifests.get(digest?)?.subject.clone());
            let (kind, follows) = match (subject, digest.and_then(|d| index_of.get(d))) {
                (Some(subject), _) => (TagKind::Attachment, Some(subject)),
                (None, Some(index)) => (TagKind::Platform, Some((*index).to_string())),
                (None, None) => (TagKind::Image, None),
            };
            let shield = digest.and_then(|d| {
                known.protection.tag(&input.tag).or_else(|| known.protection.digest(d))
            });
            let version = (kind != TagKind::Attachment).then(|| version_of(&input.tag)).flatten();
            let selection = match kind {
                TagKind::Attachment => Selection::default(),
                _ => rules.list().select(&input.tag, version.as_ref()),
            };
            let age = age::effective(source, input.created, input.first_seen, now);
            let mut t = Tagged {
                input,
                kind,
                follows,
                rule: None,
                by: None,
                age,
                shield,
                version,
                selection,
            };
            (t.rule, t.by) = match (kind, &t.shield) {
                // Even an unreadable attachment blocks the plan.
                _ if digest.is_none() => (Some(Rule::Unresolved), None),
                (_, Some(Shield::InUse { .. })) => (Some(Rule::InUse), None),
                (_, Some(_)) => (Some(Rule::Protected), None),
                (TagKind::Attachment, None) => (None, None),
                _ => settled_by_name(rules, &t).map_or((None, None), |(rule, by)| (Some(rule), by)),
            };
            t
        })
        .collect()
}

/// Decides the image tags no name settled, by the listed rules (or the
/// single rule): kept by the first rule that keeps them, else deleted by
/// the first that selects them.
fn rank(rules: &Rules, tagged: &mut [Tagged<'_>], now: DateTime<Utc>) {
    let open: Vec<usize> = (0..tagged.len())
        .filter(|&i| tagged[i].kind == TagKind::Image && tagged[i].rule.is_none())
        .filter(|&i| tagged[i].input.digest.is_some())
        .collect();
    let verdicts = {
        let members: Vec<Member<'_>> = open
            .iter()
            .map(|&i| {
                let t = &tagged[i];
                Member {
                    digest: t.input.digest.as_deref().unwrap_or_default(),
                    age: t.age,
                    first_seen: t.input.first_seen,
                    version: t.version.as_ref(),
                    selection: t.selection,
                }
            })
            .collect();
        rules.list().decide(&members, now)
    };
    for (i, verdict) in open.into_iter().zip(verdicts) {
        let t = &mut tagged[i];
        (t.rule, t.by, t.age) = (Some(verdict.rule), Some(verdict.by), verdict.age);
    }
}

fn decide(rules: &Rules, t: &Tagged<'_>) -> Decision {
    let rule = t.rule.unwrap_or(match t.kind {
        TagKind::Attachment => Rule::SubjectMissing,
        _ => Rule::KeptWithIndex,
    });
    let action = match rule {
        Rule::Delete | Rule::DeletedWithIndex | Rule::DeletedWithSubject => Action::Delete,
        _ => Action::Keep,
    };
    Decision {
        tag: t.input.tag.clone(),
        digest: t.input.digest.clone(),
        created: t.input.created,
        action,
        rule,
        kind: t.kind,
        age: t.age.0,
        age_from: t.age.1,
        follows: t.follows.clone(),
        shield: t.shield.as_ref().map(ToString::to_string),
        by: t.by.filter(|_| rules.is_listed()).and_then(|i| rules.list().rule_ref(i)),
    }
}

/// The two sets the plan closes over: manifests something kept reaches
/// (never deleted by digest), and manifests that go with a deleted image.
struct Closure<'a> {
    doomed: BTreeSet<&'a str>,
    roots: BTreeSet<&'a str>,
    walk: Walk,
}

impl<'a> Closure<'a> {
    /// Decides the followers, growing the kept set until nothing changes:
    /// a follower that is neither reached from a kept tag nor doomed with a
    /// deleted image is kept, and what it reaches is kept with it.
    /// `pinned` digests are kept whether or not a tag names them.
    fn settle(
        graph: &Graph<'a>,
        tagged: &mut [Tagged<'a>],
        pinned: &[&'a str],
        attachments: AttachmentPolicy,
    ) -> Self {
        let walk = match attachments {
            AttachmentPolicy::DeleteWithSubject => Walk::Everything,
            AttachmentPolicy::Keep => Walk::Children,
        };
        let mut pending: Vec<usize> =
            (0..tagged.len()).filter(|&i| tagged[i].rule.is_none()).collect();
        // Attachments found doomed while their subject is not: kept, and
        // what they reach with them (an attachment goes only with its subject).
        let mut spared: BTreeSet<&'a str> = BTreeSet::new();
        loop {
            let kept_roots = tagged
                .iter()
                .filter(|t| t.rule.is_some_and(|r| r != Rule::Delete))
                .filter_map(|t| t.input.digest.as_deref())
                .chain(spared.iter().copied())
                .chain(pinned.iter().copied());
            let kept = graph.closure(kept_roots, Walk::Everything);
            let roots: BTreeSet<&'a str> = tagged
                .iter()
                .filter(|t| t.rule == Some(Rule::Delete))
                .filter_map(|t| t.input.digest.as_deref())
                .filter(|d| !kept.contains(d))
                .collect();
            let mut doomed = graph.closure(roots.iter().copied(), walk);
            doomed.retain(|d| !kept.contains(d));
            let stranded: Vec<&'a str> = doomed
                .iter()
                .copied()
                .filter(|d| graph.subjects_of(d).any(|s| !doomed.contains(s)))
                .collect();
            if !stranded.is_empty() {
                spared.extend(stranded);
                continue;
            }
            let before = pending.len();
            pending.retain(|&i| {
                let t = &mut tagged[i];
                let Some(digest) = t.input.digest.as_deref() else { return true };
                if kept.contains(digest) || doomed.contains(digest) {
                    return true;
                }
                t.rule = Some(unreached(t, &doomed));
                false
            });
            if pending.len() == before {
                for &i in &pending {
                    tagged[i].rule = follow(&tagged[i], &kept, &doomed);
                }
                return Self { doomed, roots, walk };
            }
        }
    }

    /// One plan per image with a deleted image tag; `None` on a cycle.
    fn images(&self, graph: &Graph<'a>, decisions: &[Decision]) -> Option<Vec<ImagePlan>> {
        let mut deleted_tags: BTreeMap<&str, Vec<(String, TagKind)>> = BTreeMap::new();
        for d in decisions.iter().filter(|d| d.action == Action::Delete) {
            if let Some(digest) = d.digest.as_deref() {
                deleted_tags.entry(digest).or_default().push((d.tag.clone(), d.kind));
            }
        }
        let tags_of = |digest: &str| -> Vec<String> {
            deleted_tags.get(digest).into_iter().flatten().map(|(t, _)| t.clone()).collect()
        };
        let mut images = Vec::new();
        for (&digest, tags) in &deleted_tags {
            if !tags.iter().any(|(_, kind)| *kind == TagKind::Image) {
                continue;
            }
            let delete_digest = self.roots.contains(digest);
            let (before, after) = if delete_digest {
                self.linked(graph, digest, &tags_of)?
            } else {
                Default::default()
            };
            let tags = tags.iter().map(|(t, _)| t.clone()).collect();
            images.push(ImagePlan {
                digest: digest.to_string(),
                tags,
                delete_digest,
                before,
                after,
                subjects: graph.subjects_of(digest).map(String::from).collect(),
            });
        }
        Some(images)
    }

    /// What goes with the image `root`, split around it in delete order.
    fn linked(
        &self,
        graph: &Graph<'a>,
        root: &'a str,
        tags_of: &dyn Fn(&str) -> Vec<String>,
    ) -> Option<(Vec<Linked>, Vec<Linked>)> {
        let mut group = graph.closure([root], self.walk);
        group.retain(|d| self.doomed.contains(d));
        let children = graph.closure([root], Walk::Children);
        let order = graph.top_down(&group)?;
        let split = order.iter().position(|d| *d == root).unwrap_or(0);
        let link = |digest: &&str| Linked {
            digest: digest.to_string(),
            tags: tags_of(digest),
            relation: if children.contains(digest) {
                Relation::Child
            } else {
                Relation::Attachment
            },
            subjects: graph.subjects_of(digest).map(String::from).collect(),
        };
        let before = order[..split].iter().map(link).collect();
        let after = order[split + 1..].iter().map(link).collect();
        Some((before, after))
    }
}

/// The rule of a follower that nothing kept reaches and no deleted image
/// takes with it: it is kept.
fn unreached(t: &Tagged<'_>, doomed: &BTreeSet<&str>) -> Rule {
    match (t.kind, t.follows.as_deref()) {
        // Only `attachments: keep` spares an attachment of a deleted image.
        (TagKind::Attachment, Some(subject)) if doomed.contains(subject) => Rule::AttachmentsKept,
        (TagKind::Attachment, _) => Rule::SubjectMissing,
        _ => Rule::KeptWithIndex,
    }
}

/// A follower's rule once the closure has settled.
fn follow(t: &Tagged<'_>, kept: &BTreeSet<&str>, doomed: &BTreeSet<&str>) -> Option<Rule> {
    let digest = t.input.digest.as_deref()?;
    let attachment = t.kind == TagKind::Attachment;
    Some(match (kept.contains(digest), attachment) {
        (true, false) => Rule::KeptWithIndex,
        (true, true) => Rule::KeptWithSubject,
        (false, false) if doomed.contains(digest) => Rule::DeletedWithIndex,
        (false, true) if doomed.contains(digest) => Rule::DeletedWithSubject,
        _ => unreached(t, doomed),
    })
}

#[cfg(test)]
mod tests;
