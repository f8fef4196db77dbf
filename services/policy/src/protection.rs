//! What no policy may delete: a registry's protection list (tag patterns,
//! digests, repository globs) and the digests clients mark as in use. The
//! planner keeps what it protects, and the scrubber checks it again right
//! before each DELETE, so a mark made after a plan still stops it.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::rules::anchored;
use crate::{Selector, validate_digest};

/// Most entries in each of a protection list's three lists.
pub const MAX_PROTECTION_ENTRIES: usize = 256;

/// Checks one entry of a list.
type Check = fn(&str) -> Result<(), String>;

/// A registry's protection list as the API and the store carry it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProtectionSpec {
    /// Tags matching any of these (anchored) are never deleted.
    pub tag_patterns: Vec<String>,
    /// Manifests never deleted, nor anything they reach.
    pub digests: Vec<String>,
    /// Repositories (globs, as policy selectors) nothing is deleted from.
    pub repository_globs: Vec<String>,
}

impl ProtectionSpec {
    pub fn is_empty(&self) -> bool {
        self.tag_patterns.is_empty() && self.digests.is_empty() && self.repository_globs.is_empty()
    }

    /// The first glob that protects `repository` whole, if any.
    pub fn repository_glob(&self, repository: &str) -> Option<&str> {
        self.repository_globs
            .iter()
            .find(|g| Selector::parse(g).is_ok_and(|s| s.is_match(repository)))
            .map(String::as_str)
    }

    /// Every problem, as (field under the list, reason): `tag_patterns[2]`.
    pub fn violations(&self) -> Vec<(String, String)> {
        let mut found = Vec::new();
        let lists: [(&str, &[String], Check); 3] = [
            ("tag_patterns", &self.tag_patterns, |p| anchored(p).map(drop)),
            ("digests", &self.digests, validate_digest),
            ("repository_globs", &self.repository_globs, |g| Selector::parse(g).map(drop)),
        ];
        for (field, entries, check) in lists {
            if entries.len() > MAX_PROTECTION_ENTRIES {
                found.push((
                    field.to_string(),
                    format!("must have at most {MAX_PROTECTION_ENTRIES} entries"),
                ));
                continue;
            }
            for (i, entry) in entries.iter().enumerate() {
                if let Err(reason) = check(entry) {
                    found.push((format!("{field}[{i}]"), reason));
                }
            }
        }
        found
    }
}

/// A client's mark on a digest: in use, by `holder`, until `until`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InUse {
    pub digest: String,
    pub holder: String,
    pub until: DateTime<Utc>,
}

/// Why something may not be deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shield {
    /// The repository matches a protection glob.
    Repository(String),
    /// The tag matches a protection pattern.
    Tag(String),
    /// The digest is on the protection list.
    Digest,
    /// A client marked the digest in use.
    InUse { holder: String, until: DateTime<Utc> },
}

impl std::fmt::Display for Shield {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // As written, in backquotes: a pattern's backslashes stay single.
            Self::Repository(glob) => write!(f, "repository protected by `{glob}`"),
            Self::Tag(pattern) => write!(f, "tag protected by `{pattern}`"),
            Self::Digest => f.write_str("digest protected"),
            Self::InUse { holder, until } => {
                write!(f, "in use by {holder} until {}", until.format("%Y-%m-%dT%H:%M:%SZ"))
            }
        }
    }
}

/// The protection of one repository, ready to apply.
#[derive(Clone, Debug, Default)]
pub struct Protection {
    repository: Option<String>,
    tags: Vec<(String, Regex)>,
    digests: BTreeSet<String>,
    /// The latest mark per digest.
    in_use: BTreeMap<String, (String, DateTime<Utc>)>,
}

impl Protection {
    /// Nothing protected.
    pub fn none() -> Self {
        Self::default()
    }

    /// `spec` applied to `repository`, with the marks of that repository
    /// that have not expired at `now`. A bad entry is an error: a list
    /// that cannot be read protects nothing the planner could trust.
    pub fn compile(
        spec: &ProtectionSpec,
        repository: &str,
        marks: impl IntoIterator<Item = InUse>,
        now: DateTime<Utc>,
    ) -> Result<Self, String> {
        if let Some((field, reason)) = spec.violations().into_iter().next() {
            return Err(format!("protection list: {field}: {reason}"));
        }
        let tags = spec
            .tag_patterns
            .iter()
            .map(|p| anchored(p).map(|r| (p.clone(), r)))
            .collect::<Result<_, _>>()?;
        let mut in_use: BTreeMap<String, (String, DateTime<Utc>)> = BTreeMap::new();
        for mark in marks.into_iter().filter(|m| m.until > now) {
            let entry = in_use.entry(mark.digest).or_insert((mark.holder.clone(), mark.until));
            if mark.until > entry.1 {
                *entry = (mark.holder, mark.until);
            }
        }
        Ok(Self {
            repository: spec.repository_glob(repository).map(String::from),
            tags,
            digests: spec.digests.iter().cloned().collect(),
            in_use,
        })
    }

