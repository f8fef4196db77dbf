use chrono::TimeZone;

use super::*;
use crate::{Action, Inventory, ManifestLinks, Plan, RuleSpec, Rules, TagInput, plan};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).single().expect("time")
}

fn tag(name: &str, digest: &str, days_old: i64) -> TagInput {
    TagInput {
        tag: name.into(),
        digest: Some(digest.into()),
        created: Some(now() - Duration::days(days_old)),
        first_seen: None,
    }
}

fn rule(name: &str) -> TagRuleSpec {
    TagRuleSpec { name: name.into(), ..TagRuleSpec::default() }
}

fn listed(rules: Vec<TagRuleSpec>) -> Rules {
    Rules::compile(&RuleSpec { rules, ..RuleSpec::default() }).expect("valid rules")
}

fn run(rules: &Rules, tags: Vec<TagInput>) -> Plan {
    plan(rules, Inventory::from_tags(tags), now())
}

/// `(tag, rule, deciding position)` per decision.
fn decided(plan: &Plan) -> Vec<(&str, Rule, Option<u32>)> {
    plan.decisions
        .iter()
        .map(|d| (d.tag.as_str(), d.rule, d.by.as_ref().map(|b| b.position)))
        .collect()
}

fn deleted(plan: &Plan) -> Vec<&str> {
    plan.decisions.iter().filter(|d| d.action == Action::Delete).map(|d| d.tag.as_str()).collect()
}

fn days(n: i64) -> i64 {
    n * 86_400
}

#[test]
fn a_tag_any_rule_keeps_stays_and_the_first_keeping_rule_is_named() {
    let rules = listed(vec![
        TagRuleSpec { tag_glob: "sha-*".into(), keep_within_seconds: days(7), ..rule("ci") },
        TagRuleSpec { keep_newest: 2, ..rule("newest") },
    ]);
    let tags = vec![
        tag("sha-a", "d1", 1),
        tag("sha-b", "d2", 30),
        tag("sha-c", "d3", 40),
        tag("v1", "d4", 50),
    ];
    let p = run(&rules, tags);
    assert_eq!(
        decided(&p),
        [
            ("sha-a", Rule::NewerThan, Some(1)),
            ("sha-b", Rule::KeepN, Some(2)),
            ("sha-c", Rule::Delete, Some(1)),
            ("v1", Rule::Delete, Some(2)),
        ]
    );
    let by = p.decisions[1].by.as_ref().expect("named");
    assert_eq!((by.position, by.name.as_str()), (2, "newest"));
}

#[test]
fn rule_order_changes_the_named_rule_never_the_outcome() {
    let a = TagRuleSpec { tag_regex: "v.*".into(), keep_newest: 1, ..rule("a") };
    let b = TagRuleSpec { keep_within_seconds: days(10), ..rule("b") };
    let tags = vec![tag("v1", "d1", 20), tag("v2", "d2", 5), tag("x", "d3", 30)];
    let ab = run(&listed(vec![a.clone(), b.clone()]), tags.clone());
    let ba = run(&listed(vec![b, a]), tags);
    assert_eq!(deleted(&ab), deleted(&ba));
    assert_eq!(deleted(&ab), ["v1", "x"]);
    // v2 is kept by both: each order names its own first.
    assert_eq!(ab.decisions[1].by.as_ref().map(|b| b.name.as_str()), Some("a"));
    assert_eq!(ba.decisions[1].by.as_ref().map(|b| b.name.as_str()), Some("b"));
}

#[test]
fn tags_no_rule_selects_are_kept_and_say_so() {
    let rules = listed(vec![TagRuleSpec {
        tag_regex: "tmp-.*".into(),
        exclude_regex: "tmp-keep.*".into(),
        ..rule("tmp")
    }]);
    let p = run(&rules, vec![tag("tmp-1", "d1", 1), tag("tmp-keep", "d2", 1), tag("v1", "d3", 1)]);
    assert_eq!(
        decided(&p),
        [
            ("tmp-1", Rule::Delete, Some(1)),
            // The rule that excluded it is named.
            ("tmp-keep", Rule::NotSelected, Some(1)),
            ("v1", Rule::NotSelected, None),
        ]
    );
}

