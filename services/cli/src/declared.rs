//! The file `regsweep apply` reads and `regsweep export` writes: YAML (or
//! JSON) declaring registries, with references to their credentials and
//! never the secrets, and policies. Its JSON Schema is
//! `schema/regsweep.schema.json`. Unknown fields are errors, so a typo
//! never silently means a default; a policy is a dry run unless it says
//! `live: true`, as on the command line.

use std::time::Duration;

use regsweep_policy::{AgeSource, AttachmentPolicy, TagRuleSpec, TagState, VersionGroup};
use regsweep_proto::v1;
use regsweep_proto::{duration_from_std, duration_to_std};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The whole file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Declared {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub registries: Vec<RegistryEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<PolicyEntry>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryEntry {
    pub name: String,
    pub url: String,
    #[serde(default, skip_serializing_if = "Credentials::is_empty")]
    pub credentials: Credentials,
    #[serde(default, skip_serializing_if = "is_default")]
    pub rate_limit: f64,
    #[serde(default, skip_serializing_if = "is_default")]
    pub max_parallel_deletions: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub realm_allow_list: Vec<String>,
    #[serde(default, skip_serializing_if = "Protection::is_empty")]
    pub protection: Protection,
}

/// Where the worker and scrubber find the registry's credentials.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub username: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub password_file: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub password_env: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub docker_config: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Protection {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tag_patterns: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub digests: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repository_globs: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyEntry {
    pub name: String,
    pub registry: String,
    pub selector: String,
    #[serde(default, skip_serializing_if = "is_default")]
    pub priority: i32,
    pub cadence: String,
    /// Cleanups delete; without it the policy is a dry run.
    #[serde(default, skip_serializing_if = "is_default")]
    pub live: bool,
    #[serde(default, skip_serializing_if = "is_default")]
    pub disabled: bool,
    #[serde(default, skip_serializing_if = "is_default")]
    pub keep_n: i32,
    #[serde(default, skip_serializing_if = "Human::is_zero")]
    pub older_than: Human,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name_regex_delete: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name_regex_keep: String,
    #[serde(default, skip_serializing_if = "is_default")]
    pub attachments: AttachmentPolicy,
    #[serde(default, skip_serializing_if = "is_default")]
    pub age_source: AgeSource,
    #[serde(default, skip_serializing_if = "is_default")]
    pub max_delete_fraction: f64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RuleEntry>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleEntry {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tag_regex: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tag_glob: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub exclude_regex: String,
    #[serde(default, skip_serializing_if = "is_default")]
    pub tag_state: TagState,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub semver: String,
    #[serde(default, skip_serializing_if = "is_default")]
    pub keep_all: bool,
    #[serde(default, skip_serializing_if = "is_default")]
    pub keep_newest: i64,
    #[serde(default, skip_serializing_if = "Human::is_zero")]
    pub keep_within: Human,
    #[serde(default, skip_serializing_if = "is_default")]
    pub per: VersionGroup,
    #[serde(default, skip_serializing_if = "is_default")]
    pub count_prereleases: bool,
}

/// A duration as people write it: `30d`, `12h`, `0`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Human(pub Duration);

impl Human {
    fn is_zero(&self) -> bool {
        self.0.is_zero()
    }

    fn from_proto(d: Option<&regsweep_proto::pbjson_types::Duration>) -> Self {
        Self(d.and_then(duration_to_std).unwrap_or_default())
    }

    fn to_proto(self) -> Option<regsweep_proto::pbjson_types::Duration> {
        (!self.0.is_zero()).then(|| duration_from_std(self.0))
    }
}

impl Serialize for Human {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

impl<'de> Deserialize<'de> for Human {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A visitor, not an untagged enum: errors then keep their line.
        struct Written;
        impl serde::de::Visitor<'_> for Written {
            type Value = Human;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a duration such as 30d, 12h or 0")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Human, E> {
                regsweep_common::duration::parse(text).map(Human).map_err(E::custom)
            }

            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Human, E> {
                match n {
                    0 => Ok(Human(Duration::ZERO)),
                    n => Err(E::custom(format!("duration {n} needs a unit, like {n}d"))),
                }
            }

            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Human, E> {
                u64::try_from(n).map_err(|_| E::custom("a duration is not negative"))?;
                self.visit_u64(n.unsigned_abs())
            }
        }
        d.deserialize_any(Written)
    }
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

