//! Plans on the wire: the policy's types to and from the gRPC messages
//! that carry them (the worker's submission, the scrubber's store, the
//! preview), written once.

use regsweep_proto::{timestamp_from_chrono, timestamp_to_chrono, v1};

use crate::{
    AgeSource, Decision, ImagePlan, InUse, Linked, Protection, ProtectionSpec, Relation,
    TagRuleSpec, TagState, VersionGroup,
};

impl From<AgeSource> for v1::AgeSource {
    fn from(s: AgeSource) -> Self {
        match s {
            AgeSource::Auto => Self::Auto,
            AgeSource::Created => Self::Created,
            AgeSource::FirstSeen => Self::FirstSeen,
        }
    }
}

impl From<v1::AgeSource> for AgeSource {
    fn from(s: v1::AgeSource) -> Self {
        match s {
            v1::AgeSource::Unspecified | v1::AgeSource::Auto => Self::Auto,
            v1::AgeSource::Created => Self::Created,
            v1::AgeSource::FirstSeen => Self::FirstSeen,
        }
    }
}

impl From<&v1::PolicyRule> for TagRuleSpec {
    /// Out-of-range numbers and unknown enum values are kept as they are
    /// or read as invalid, so that validation names them.
    fn from(r: &v1::PolicyRule) -> Self {
        let keep_within_seconds = match &r.keep_within {
            None => 0,
            Some(d) => match regsweep_proto::duration_to_std(d) {
                Some(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                None => -1,
            },
        };
        Self {
            name: r.name.clone(),
            tag_regex: r.tag_regex.clone(),
            tag_glob: r.tag_glob.clone(),
            exclude_regex: r.exclude_regex.clone(),
            tag_state: match r.tag_state() {
                v1::TagState::Unspecified | v1::TagState::Tagged => TagState::Tagged,
                v1::TagState::Untagged => TagState::Untagged,
                v1::TagState::Any => TagState::Any,
            },
            semver: r.semver.clone(),
            keep_all: r.keep_all,
            keep_newest: i64::from(r.keep_newest),
            keep_within_seconds,
            per: match r.per() {
                v1::VersionGroup::Unspecified => VersionGroup::None,
                v1::VersionGroup::Major => VersionGroup::Major,
                v1::VersionGroup::Minor => VersionGroup::Minor,
            },
            count_prereleases: r.count_prereleases,
        }
    }
}

impl From<&TagRuleSpec> for v1::PolicyRule {
    fn from(r: &TagRuleSpec) -> Self {
        let tag_state = match r.tag_state {
            TagState::Tagged => v1::TagState::Tagged,
            TagState::Untagged => v1::TagState::Untagged,
            TagState::Any => v1::TagState::Any,
        };
        let per = match r.per {
            VersionGroup::None => v1::VersionGroup::Unspecified,
            VersionGroup::Major => v1::VersionGroup::Major,
            VersionGroup::Minor => v1::VersionGroup::Minor,
        };
        Self {
            name: r.name.clone(),
            tag_regex: r.tag_regex.clone(),
            tag_glob: r.tag_glob.clone(),
            exclude_regex: r.exclude_regex.clone(),
            tag_state: tag_state.into(),
            semver: r.semver.clone(),
            keep_all: r.keep_all,
            keep_newest: i32::try_from(r.keep_newest).unwrap_or(i32::MAX),
            keep_within: u64::try_from(r.keep_within_seconds)
                .ok()
                .filter(|s| *s > 0)
                .map(|s| regsweep_proto::duration_from_std(std::time::Duration::from_secs(s))),
            per: per.into(),
            count_prereleases: r.count_prereleases,
        }
    }
}

impl From<&Linked> for v1::LinkedManifest {
    fn from(l: &Linked) -> Self {
        let relation = match l.relation {
            Relation::Child => v1::LinkRelation::Child,
            Relation::Attachment => v1::LinkRelation::Attachment,
        };
        Self {
            digest: l.digest.clone(),
            tags: l.tags.clone(),
            relation: relation.into(),
            subjects: l.subjects.clone(),
        }
    }
}

impl From<&v1::LinkedManifest> for Linked {
    fn from(l: &v1::LinkedManifest) -> Self {
        let relation = match l.relation() {
            v1::LinkRelation::Attachment => Relation::Attachment,
            v1::LinkRelation::Child | v1::LinkRelation::Unspecified => Relation::Child,
        };
        Self {
            digest: l.digest.clone(),
            tags: l.tags.clone(),
            relation,
            subjects: l.subjects.clone(),
        }
    }
}

impl From<&ImagePlan> for v1::ImageDeletion {
    fn from(i: &ImagePlan) -> Self {
        Self {
            digest: i.digest.clone(),
            tags: i.tags.clone(),
            delete_digest: i.delete_digest,
            before: i.before.iter().map(Into::into).collect(),
            after: i.after.iter().map(Into::into).collect(),
            reasons: Vec::new(),
            subjects: i.subjects.clone(),
        }
    }
}

impl crate::Plan {
    /// The plan's images as submitted, each with the rule that decided
    /// every tag it takes (its own and its linked manifests').
    pub fn image_deletions(&self) -> Vec<v1::ImageDeletion> {
        let rules: std::collections::HashMap<&str, String> =
            self.decisions.iter().map(|d| (d.tag.as_str(), name(&d.rule))).collect();
        self.images
            .iter()
            .map(|image| {
                let linked = image.before.iter().chain(&image.after).flat_map(|l| &l.tags);
                let reasons = image
                    .tags
                    .iter()
                    .chain(linked)
                    .filter_map(|tag| {
                        let rule = rules.get(tag.as_str())?.clone();
                        Some(v1::TagReason { tag: tag.clone(), rule })
                    })
                    .collect();
                v1::ImageDeletion { reasons, ..image.into() }
            })
            .collect()
    }
}

impl From<&crate::PlanSize> for v1::PlanSize {
    fn from(s: &crate::PlanSize) -> Self {
        Self {
            repository_tags: s.repository_tags,
            repository_images: s.repository_images,
            deleted_tags: s.deleted_tags,
            deleted_images: s.deleted_images,
            leaves_only_latest: s.leaves_only_latest,
        }
    }
}

/// A snake_case name of a serde unit variant (`Rule::KeepN` -> `keep_n`).
fn name<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

impl From<&Decision> for v1::TagDecision {
    fn from(d: &Decision) -> Self {
        let action = match d.action {
            crate::Action::Keep => v1::TagAction::Keep,
            crate::Action::Delete => v1::TagAction::Delete,
        };
        Self {
            tag: d.tag.clone(),
            digest: d.digest.clone().unwrap_or_default(),
            created: d.created.map(timestamp_from_chrono),
            action: action.into(),
            rule: name(&d.rule),
            kind: name(&d.kind),
            follows: d.follows.clone().unwrap_or_default(),
            age: d.age.map(timestamp_from_chrono),
            age_from: name(&d.age_from),
            shield: d.shield.clone().unwrap_or_default(),
            rule_position: d.by.as_ref().map_or(0, |b| b.position),
            rule_name: d.by.as_ref().map(|b| b.name.clone()).unwrap_or_default(),
        }
    }
}

impl From<v1::RegistryProtection> for ProtectionSpec {
    fn from(p: v1::RegistryProtection) -> Self {
        Self {
            tag_patterns: p.tag_patterns,
            digests: p.digests,
            repository_globs: p.repository_globs,
        }
    }
}

impl From<&ProtectionSpec> for v1::RegistryProtection {
    fn from(p: &ProtectionSpec) -> Self {
        Self {
            tag_patterns: p.tag_patterns.clone(),
            digests: p.digests.clone(),
            repository_globs: p.repository_globs.clone(),
        }
    }
}

/// The protection of one repository from the scheduler's answer, with
/// marks live at the scheduler's clock when it answered.
pub fn protection_from_proto(
    repository: &str,
    answer: v1::GetProtectionResponse,
) -> Result<Protection, String> {
    let spec = ProtectionSpec::from(answer.protection.unwrap_or_default());
    let now = answer.now.as_ref().and_then(timestamp_to_chrono).ok_or("protection: no time")?;
    let marks = answer.in_use.into_iter().map(|m| InUse {
        until: m.expires_at.as_ref().and_then(timestamp_to_chrono).unwrap_or(now),
        digest: m.digest,
        holder: m.holder,
    });
    Protection::compile(&spec, repository, marks, now)
}