#[test]
fn newest_versions_per_major_and_per_minor() {
    let tags = vec![
        tag("1.0.0", "a", 90),
        tag("1.1.0", "b", 80),
        tag("v1.2.0", "c", 70),
        tag("1.2.1", "d", 60),
        tag("2.0.0", "e", 50),
        tag("2.0.1-rc.1", "f", 1),
        tag("nightly", "g", 1),
    ];
    let major =
        listed(vec![TagRuleSpec { keep_newest: 2, per: VersionGroup::Major, ..rule("releases") }]);
    let p = run(&major, tags.clone());
    // 1.2.1 and v1.2.0 of 1.x, 2.0.0 of 2.x; the prerelease does not count,
    // so it is selected and kept by nothing; `nightly` is no version.
    assert_eq!(deleted(&p), ["1.0.0", "1.1.0", "2.0.1-rc.1"]);
    assert_eq!(
        p.decisions.iter().find(|d| d.tag == "1.2.1").map(|d| d.rule),
        Some(Rule::KeepVersion)
    );
    assert_eq!(
        p.decisions.iter().find(|d| d.tag == "nightly").map(|d| d.rule),
        Some(Rule::NotSelected)
    );

    let counted = listed(vec![TagRuleSpec {
        keep_newest: 1,
        per: VersionGroup::Major,
        count_prereleases: true,
        ..rule("releases")
    }]);
    // Counted, the prerelease is 2.x's highest and 2.0.0 goes.
    assert_eq!(deleted(&run(&counted, tags.clone())), ["1.0.0", "1.1.0", "2.0.0", "v1.2.0"]);

    let minor =
        listed(vec![TagRuleSpec { keep_newest: 1, per: VersionGroup::Minor, ..rule("patches") }]);
    assert_eq!(deleted(&run(&minor, tags)), ["2.0.1-rc.1", "v1.2.0"]);
}

#[test]
fn ranges_select_versions_and_judge_a_prerelease_by_its_release() {
    let rules = listed(vec![TagRuleSpec { semver: ">=1.0.0, <2".into(), ..rule("one") }]);
    let tags = vec![
        tag("0.9.0", "a", 1),
        tag("1.0.0", "b", 1),
        tag("v1.5.0-rc.1", "c", 1),
        tag("2.0.0", "d", 1),
        tag("1.0", "e", 1),
    ];
    assert_eq!(deleted(&run(&rules, tags)), ["1.0.0", "v1.5.0-rc.1"]);
    assert_eq!(version_of("v1.2.3"), Version::parse("1.2.3").ok());
    assert_eq!(version_of("vv1.2.3"), None);
    assert_eq!(version_of("latest"), None);
    assert_eq!(version_of("01.2.3"), None);
}

#[test]
fn keep_all_keeps_what_it_selects_whatever_else_deletes_it() {
    let rules = listed(vec![
        rule("everything-else"),
        TagRuleSpec { tag_glob: "release-*".into(), keep_all: true, ..rule("releases") },
    ]);
    let p = run(&rules, vec![tag("release-1", "a", 400), tag("dev", "b", 1)]);
    assert_eq!(
        decided(&p),
        [("dev", Rule::Delete, Some(1)), ("release-1", Rule::KeepAll, Some(2))]
    );
}

#[test]
fn a_platform_tag_a_keep_all_rule_selects_keeps_its_index_children() {
    let index = ManifestLinks { children: vec!["amd".into()], ..ManifestLinks::default() };
    let manifests = [("idx".to_string(), index), ("amd".to_string(), ManifestLinks::default())];
    let inventory = Inventory {
        tags: vec![tag("v1", "idx", 90), tag("v1-amd64", "amd", 90)],
        manifests: manifests.into_iter().collect(),
        gaps: Vec::new(),
    };
    let rules = listed(vec![
        rule("old"),
        TagRuleSpec { tag_regex: ".*-amd64".into(), keep_all: true, ..rule("platforms") },
    ]);
    let p = plan(&rules, inventory, now());
    let v1 = p.decisions.iter().find(|d| d.tag == "v1").expect("v1");
    let amd = p.decisions.iter().find(|d| d.tag == "v1-amd64").expect("amd64");
    assert_eq!((amd.rule, amd.action), (Rule::KeepAll, Action::Keep));
    // The index's tag goes; the child a kept tag names stays.
    assert_eq!(v1.action, Action::Delete);
    assert_eq!(p.images.len(), 1);
    assert!(p.images[0].delete_digest && p.images[0].after.is_empty(), "{:?}", p.images);
}

#[test]
fn a_rule_on_untagged_manifests_blocks_the_plan_rather_than_guess() {
    let rules = listed(vec![
        TagRuleSpec { keep_within_seconds: days(1), ..rule("tagged") },
        TagRuleSpec { tag_state: TagState::Untagged, keep_newest: 1, ..rule("untagged") },
    ]);
    let p = run(&rules, vec![tag("old", "a", 30)]);
    assert!(p.images.is_empty());
    assert_eq!(
        p.blocked.as_deref(),
        Some("rule 2 selects untagged manifests, which cannot be listed in this registry")
    );
}