impl Credentials {
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

impl Protection {
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

impl RegistryEntry {
    pub fn from_proto(r: &v1::Registry) -> Self {
        let c = r.credentials.clone().unwrap_or_default();
        let p = r.protection.clone().unwrap_or_default();
        Self {
            name: r.name.clone(),
            url: r.url.clone(),
            credentials: Credentials {
                username: c.username,
                password_file: c.password_file,
                password_env: c.password_env,
                docker_config: c.docker_config,
            },
            rate_limit: r.rate_limit,
            max_parallel_deletions: r.max_parallel_deletions,
            realm_allow_list: r.realm_allow_list.clone(),
            protection: Protection {
                tag_patterns: p.tag_patterns,
                digests: p.digests,
                repository_globs: p.repository_globs,
            },
        }
    }

    pub fn to_proto(&self) -> v1::Registry {
        let c = &self.credentials;
        let p = &self.protection;
        v1::Registry {
            name: self.name.clone(),
            url: self.url.clone(),
            credentials: (!c.is_empty()).then(|| v1::RegistryCredentials {
                username: c.username.clone(),
                password_file: c.password_file.clone(),
                password_env: c.password_env.clone(),
                docker_config: c.docker_config.clone(),
            }),
            rate_limit: self.rate_limit,
            max_parallel_deletions: self.max_parallel_deletions,
            realm_allow_list: self.realm_allow_list.clone(),
            protection: Some(v1::RegistryProtection {
                tag_patterns: p.tag_patterns.clone(),
                digests: p.digests.clone(),
                repository_globs: p.repository_globs.clone(),
            }),
            ..Default::default()
        }
    }
}

impl PolicyEntry {
    pub fn from_proto(p: &v1::Policy) -> Self {
        Self {
            name: p.name.clone(),
            registry: p.registry.clone(),
            selector: p.repository_selector.clone(),
            priority: p.priority,
            cadence: p.cadence.clone(),
            live: !p.dry_run,
            disabled: p.disabled,
            keep_n: p.keep_n,
            older_than: Human::from_proto(p.older_than.as_ref()),
            name_regex_delete: p.name_regex_delete.clone(),
            name_regex_keep: p.name_regex_keep.clone(),
            attachments: match p.attachments() {
                v1::AttachmentPolicy::Keep => AttachmentPolicy::Keep,
                _ => AttachmentPolicy::DeleteWithSubject,
            },
            age_source: p.age_source().into(),
            max_delete_fraction: p.max_delete_fraction,
            rules: p.rules.iter().map(RuleEntry::from_proto).collect(),
        }
    }

    pub fn to_proto(&self) -> v1::Policy {
        v1::Policy {
            name: self.name.clone(),
            registry: self.registry.clone(),
            repository_selector: self.selector.clone(),
            priority: self.priority,
            cadence: self.cadence.clone(),
            dry_run: !self.live,
            disabled: self.disabled,
            keep_n: self.keep_n,
            older_than: self.older_than.to_proto(),
            name_regex_delete: self.name_regex_delete.clone(),
            name_regex_keep: self.name_regex_keep.clone(),
            attachments: match self.attachments {
                AttachmentPolicy::DeleteWithSubject => v1::AttachmentPolicy::DeleteWithSubject,
                AttachmentPolicy::Keep => v1::AttachmentPolicy::Keep,
            }
            .into(),
            age_source: v1::AgeSource::from(self.age_source).into(),
            max_delete_fraction: self.max_delete_fraction,
            rules: self.rules.iter().map(RuleEntry::to_proto).collect(),
            ..Default::default()
        }
    }
}

impl RuleEntry {
    /// Through the policy crate's rule, which owns the proto mapping.
    fn from_proto(r: &v1::PolicyRule) -> Self {
        let spec = TagRuleSpec::from(r);
        Self {
            name: spec.name,
            tag_regex: spec.tag_regex,
            tag_glob: spec.tag_glob,
            exclude_regex: spec.exclude_regex,
            tag_state: spec.tag_state,
            semver: spec.semver,
            keep_all: spec.keep_all,
            keep_newest: spec.keep_newest,
            keep_within: Human(Duration::from_secs(spec.keep_within_seconds.unsigned_abs())),
            per: spec.per,
            count_prereleases: spec.count_prereleases,
        }
    }

