//! The bodies of regsweep's fuzz targets, one function per parser of
//! outside input. Each takes raw bytes, must never panic, and checks the
//! invariants its parser promises. `fuzz/fuzz_targets/` (at the top of the
//! repository) runs them under
//! libFuzzer (`cargo +nightly fuzz run NAME`); `tests/smoke.rs` runs them
//! on stable in every test run, over seeds and generated inputs.

use arbitrary::{Arbitrary, Unstructured};
use chrono::{DateTime, TimeZone as _, Utc};
use regsweep_policy::{
    Action, Cadence, Inventory, RuleSpec, Rules, Selector, TagInput, TagRuleSpec, VersionGroup,
};

/// A target: raw bytes in, a panic on a broken promise.
pub type Target = fn(&[u8]);

/// The targets by name, for the smoke runner.
pub const TARGETS: [(&str, Target); 7] = [
    ("policy_fields", policy_fields),
    ("tag_filter", tag_filter),
    ("job_args", job_args),
    ("registry_headers", registry_headers),
    ("manifest", manifest),
    ("durations", durations),
    ("selector_overlap", selector_overlap),
];

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).single().unwrap_or_default()
}

#[derive(Arbitrary, Debug)]
struct PolicyInput {
    keep_n: i64,
    older_than_seconds: i64,
    name_regex_delete: String,
    name_regex_keep: String,
    selector: String,
    cadence: String,
    repository: String,
    tag: String,
    /// The same fields as one listed rule, with a glob and a range.
    listed: Option<(String, String, u8)>,
}

/// Two repository selectors as policies carry them: the overlap check
/// never panics, and a witness it names is a valid repository name both
/// select.
pub fn selector_overlap(data: &[u8]) {
    let Ok((a, b)) = <(String, String)>::arbitrary(&mut Unstructured::new(data)) else { return };
    let (Ok(a), Ok(b)) = (Selector::parse(&a), Selector::parse(&b)) else { return };
    let Ok(overlap) = a.overlap(&b) else { return };
    if let Some(name) = overlap {
        assert!(a.is_match(&name) && b.is_match(&name), "both select the witness {name:?}");
        assert!(regsweep_policy::validate_repository_name(&name).is_ok(), "valid: {name:?}");
    } else {
        assert!(
            !a.is_match(a.as_str())
                || !b.is_match(a.as_str())
                || regsweep_policy::validate_repository_name(a.as_str()).is_err(),
            "a literal selector both select is an overlap"
        );
    }
}

/// Policy fields as an API request carries them: validation agrees with
/// compilation, and what compiles runs.
pub fn policy_fields(data: &[u8]) {
    let Ok(input) = PolicyInput::arbitrary(&mut Unstructured::new(data)) else { return };
    let spec = match input.listed {
        None => RuleSpec {
            keep_n: input.keep_n,
            older_than_seconds: input.older_than_seconds,
            name_regex_delete: input.name_regex_delete,
            name_regex_keep: input.name_regex_keep,
            ..Default::default()
        },
        Some((tag_glob, semver, per)) => RuleSpec {
            rules: vec![TagRuleSpec {
                tag_regex: input.name_regex_delete,
                tag_glob,
                exclude_regex: input.name_regex_keep,
                semver,
                keep_newest: input.keep_n,
                keep_within_seconds: input.older_than_seconds,
                per: match per % 3 {
                    0 => VersionGroup::None,
                    1 => VersionGroup::Major,
                    _ => VersionGroup::Minor,
                },
                ..Default::default()
            }],
            ..Default::default()
        },
    };
    let violations =
        regsweep_policy::validate_policy_fields(&spec, &input.selector, &input.cadence);
    match Rules::compile(&spec) {
        Ok(rules) => {
            let tag = TagInput {
                tag: input.tag.clone(),
                digest: Some(format!("sha256:{:064x}", 1)),
                created: Some(now()),
                first_seen: None,
            };
            let plan = regsweep_policy::plan(&rules, Inventory::from_tags(vec![tag]), now());
            assert_eq!(plan.decisions.len(), 1, "one decision per tag");
        }
        // Validation reports every reason compilation fails, so an API
        // request is refused with its fields named, never later.
        Err(errors) => {
            for e in errors {
                assert!(
                    violations.iter().any(|v| v.field == e.field),
                    "compilation fails on {} but validation passed it",
                    e.field
                );
            }
        }
    }
    if let Ok(selector) = Selector::parse(&input.selector) {
        let _ = selector.is_match(&input.repository);
    }
    if let Ok(cadence) = Cadence::parse(&input.cadence) {
        let next = cadence.next_after(now());
        assert!(next.is_none_or(|n| n > now()), "a cadence's next run is in the future");
        let _ = cadence.advance(now(), now());
        let _ = Cadence::parse(&cadence.as_str()).expect("a cadence parses as it prints");
    }
    let _ = regsweep_policy::validate_repository_name(&input.repository);
    let _ = regsweep_policy::validate_tag(&input.tag);
}