/// ECR's "Filtering on multiple rules", example A: rule 1 keeps one image
/// tagged `prod*`, rule 2 one tagged `beta*`. ECR documents that image A
/// is expired. regsweep decides tags: `beta-2` is untagged too (rule 2
/// deletes it and nothing keeps that tag), while image B stays with
/// `prod-2`.
#[test]
fn ecr_multiple_rules_example_a() {
    let rules = listed(vec![
        TagRuleSpec { tag_glob: "prod*".into(), keep_newest: 1, ..rule("Rule 1") },
        TagRuleSpec { tag_glob: "beta*".into(), keep_newest: 1, ..rule("Rule 2") },
    ]);
    let tags = vec![
        tag("beta-1", "A", 10),
        tag("prod-1", "A", 10),
        tag("beta-2", "B", 9),
        tag("prod-2", "B", 9),
        tag("beta-3", "C", 8),
    ];
    let p = run(&rules, tags);
    assert_eq!(deleted(&p), ["beta-1", "beta-2", "prod-1"]);
    let gone: Vec<(&str, bool)> =
        p.images.iter().map(|i| (i.digest.as_str(), i.delete_digest)).collect();
    assert_eq!(gone, [("A", true), ("B", false)]);
}

/// ECR's "Filtering on image age": images tagged `prod*` older than 14
/// days expire; nothing else is touched.
#[test]
fn ecr_filtering_on_image_age() {
    let rules = listed(vec![TagRuleSpec {
        tag_glob: "prod*".into(),
        keep_within_seconds: days(14),
        ..rule("Expire images older than 14 days")
    }]);
    let tags = vec![tag("prod-old", "a", 15), tag("prod-new", "b", 13), tag("dev-old", "c", 90)];
    assert_eq!(deleted(&run(&rules, tags)), ["prod-old"]);
}

/// Harbor's retention: rules only retain ("the OR algorithm is used
/// between rules") and every tag no rule retains is discarded. In
/// regsweep that is a last rule selecting everything and keeping nothing.
#[test]
fn harbor_retain_most_recent_or_recently_pushed_discard_the_rest() {
    let rules = listed(vec![
        TagRuleSpec { tag_glob: "release-*".into(), keep_newest: 2, ..rule("releases") },
        TagRuleSpec { keep_within_seconds: days(7), ..rule("recent") },
        rule("discard the rest"),
    ]);
    let tags = vec![
        tag("release-1", "r1", 300),
        tag("release-2", "r2", 200),
        tag("release-3", "r3", 100),
        tag("feature-x", "f1", 2),
        tag("feature-y", "f2", 20),
    ];
    let p = run(&rules, tags);
    assert_eq!(deleted(&p), ["feature-y", "release-1"]);
    // release-1 is selected by rules 1 and 3; rule 1 is named.
    assert_eq!(
        p.decisions
            .iter()
            .find(|d| d.tag == "release-1")
            .and_then(|d| d.by.as_ref())
            .map(|b| b.position),
        Some(1)
    );
}

#[test]
fn every_bad_rule_field_is_named_by_its_position() {
    let specs = vec![
        TagRuleSpec { tag_regex: "a".into(), tag_glob: "b*".into(), ..rule("x") },
        TagRuleSpec { keep_all: true, keep_newest: 1, ..rule("x") },
        TagRuleSpec { per: VersionGroup::Major, ..rule("") },
        TagRuleSpec { count_prereleases: true, keep_within_seconds: -1, ..rule("") },
        TagRuleSpec { tag_glob: "[".into(), exclude_regex: "(".into(), ..rule("") },
    ];
    let found = compile_all(&specs).err().unwrap_or_default();
    let fields: Vec<&str> = found.iter().map(|v| v.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "rules[0].tag_glob",
            "rules[1].name",
            "rules[1].keep_all",
            "rules[2].per",
            "rules[3].keep_within",
            "rules[3].count_prereleases",
            "rules[4].exclude_regex",
            "rules[4].tag_glob",
        ]
    );
    let too_many = vec![TagRuleSpec::default(); MAX_RULES + 1];
    assert_eq!(compile_all(&too_many).err().map(|v| v[0].field.clone()), Some("rules".into()));
    assert!(compile_all(&vec![TagRuleSpec::default(); MAX_RULES]).is_ok());
}