    fn to_proto(&self) -> v1::PolicyRule {
        let spec = TagRuleSpec {
            name: self.name.clone(),
            tag_regex: self.tag_regex.clone(),
            tag_glob: self.tag_glob.clone(),
            exclude_regex: self.exclude_regex.clone(),
            tag_state: self.tag_state,
            semver: self.semver.clone(),
            keep_all: self.keep_all,
            keep_newest: self.keep_newest,
            keep_within_seconds: i64::try_from(self.keep_within.0.as_secs()).unwrap_or(i64::MAX),
            per: self.per,
            count_prereleases: self.count_prereleases,
        };
        (&spec).into()
    }
}

/// The line (1-based) of the first `name: <name>` entry under `section`
/// (`registries` or `policies`) in `text`, for errors that name a line.
pub fn line_of(text: &str, section: &str, name: &str) -> Option<usize> {
    let mut in_section = false;
    for (i, line) in text.lines().enumerate() {
        if !line.starts_with([' ', '\t', '-', '#']) && !line.is_empty() {
            in_section = line.trim_end().trim_end_matches(':') == section;
            continue;
        }
        let trimmed = line.trim_start().trim_start_matches('-').trim_start();
        if let Some(value) = trimmed.strip_prefix("name:") {
            let value = value.split(" #").next().unwrap_or_default().trim();
            if in_section && value.trim_matches(['"', '\'']) == name {
                return Some(i + 1);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../../schema/example.yaml");

    #[test]
    fn the_example_reads_and_survives_the_proto_round_trip() {
        let declared: Declared = serde_yaml::from_str(EXAMPLE).expect("the example");
        assert_eq!(declared.registries.len(), 1);
        let [everything, team] = &declared.policies[..] else { panic!("two policies") };
        assert!(!everything.live, "a dry run unless it says live");
        assert!(team.live);
        assert_eq!(everything.older_than, Human(Duration::from_secs(30 * 86_400)));
        assert_eq!(team.rules[0].per, VersionGroup::Major);
        assert_eq!(team.rules[1].keep_within, Human(Duration::from_secs(7 * 86_400)));
        for p in &declared.policies {
            assert_eq!(&PolicyEntry::from_proto(&p.to_proto()), p);
        }
        let r = &declared.registries[0];
        assert_eq!(&RegistryEntry::from_proto(&r.to_proto()), r);
        let again: Declared =
            serde_yaml::from_str(&serde_yaml::to_string(&declared).expect("write")).expect("read");
        assert_eq!(again, declared);
    }

    #[test]
    fn unknown_fields_and_bad_values_name_their_line() {
        let typo = "policies:\n  - name: a\n    registry: r\n    selector: '**'\n    cadence: 1d\n    keep: 3\n";
        let e = serde_yaml::from_str::<Declared>(typo).expect_err("unknown field").to_string();
        assert!(e.contains("unknown field `keep`") && e.contains("line 6"), "{e}");
        let bad = "policies:\n  - name: a\n    registry: r\n    selector: '**'\n    cadence: 1d\n    older_than: 5\n";
        let e = serde_yaml::from_str::<Declared>(bad).expect_err("unitless").to_string();
        assert!(e.contains("line 6"), "{e}");
        let top = "registry: []\n";
        let e = serde_yaml::from_str::<Declared>(top).expect_err("unknown section").to_string();
        assert!(e.contains("unknown field `registry`"), "{e}");
    }

    #[test]
    fn entries_are_found_by_name_in_their_section() {
        assert_eq!(line_of(EXAMPLE, "registries", "hub"), Some(4));
        assert_eq!(line_of(EXAMPLE, "policies", "team"), Some(27));
        assert_eq!(line_of(EXAMPLE, "policies", "hub"), None);
        assert_eq!(line_of(EXAMPLE, "policies", "nope"), None);
    }
}