#[derive(Arbitrary, Debug)]
struct FilterInput {
    keep_n: u8,
    older_than_days: u8,
    delete: String,
    keep: String,
    tags: Vec<(String, Option<u8>, Option<u16>)>,
}

/// The tag filter on arbitrary tags: every tag decided once, a kept tag
/// never planned, a digest deleted only when no kept tag shares it.
pub fn tag_filter(data: &[u8]) {
    let Ok(input) = FilterInput::arbitrary(&mut Unstructured::new(data)) else { return };
    let spec = RuleSpec {
        keep_n: i64::from(input.keep_n),
        older_than_seconds: i64::from(input.older_than_days) * 86_400,
        name_regex_delete: input.delete,
        name_regex_keep: input.keep,
        ..Default::default()
    };
    let Ok(rules) = Rules::compile(&spec) else { return };
    let tags: Vec<TagInput> = input
        .tags
        .into_iter()
        .map(|(tag, digest, age_hours)| TagInput {
            tag,
            digest: digest.map(|d| format!("sha256:{d:064x}")),
            created: age_hours.map(|h| now() - chrono::Duration::hours(i64::from(h))),
            first_seen: None,
        })
        .collect();
    let mut names: Vec<&str> = tags.iter().map(|t| t.tag.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let plan = regsweep_policy::plan(&rules, Inventory::from_tags(tags.clone()), now());
    assert_eq!(plan.decisions.len(), names.len(), "one decision per distinct tag");
    let kept: Vec<&str> = plan
        .decisions
        .iter()
        .filter(|d| d.action == Action::Keep)
        .map(|d| d.tag.as_str())
        .collect();
    for image in &plan.images {
        for tag in &image.tags {
            assert!(!kept.contains(&tag.as_str()), "kept tag {tag} is planned for deletion");
        }
        // Judged on the filter's decisions: a tag listed twice (it moved
        // between two reads of the list) is decided on one reading, and
        // the scrubber re-resolves every tag before it deletes.
        if image.delete_digest {
            let shared = plan.decisions.iter().any(|d| {
                d.action == Action::Keep && d.digest.as_deref() == Some(image.digest.as_str())
            });
            assert!(!shared, "digest {} is deleted while a kept tag shares it", image.digest);
        }
    }
}

/// Job arguments as `CreateJob` receives them: any JSON, any kind.
pub fn job_args(data: &[u8]) {
    let Some((&selector, json)) = data.split_first() else { return };
    let kinds = regsweep_scheduler::kinds::KINDS;
    let kind = kinds[usize::from(selector) % kinds.len()];
    let Ok(args) = serde_json::from_slice::<serde_json::Value>(json) else { return };
    let mut violations = regsweep_common::FieldViolations::new();
    regsweep_scheduler::kinds::validate_args(kind, &args, &mut violations);
}

/// Registry response headers: `WWW-Authenticate`, `Link`, `Retry-After`.
pub fn registry_headers(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Some(challenge) = regsweep_registry::parse_challenge(&text) {
        assert!(!challenge.scheme.is_empty(), "a challenge has a scheme");
    }
    if let Some(next) = regsweep_registry::next_link(&text) {
        assert!(!next.is_empty(), "a next link is not empty");
    }
    // Unbounded here; the client caps every wait (`max_retry_wait`).
    let _ = regsweep_registry::retry_after(&text, now());
}

/// Manifest and index bodies, under every content type the client sends.
pub fn manifest(data: &[u8]) {
    for content_type in [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "",
    ] {
        let digest = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
        if let Ok(parsed) = regsweep_registry::Manifest::parse(data, content_type, digest.into()) {
            assert_eq!(parsed.digest(), digest);
            let _ = parsed.media_type();
            let _ = parsed.annotations();
            let _ = parsed.representative_child();
        }
    }
}

/// Durations as flags and API fields spell them.
pub fn durations(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = regsweep_common::duration::parse(&text);
    let _ = regsweep_policy::cron::parse(&text);
    let _ = regsweep_policy::cron::next_after(&text, now());
}
