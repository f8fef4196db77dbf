//! The planner against a model, over random repository graphs and random
//! policies (`graphgen`, the same generator the end-to-end safety run
//! pushes to the real registry): the safety invariants of "How cleanups
//! are decided", checked with reachability computed here, independently
//! of the planner's own.

use std::collections::BTreeSet;

use proptest::prelude::*;
use regex::Regex;
use regsweep_integration_tests::graphgen::{
    Layout, Model, arb_any_spec, arb_layout, arb_listed_spec, arb_rule, arb_spec, now,
};
use regsweep_policy::{
    Action, AttachmentPolicy, Decision, InUse, Plan, Protection, ProtectionSpec, Rule, RuleSpec,
    Rules, TagKind, TagRuleSpec, plan, plan_protected,
};

fn run(spec: &RuleSpec, model: &Model) -> Plan {
    plan(&Rules::compile(spec).expect("valid rules"), model.inventory.clone(), now())
}

/// A model with some of its digests protected by name, some marked in
/// use (a few of the marks expired), and some of its tags by pattern.
fn guarded() -> impl Strategy<Value = (Model, ProtectionSpec, Vec<InUse>)> {
    model().prop_flat_map(|m| {
        let (digests, tags) = (m.digests.len(), m.inventory.tags.len());
        let picks =
            |n: usize| proptest::collection::vec(any::<proptest::sample::Index>(), 0..=n.min(3));
        (
            Just(m),
            picks(digests),
            picks(digests),
            picks(tags),
            proptest::collection::vec(any::<bool>(), 3),
        )
            .prop_map(|(m, named, marked, tagged, live)| {
                let digest =
                    |i: &proptest::sample::Index| m.digests[i.index(m.digests.len())].clone();
                let spec = ProtectionSpec {
                    digests: named.iter().map(digest).collect(),
                    tag_patterns: tagged
                        .iter()
                        .map(|i| {
                            regex::escape(&m.inventory.tags[i.index(m.inventory.tags.len())].tag)
                        })
                        .collect(),
                    repository_globs: Vec::new(),
                };
                let marks = marked
                    .iter()
                    .zip(&live)
                    .map(|(i, live)| InUse {
                        digest: digest(i),
                        holder: "cluster".into(),
                        until: now() + chrono::Duration::hours(if *live { 1 } else { -1 }),
                    })
                    .collect();
                (m, spec, marks)
            })
    })
}

fn run_guarded(
    spec: &RuleSpec,
    (model, protection, marks): &(Model, ProtectionSpec, Vec<InUse>),
) -> Plan {
    let protection = Protection::compile(protection, "repo", marks.iter().cloned(), now())
        .expect("valid protection");
    plan_protected(
        &Rules::compile(spec).expect("valid rules"),
        model.inventory.clone(),
        &protection,
        now(),
    )
}

fn model() -> impl Strategy<Value = Model> {
    arb_layout(14, 16).prop_map(|layout: Layout| Model::synthetic(&layout))
}

/// Every digest the plan deletes.
fn deleted(p: &Plan) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for image in p.images.iter().filter(|i| i.delete_digest) {
        out.insert(image.digest.clone());
        out.extend(image.before.iter().chain(&image.after).map(|l| l.digest.clone()));
    }
    out
}

fn kept_digests(p: &Plan) -> impl Iterator<Item = String> + '_ {
    p.decisions.iter().filter(|d| d.action == Action::Keep).filter_map(|d| d.digest.clone())
}

