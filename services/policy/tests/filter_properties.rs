//! The tag filter's safety invariants, over random repositories and rules.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;
use regex::Regex;
use regsweep_policy::{Action, Plan, RuleSpec, Rules, TagInput, plan};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).single().expect("time")
}

/// Few names and digests, so that repeats, shared digests and `latest`
/// are common.
fn arb_tags() -> impl Strategy<Value = Vec<TagInput>> {
    let name = prop_oneof![
        1 => Just("latest".to_string()),
        6 => "[a-c][0-9]{0,2}",
        2 => "keep-[0-9]",
    ];
    let digest = prop::option::weighted(0.9, "sha256:[0-5]");
    // Hours before `now`; a few in the future, as clocks disagree.
    let created = prop::option::weighted(0.8, -5_i64..60 * 24);
    prop::collection::vec((name, digest, created), 0..30).prop_map(|v| {
        v.into_iter()
            .map(|(tag, digest, hours)| TagInput {
                tag,
                digest,
                created: hours.map(|h| now() - Duration::hours(h)),
            })
            .collect()
    })
}

fn arb_spec() -> impl Strategy<Value = RuleSpec> {
    let delete = prop::sample::select(vec!["", ".*", "[ab].*", "a.*|latest", "keep-.*|c1"]);
    let keep = prop::sample::select(vec!["", "keep-.*", "b1.*"]);
    // older_than on the same hour grid as the creation times, so the
    // boundary itself is hit.
    (0_i64..6, 0_i64..40 * 24, delete, keep).prop_map(|(keep_n, hours, delete, keep)| RuleSpec {
        keep_n,
        older_than_seconds: hours * 3600,
        name_regex_delete: delete.to_string(),
        name_regex_keep: keep.to_string(),
    })
}

fn anchored(pattern: &str, empty_matches: bool) -> impl Fn(&str) -> bool {
    let regex = (!pattern.is_empty())
        .then(|| Regex::new(&format!("^(?:{pattern})$")).expect("valid regex"));
    move |tag| regex.as_ref().map_or(empty_matches, |r| r.is_match(tag))
}

fn run(spec: &RuleSpec, tags: &[TagInput]) -> Plan {
    plan(&Rules::compile(spec).expect("valid rules"), tags.to_vec(), now())
}

fn kept_digests(p: &Plan) -> BTreeSet<&str> {
    p.decisions
        .iter()
        .filter(|d| d.action == Action::Keep)
        .filter_map(|d| d.digest.as_deref())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn latest_is_never_deleted(spec in arb_spec(), tags in arb_tags()) {
        let p = run(&spec, &tags);
        prop_assert!(p.decisions.iter().all(|d| d.tag != "latest" || d.action == Action::Keep));
        prop_assert!(p.images.iter().all(|i| !i.tags.iter().any(|t| t == "latest")));
    }

    #[test]
    fn the_keep_regex_is_never_deleted(spec in arb_spec(), tags in arb_tags()) {
        let keep = anchored(&spec.name_regex_keep, false);
        let p = run(&spec, &tags);
        for d in p.decisions.iter().filter(|d| keep(&d.tag)) {
            prop_assert_eq!(d.action, Action::Keep, "{}", d.tag);
        }
    }

    #[test]
    fn keep_n_candidates_are_kept(spec in arb_spec(), tags in arb_tags()) {
        let (delete, keep) = (anchored(&spec.name_regex_delete, true), anchored(&spec.name_regex_keep, false));
        let p = run(&spec, &tags);
        let candidates: Vec<_> = p
            .decisions
            .iter()
            .filter(|d| d.tag != "latest" && !keep(&d.tag) && delete(&d.tag) && d.digest.is_some())
            .collect();
        let kept = candidates.iter().filter(|d| d.action == Action::Keep).count();
        prop_assert!(kept >= candidates.len().min(spec.keep_n as usize));
        // And the kept ones include the newest: no deleted candidate is
        // newer than the keep_n-th newest.
        let mut created: Vec<_> = candidates.iter().map(|d| (d.created.is_none(), d.created)).collect();
        created.sort_by(|a, b| b.cmp(a));
        if let Some(&nth) = created.get(spec.keep_n as usize) {
            for d in candidates.iter().filter(|d| d.action == Action::Delete) {
                prop_assert!((false, d.created) <= nth, "{} deleted among the newest", d.tag);
            }
        }
    }

    #[test]
    fn deleted_tags_are_older_than_older_than(spec in arb_spec(), tags in arb_tags()) {
        let cutoff = now() - Duration::seconds(spec.older_than_seconds);
        let p = run(&spec, &tags);
        for d in p.decisions.iter().filter(|d| d.action == Action::Delete) {
            prop_assert!(d.created.is_some_and(|c| c <= cutoff), "{} deleted at {:?}", d.tag, d.created);
            prop_assert!(d.digest.is_some(), "unresolved {} deleted", d.tag);
        }
    }

    #[test]
    fn no_kept_digest_is_deleted(spec in arb_spec(), tags in arb_tags()) {
        let p = run(&spec, &tags);
        let kept = kept_digests(&p);
        for image in &p.images {
            prop_assert_eq!(image.delete_digest, !kept.contains(image.digest.as_str()), "{}", &image.digest);
        }
    }

    #[test]
    fn every_tag_has_one_decision_and_every_deletion_one_image(spec in arb_spec(), tags in arb_tags()) {
        let p = run(&spec, &tags);
        let names: BTreeSet<&str> = tags.iter().map(|t| t.tag.as_str()).collect();
        let decided: Vec<&str> = p.decisions.iter().map(|d| d.tag.as_str()).collect();
        prop_assert_eq!(decided, names.into_iter().collect::<Vec<_>>());
        let mut planned: Vec<(&str, &str)> = p
            .images
            .iter()
            .flat_map(|i| i.tags.iter().map(move |t| (t.as_str(), i.digest.as_str())))
            .collect();
        planned.sort_unstable();
        let deleted: Vec<(&str, &str)> = p
            .decisions
            .iter()
            .filter(|d| d.action == Action::Delete)
            .filter_map(|d| Some((d.tag.as_str(), d.digest.as_deref()?)))
            .collect();
        prop_assert_eq!(planned, deleted);
    }

    #[test]
    fn the_input_order_does_not_matter(
        spec in arb_spec(),
        (tags, shuffled) in arb_tags().prop_flat_map(|v| (Just(v.clone()), Just(v).prop_shuffle())),
    ) {
        prop_assert_eq!(run(&spec, &tags), run(&spec, &shuffled));
    }
}