    /// Why the whole repository is protected, if it is.
    pub fn repository(&self) -> Option<Shield> {
        self.repository.clone().map(Shield::Repository)
    }

    /// Why `tag` may not be deleted, if it may not.
    pub fn tag(&self, tag: &str) -> Option<Shield> {
        self.repository().or_else(|| {
            self.tags.iter().find(|(_, r)| r.is_match(tag)).map(|(p, _)| Shield::Tag(p.clone()))
        })
    }

    /// Why the manifest `digest` may not be deleted, if it may not.
    pub fn digest(&self, digest: &str) -> Option<Shield> {
        if let Some(shield) = self.repository() {
            return Some(shield);
        }
        if self.digests.contains(digest) {
            return Some(Shield::Digest);
        }
        let (holder, until) = self.in_use.get(digest)?;
        Some(Shield::InUse { holder: holder.clone(), until: *until })
    }

    /// Every digest protected by name or mark: kept, with all they reach,
    /// whether or not a tag points at them.
    pub fn pinned(&self) -> impl Iterator<Item = &str> {
        self.digests.iter().chain(self.in_use.keys()).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().expect("time")
    }

    #[test]
    fn every_bad_entry_is_named() {
        let spec = ProtectionSpec {
            tag_patterns: vec!["v.*".into(), "(".into()],
            digests: vec![D1.into(), "sha256:nothex".into()],
            repository_globs: vec!["".into()],
        };
        let fields: Vec<String> = spec.violations().into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, ["tag_patterns[1]", "digests[1]", "repository_globs[0]"]);
        let long = ProtectionSpec {
            tag_patterns: vec!["x".into(); MAX_PROTECTION_ENTRIES + 1],
            ..Default::default()
        };
        assert_eq!(long.violations()[0].0, "tag_patterns");
        assert!(Protection::compile(&spec, "a", [], at("2026-01-01T00:00:00Z")).is_err());
    }

    #[test]
    fn tags_digests_repositories_and_live_marks_protect() {
        let now = at("2026-01-01T00:00:00Z");
        let spec = ProtectionSpec {
            tag_patterns: vec![r"v\d+".into()],
            digests: vec![D1.into()],
            repository_globs: vec!["prod/**".into()],
        };
        let marks = [
            InUse { digest: D2.into(), holder: "a".into(), until: at("2026-01-01T01:00:00Z") },
            InUse { digest: D2.into(), holder: "b".into(), until: at("2026-01-01T02:00:00Z") },
            InUse { digest: "sha256:3".into(), holder: "c".into(), until: now },
        ];
        let p = Protection::compile(&spec, "dev/app", marks, now).expect("valid");
        assert_eq!(p.tag("v1"), Some(Shield::Tag(r"v\d+".into())));
        assert_eq!(p.tag("v1-rc"), None, "anchored");
        assert_eq!(p.digest(D1), Some(Shield::Digest));
        let Some(Shield::InUse { holder, .. }) = p.digest(D2) else { panic!("in use") };
        assert_eq!(holder, "b", "the latest mark is the one shown");
        assert_eq!(p.digest("sha256:3"), None, "an expired mark protects nothing");
        assert_eq!(p.pinned().count(), 2);
        let prod = Protection::compile(&spec, "prod/team/app", [], now).expect("valid");
        assert_eq!(prod.tag("anything"), Some(Shield::Repository("prod/**".into())));
        assert!(prod.digest(D2).is_some());
        assert_eq!(Protection::none().tag("v1"), None);
    }

    #[test]
    fn specs_reject_unknown_fields() {
        assert!(serde_json::from_str::<ProtectionSpec>(r#"{"tags": []}"#).is_err());
        let spec: ProtectionSpec = serde_json::from_str(r#"{"digests": []}"#).expect("valid");
        assert!(spec.is_empty());
    }
}
