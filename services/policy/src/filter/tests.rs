use chrono::TimeZone;

use super::*;
use crate::RuleSpec;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).single().expect("time")
}

fn tag(name: &str, digest: &str, days_old: Option<i64>) -> TagInput {
    TagInput {
        tag: name.into(),
        digest: Some(digest.into()),
        created: days_old.map(|d| now() - Duration::days(d)),
    }
}

fn unresolved(name: &str, days_old: Option<i64>) -> TagInput {
    TagInput { digest: None, ..tag(name, "", days_old) }
}

fn rules(keep_n: i64, older_days: i64, delete: &str, keep: &str) -> Rules {
    Rules::compile(&RuleSpec {
        keep_n,
        older_than_seconds: older_days * 86_400,
        name_regex_delete: delete.into(),
        name_regex_keep: keep.into(),
    })
    .expect("valid rules")
}

fn decided(plan: &Plan) -> Vec<(&str, Rule)> {
    plan.decisions.iter().map(|d| (d.tag.as_str(), d.rule)).collect()
}

fn image(digest: &str, tags: &[&str], delete_digest: bool) -> ImagePlan {
    ImagePlan {
        digest: digest.into(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        delete_digest,
    }
}

#[test]
fn latest_is_kept_even_when_a_candidate() {
    let tags = vec![tag("latest", "d1", Some(99)), tag("v1", "d2", Some(99))];
    let p = plan(&rules(0, 0, "latest|v.*", ""), tags, now());
    assert_eq!(decided(&p), [("latest", Rule::Latest), ("v1", Rule::Delete)]);
    assert_eq!(p.images, [image("d2", &["v1"], true)]);
}

#[test]
fn latest_does_not_use_up_keep_n() {
    let tags = vec![tag("latest", "d0", None), tag("v1", "d1", Some(5)), tag("v2", "d2", Some(4))];
    let p = plan(&rules(1, 0, "", ""), tags, now());
    assert_eq!(decided(&p), [("latest", Rule::Latest), ("v1", Rule::Delete), ("v2", Rule::KeepN)]);
}

#[test]
fn keep_n_keeps_the_newest_candidates() {
    let tags = vec![
        tag("a", "1", Some(3)),
        tag("b", "2", Some(1)),
        tag("c", "3", Some(2)),
        tag("d", "4", None),
    ];
    let p = plan(&rules(2, 0, "", ""), tags, now());
    // Unknown creation sorts as newest.
    assert_eq!(
        decided(&p),
        [("a", Rule::Delete), ("b", Rule::KeepN), ("c", Rule::Delete), ("d", Rule::KeepN)]
    );
}

#[test]
fn keep_n_breaks_ties_by_name() {
    let tags = vec![tag("c", "1", Some(1)), tag("a", "2", Some(1)), tag("b", "3", Some(1))];
    let p = plan(&rules(2, 0, "", ""), tags, now());
    assert_eq!(decided(&p), [("a", Rule::KeepN), ("b", Rule::KeepN), ("c", Rule::Delete)]);
    let tags = vec![tag("y", "1", None), tag("x", "2", None), tag("z", "3", Some(0))];
    let p = plan(&rules(1, 0, "", ""), tags, now());
    assert_eq!(decided(&p), [("x", Rule::KeepN), ("y", Rule::NewerThan), ("z", Rule::Delete)]);
}

#[test]
fn keep_n_larger_than_the_candidates_keeps_them_all() {
    let tags = vec![tag("a", "1", Some(300)), tag("b", "2", Some(200))];
    let p = plan(&rules(100_000, 0, "", ""), tags, now());
    assert_eq!(decided(&p), [("a", Rule::KeepN), ("b", Rule::KeepN)]);
    assert!(p.images.is_empty());
}

#[test]
fn older_than_spares_recent_and_unknown_tags() {
    let tags = vec![tag("old", "1", Some(30)), tag("new", "2", Some(1)), tag("unknown", "3", None)];
    let p = plan(&rules(0, 7, "", ""), tags, now());
    assert_eq!(
        decided(&p),
        [("new", Rule::NewerThan), ("old", Rule::Delete), ("unknown", Rule::NewerThan)]
    );
}

#[test]
fn older_than_boundary() {
    let at = |name: &str, seconds_old: i64| TagInput {
        tag: name.into(),
        digest: Some(name.into()),
        created: Some(now() - Duration::seconds(seconds_old)),
    };
    let week = 7 * 86_400;
    let tags = vec![at("exactly", week), at("just-newer", week - 1), at("just-older", week + 1)];
    let p = plan(&rules(0, 7, "", ""), tags, now());
    assert_eq!(
        decided(&p),
        [("exactly", Rule::Delete), ("just-newer", Rule::NewerThan), ("just-older", Rule::Delete)]
    );
}

#[test]
fn no_age_rule_deletes_known_but_never_unknown_creation() {
    let future = TagInput { created: Some(now() + Duration::hours(1)), ..tag("future", "3", None) };
    let tags = vec![tag("old", "1", Some(400)), tag("unknown", "2", None), future];
    let p = plan(&rules(0, 0, "", ""), tags, now());
    assert_eq!(
        decided(&p),
        [("future", Rule::NewerThan), ("old", Rule::Delete), ("unknown", Rule::NewerThan)]
    );
}

#[test]
fn keep_n_applies_before_older_than() {
    let tags = vec![
        tag("a", "1", Some(40)),
        tag("b", "2", Some(30)),
        tag("c", "3", Some(20)),
        tag("d", "4", Some(2)),
    ];
    let p = plan(&rules(2, 25, "", ""), tags, now());
    // d and c are the newest two; of a and b, both older than 25 days.
    assert_eq!(
        decided(&p),
        [("a", Rule::Delete), ("b", Rule::Delete), ("c", Rule::KeepN), ("d", Rule::KeepN)]
    );
    let tags = vec![tag("a", "1", Some(40)), tag("b", "2", Some(10)), tag("c", "3", Some(5))];
    let p = plan(&rules(1, 25, "", ""), tags, now());
    assert_eq!(decided(&p), [("a", Rule::Delete), ("b", Rule::NewerThan), ("c", Rule::KeepN)]);
}

#[test]
fn delete_and_keep_regexes_together() {
    let tags =
        vec![tag("v1", "1", Some(30)), tag("v1-keep", "2", Some(30)), tag("main", "3", Some(30))];
    let p = plan(&rules(0, 0, "v.*", ".*-keep"), tags, now());
    assert_eq!(
        decided(&p),
        [
            ("main", Rule::NotMatchingDeleteRegex),
            ("v1", Rule::Delete),
            ("v1-keep", Rule::KeepRegex)
        ]
    );
}

#[test]
fn the_keep_regex_does_not_use_up_keep_n() {
    let tags = vec![tag("release", "1", None), tag("v1", "2", Some(3)), tag("v2", "3", Some(2))];
    let p = plan(&rules(1, 0, "", "release"), tags, now());
    assert_eq!(
        decided(&p),
        [("release", Rule::KeepRegex), ("v1", Rule::Delete), ("v2", Rule::KeepN)]
    );
}

#[test]
fn a_digest_shared_with_a_kept_tag_is_only_untagged() {
    let tags = vec![
        tag("v1", "shared", Some(30)),
        tag("prod", "shared", Some(30)),
        tag("v2", "alone", Some(30)),
        tag("v3", "alone", Some(30)),
    ];
    let p = plan(&rules(0, 0, "v.*", ""), tags, now());
    assert_eq!(decided(&p)[1], ("v1", Rule::Delete));
    assert_eq!(p.images, [image("alone", &["v2", "v3"], true), image("shared", &["v1"], false)]);
}

#[test]
fn sharing_counts_for_a_tag_kept_by_any_rule() {
    let cases: [(Rules, TagInput); 5] = [
        (rules(0, 0, "", ""), tag("latest", "d", None)),
        (rules(0, 0, "", "keep"), tag("keep", "d", Some(90))),
        (rules(0, 0, "old", ""), tag("other", "d", Some(90))),
        (rules(1, 0, "", ""), tag("newest", "d", Some(1))),
        (rules(0, 7, "", ""), tag("fresh", "d", Some(1))),
    ];
    for (rules, kept) in cases {
        let name = kept.tag.clone();
        let p = plan(&rules, vec![kept, tag("old", "d", Some(60))], now());
        assert_eq!(p.images, [image("d", &["old"], false)], "kept {name}");
    }
}

#[test]
fn all_tags_of_a_digest_deleted_deletes_the_digest() {
    let tags = vec![tag("a", "d", Some(30)), tag("b", "d", Some(31)), tag("c", "e", Some(1))];
    let p = plan(&rules(1, 0, "", ""), tags, now());
    assert_eq!(decided(&p), [("a", Rule::Delete), ("b", Rule::Delete), ("c", Rule::KeepN)]);
    assert_eq!(p.images, [image("d", &["a", "b"], true)]);
}

#[test]
fn empty_input_plans_nothing() {
    let p = plan(&rules(3, 1, "", ""), Vec::new(), now());
    assert!(p.decisions.is_empty() && p.images.is_empty());
}

#[test]
fn unresolved_tags_are_never_deleted() {
    let tags = vec![unresolved("v1", Some(900)), unresolved("v2", None), tag("v3", "d", Some(900))];
    let p = plan(&rules(0, 1, "", ""), tags, now());
    assert_eq!(
        decided(&p),
        [("v1", Rule::Unresolved), ("v2", Rule::Unresolved), ("v3", Rule::Delete)]
    );
    // Not candidates, so they do not use up keep_n either.
    let tags = vec![unresolved("a", Some(1)), tag("b", "d1", Some(2)), tag("c", "d2", Some(3))];
    let p = plan(&rules(1, 0, "", ""), tags, now());
    assert_eq!(decided(&p), [("a", Rule::Unresolved), ("b", Rule::KeepN), ("c", Rule::Delete)]);
}

#[test]
fn a_repeated_tag_is_decided_once_from_its_most_cautious_reading() {
    let old = tag("v1", "d1", Some(90));
    for tags in
        [vec![old.clone(), unresolved("v1", Some(90))], vec![unresolved("v1", Some(90)), old]]
    {
        let p = plan(&rules(0, 0, "", ""), tags, now());
        assert_eq!(decided(&p), [("v1", Rule::Unresolved)]);
        assert!(p.images.is_empty());
    }
}

#[test]
fn decisions_keep_what_was_read_and_serialize_snake_case() {
    let p = plan(&rules(0, 0, "", "keep-.*"), vec![tag("keep-1", "d", Some(1))], now());
    let d = &p.decisions[0];
    assert_eq!((d.digest.as_deref(), d.created), (Some("d"), Some(now() - Duration::days(1))));
    let json = serde_json::to_value(&p).expect("serialize");
    assert_eq!(json["decisions"][0]["rule"], "keep_regex");
    assert_eq!(json["decisions"][0]["action"], "keep");
    let json = serde_json::to_value(Rule::NotMatchingDeleteRegex).expect("serialize");
    assert_eq!(json, "not_matching_delete_regex");
}