fn ranked(d: &&Decision) -> bool {
    d.kind == TagKind::Image
        && matches!(d.rule, Rule::KeepN | Rule::Delete | Rule::NewerThan | Rule::AgeUnknown)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn nothing_reachable_from_a_kept_tag_is_deleted(spec in arb_any_spec(), model in model()) {
        let p = run(&spec, &model);
        let reachable = model.reach(kept_digests(&p));
        for d in deleted(&p) {
            prop_assert!(!reachable.contains(&d), "{d} is reachable from a kept tag");
        }
    }

    #[test]
    fn every_deleted_tag_is_planned_and_nothing_else(spec in arb_any_spec(), model in model()) {
        let p = run(&spec, &model);
        let mut planned = BTreeSet::new();
        for image in &p.images {
            planned.extend(image.tags.iter().cloned());
            for linked in image.before.iter().chain(&image.after) {
                planned.extend(linked.tags.iter().cloned());
            }
        }
        let decided: BTreeSet<String> =
            p.decisions.iter().filter(|d| d.action == Action::Delete).map(|d| d.tag.clone()).collect();
        prop_assert_eq!(planned, decided);
        // A deleted follower's digest goes; only an image tag may be untagged.
        let gone = deleted(&p);
        for d in p.decisions.iter().filter(|d| d.action == Action::Delete && d.kind != TagKind::Image) {
            prop_assert!(gone.contains(d.digest.as_deref().unwrap_or_default()), "{}", d.tag);
        }
    }

    #[test]
    fn attachments_follow_their_subject(spec in arb_any_spec(), model in model()) {
        let p = run(&spec, &model);
        let gone = deleted(&p);
        let reachable = model.reach(kept_digests(&p));
        let with_subject = spec.attachments == AttachmentPolicy::DeleteWithSubject;
        for (attachment, subject) in &model.attachment_of {
            if gone.contains(attachment) {
                prop_assert!(gone.contains(subject), "{attachment} deleted without its subject");
            }
            if with_subject && gone.contains(subject) && !reachable.contains(attachment) {
                prop_assert!(gone.contains(attachment), "{attachment} left behind by {subject}");
            }
        }
        for d in p.decisions.iter().filter(|d| d.kind == TagKind::Attachment) {
            prop_assert!(d.rule != Rule::KeepN && d.rule != Rule::Delete, "{} ranked", d.tag);
        }
    }

    #[test]
    fn keep_n_counts_images_and_known_ages_first(spec in arb_spec(), model in model()) {
        let p = run(&spec, &model);
        let by_rank: Vec<_> = p.decisions.iter().filter(|d| d.rule == Rule::KeepN).collect();
        prop_assert!(by_rank.iter().all(|d| d.kind == TagKind::Image));
        let images: BTreeSet<_> = by_rank.iter().filter_map(|d| d.digest.as_deref()).collect();
        prop_assert!(images.len() <= spec.keep_n as usize);
        let unknown_kept = p.decisions.iter().filter(ranked).any(|d| d.rule == Rule::KeepN && d.age.is_none());
        if unknown_kept {
            for d in p.decisions.iter().filter(ranked).filter(|d| d.age.is_some()) {
                prop_assert_eq!(d.rule, Rule::KeepN, "{} has a known age but was outranked", &d.tag);
            }
        }
    }

    #[test]
    fn names_that_keep_always_keep(spec in arb_spec(), model in model()) {
        let keep = (!spec.name_regex_keep.is_empty())
            .then(|| Regex::new(&format!("^(?:{})$", spec.name_regex_keep)).expect("regex"));
        let p = run(&spec, &model);
        for d in p.decisions.iter().filter(|d| d.kind != TagKind::Attachment) {
            let by_name = d.tag == "latest" || keep.as_ref().is_some_and(|k| k.is_match(&d.tag));
            prop_assert!(!by_name || d.action == Action::Keep, "{} deleted", d.tag);
        }
    }

    #[test]
    fn deletions_run_top_down(spec in arb_any_spec(), model in model()) {
        let p = run(&spec, &model);
        for image in p.images.iter().filter(|i| i.delete_digest) {
            let order: Vec<&str> = image
                .before
                .iter()
                .map(|l| l.digest.as_str())
                .chain([image.digest.as_str()])
                .chain(image.after.iter().map(|l| l.digest.as_str()))
                .collect();
            let at = |d: &str| order.iter().position(|o| *o == d);
            for (from, to) in &model.references {
                if let (Some(a), Some(b)) = (at(from), at(to)) {
                    prop_assert!(a < b, "{from} references {to} but is deleted after it");
                }
            }
        }
    }

    #[test]
    fn the_listing_order_does_not_matter(
        spec in arb_any_spec(),
        (model, order) in model().prop_flat_map(|m| {
            let n = m.inventory.tags.len();
            (Just(m), Just((0..n).collect::<Vec<_>>()).prop_shuffle())
        }),
    ) {
        let mut shuffled = model.clone();
        shuffled.inventory.tags = order.iter().map(|&i| model.inventory.tags[i].clone()).collect();
        prop_assert_eq!(run(&spec, &model), run(&spec, &shuffled));
    }

    #[test]
    fn keeping_more_never_deletes_more(spec in arb_spec(), model in model(), extra in 0_i64..3) {
        let more = RuleSpec { keep_n: spec.keep_n + extra, ..spec.clone() };
        let (a, b) = (deleted(&run(&spec, &model)), deleted(&run(&more, &model)));
        prop_assert!(b.is_subset(&a), "keeping more deleted {:?}", b.difference(&a).collect::<Vec<_>>());
    }

    #[test]
    fn nothing_protected_or_in_use_is_deleted(spec in arb_any_spec(), g in guarded()) {
        let p = run_guarded(&spec, &g);
        let (model, protection, marks) = &g;
        let live = marks.iter().filter(|m| m.until > now()).map(|m| m.digest.clone());
        let tagged = p.decisions.iter().filter(|d| {
            protection.tag_patterns.iter().any(|t| regex::escape(&d.tag) == *t)
        });
        for d in tagged.clone() {
            prop_assert_eq!(d.action, Action::Keep, "protected tag {} deleted", &d.tag);
            prop_assert!(d.shield.is_some(), "{} kept without saying why", &d.tag);
        }
        let shielded = protection.digests.iter().cloned().chain(live).chain(tagged.filter_map(|d| d.digest.clone()));
        let reachable = model.reach(shielded);
        for d in deleted(&p) {
            prop_assert!(!reachable.contains(&d), "{d} is protected or reachable from what is");
        }
    }

    #[test]
    fn protecting_never_deletes_more(spec in arb_any_spec(), g in guarded()) {
        let bare = run(&spec, &g.0);
        let guarded = run_guarded(&spec, &g);
        let (a, b) = (deleted(&bare), deleted(&guarded));
        prop_assert!(b.is_subset(&a), "protection deleted {:?}", b.difference(&a).collect::<Vec<_>>());
        let tags = |p: &Plan| p.decisions.iter().filter(|d| d.action == Action::Delete).map(|d| d.tag.clone()).collect::<BTreeSet<_>>();
        prop_assert!(tags(&guarded).is_subset(&tags(&bare)));
    }

    #[test]
    fn a_tag_any_rule_keeps_is_never_deleted(spec in arb_listed_spec(), model in model()) {
        let p = run(&spec, &model);
        for rule in &spec.rules {
            let alone = RuleSpec { rules: vec![rule.clone()], ..spec.clone() };
            for d in run(&alone, &model).decisions.iter().filter(|d| kept_by_rule(d)) {
                let full = p.decisions.iter().find(|f| f.tag == d.tag).expect("same tags");
                prop_assert_eq!(full.action, Action::Keep, "{} kept by {} alone, deleted", &d.tag, &rule.name);
            }
        }
    }

    #[test]
    fn rule_order_changes_only_the_named_rule(
        (spec, order) in arb_listed_spec().prop_flat_map(|s| {
            let n = s.rules.len();
            (Just(s), Just((0..n).collect::<Vec<_>>()).prop_shuffle())
        }),
        model in model(),
    ) {
        let reordered = RuleSpec { rules: order.iter().map(|&i| spec.rules[i].clone()).collect(), ..spec.clone() };
        let (a, b) = (run(&spec, &model), run(&reordered, &model));
        let actions = |p: &Plan| p.decisions.iter().map(|d| (d.tag.clone(), d.action)).collect::<Vec<_>>();
        prop_assert_eq!(actions(&a), actions(&b));
        prop_assert_eq!(a.images, b.images);
        prop_assert_eq!(a.blocked, b.blocked);
    }

    #[test]
    fn adding_a_keep_rule_never_deletes_more(
        spec in arb_listed_spec(),
        keep in arb_rule(),
        at in any::<proptest::sample::Index>(),
        model in model(),
    ) {
        let mut more = spec.clone();
        let keep = TagRuleSpec { keep_all: true, keep_newest: 0, keep_within_seconds: 0, per: Default::default(), count_prereleases: false, name: "keep".into(), ..keep };
        more.rules.insert(at.index(spec.rules.len() + 1), keep);
        let (a, b) = (run(&spec, &model), run(&more, &model));
        prop_assert!(deleted(&b).is_subset(&deleted(&a)));
        let tags = |p: &Plan| p.decisions.iter().filter(|d| d.action == Action::Delete).map(|d| d.tag.clone()).collect::<BTreeSet<_>>();
        prop_assert!(tags(&b).is_subset(&tags(&a)), "a keep rule deleted {:?}", tags(&b).difference(&tags(&a)).collect::<Vec<_>>());
    }

    #[test]
    fn single_rule_fields_are_one_listed_rule(spec in arb_spec(), model in model()) {
        let rule = TagRuleSpec {
            tag_regex: spec.name_regex_delete.clone(),
            exclude_regex: spec.name_regex_keep.clone(),
            keep_newest: spec.keep_n,
            keep_within_seconds: spec.older_than_seconds,
            ..TagRuleSpec::default()
        };
        let listed = RuleSpec { rules: vec![rule], keep_n: 0, older_than_seconds: 0, name_regex_delete: String::new(), name_regex_keep: String::new(), ..spec.clone() };
        let (a, b) = (run(&spec, &model), run(&listed, &model));
        let actions = |p: &Plan| p.decisions.iter().map(|d| (d.tag.clone(), d.action, d.age)).collect::<Vec<_>>();
        prop_assert_eq!(actions(&a), actions(&b));
        prop_assert_eq!(a.images, b.images);
    }
}

/// Kept by a rule's own clause (not by name, protection or the graph).
fn kept_by_rule(d: &Decision) -> bool {
    matches!(
        d.rule,
        Rule::KeepAll | Rule::KeepN | Rule::KeepVersion | Rule::NewerThan | Rule::AgeUnknown
    )
}
