use chrono::{Duration, TimeZone};

use super::*;
use crate::{AgeSource, RuleSpec};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).single().expect("time")
}

fn tag(name: &str, digest: &str, days_old: Option<i64>) -> TagInput {
    TagInput {
        tag: name.into(),
        digest: Some(digest.into()),
        created: days_old.map(|d| now() - Duration::days(d)),
        first_seen: None,
    }
}

fn unresolved(name: &str, days_old: Option<i64>) -> TagInput {
    TagInput { digest: None, ..tag(name, "", days_old) }
}

fn spec(keep_n: i64, older_days: i64, delete: &str, keep: &str) -> RuleSpec {
    RuleSpec {
        keep_n,
        older_than_seconds: older_days * 86_400,
        name_regex_delete: delete.into(),
        name_regex_keep: keep.into(),
        ..Default::default()
    }
}

fn rules(keep_n: i64, older_days: i64, delete: &str, keep: &str) -> Rules {
    Rules::compile(&spec(keep_n, older_days, delete, keep)).expect("valid rules")
}

fn flat(rules: &Rules, tags: Vec<TagInput>) -> Plan {
    plan(rules, Inventory::from_tags(tags), now())
}

fn decided(plan: &Plan) -> Vec<(&str, Rule)> {
    plan.decisions.iter().map(|d| (d.tag.as_str(), d.rule)).collect()
}

fn image(digest: &str, tags: &[&str], delete_digest: bool) -> ImagePlan {
    ImagePlan {
        digest: digest.into(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        delete_digest,
        before: Vec::new(),
        after: Vec::new(),
        subjects: Vec::new(),
    }
}

#[test]
fn latest_is_kept_even_when_a_candidate() {
    let tags = vec![tag("latest", "d1", Some(99)), tag("v1", "d2", Some(99))];
    let p = flat(&rules(0, 0, "latest|v.*", ""), tags);
    assert_eq!(decided(&p), [("latest", Rule::Latest), ("v1", Rule::Delete)]);
    assert_eq!(p.images, [image("d2", &["v1"], true)]);
}

#[test]
fn latest_does_not_use_up_keep_n() {
    let tags = vec![tag("latest", "d0", None), tag("v1", "d1", Some(5)), tag("v2", "d2", Some(4))];
    let p = flat(&rules(1, 0, "", ""), tags);
    assert_eq!(decided(&p), [("latest", Rule::Latest), ("v1", Rule::Delete), ("v2", Rule::KeepN)]);
}

#[test]
fn keep_n_keeps_the_newest_known_ages_first() {
    let tags = vec![
        tag("a", "1", Some(3)),
        tag("b", "2", Some(1)),
        tag("c", "3", Some(2)),
        tag("d", "4", None),
    ];
    let p = flat(&rules(2, 0, "", ""), tags);
    // An unknown age never outranks a known one.
    assert_eq!(
        decided(&p),
        [("a", Rule::Delete), ("b", Rule::KeepN), ("c", Rule::KeepN), ("d", Rule::Delete)]
    );
}

#[test]
fn epoch_and_future_times_are_unknown_and_rank_last() {
    let epoch = TagInput { created: Some(DateTime::<Utc>::UNIX_EPOCH), ..tag("epoch", "1", None) };
    let year_one = TagInput {
        created: Some(DateTime::parse_from_rfc3339("0001-01-01T00:00:00Z").expect("t").to_utc()),
        ..tag("year-one", "2", None)
    };
    let future = TagInput { created: Some(now() + Duration::days(30)), ..tag("future", "3", None) };
    let tags = vec![epoch, year_one, future, tag("known", "4", Some(60))];
    let p = flat(&rules(1, 30, "", ""), tags);
    assert_eq!(
        decided(&p),
        [
            ("epoch", Rule::AgeUnknown),
            ("future", Rule::AgeUnknown),
            ("known", Rule::KeepN),
            ("year-one", Rule::AgeUnknown)
        ]
    );
    assert!(
        p.decisions.iter().filter(|d| d.tag != "known").all(|d| d.age_from == AgeFrom::Unknown)
    );
}

#[test]
fn first_seen_stands_in_for_an_unknown_created_and_breaks_ties() {
    let seen = |name: &str, digest: &str, created: Option<i64>, seen_days: i64| TagInput {
        first_seen: Some(now() - Duration::days(seen_days)),
        ..tag(name, digest, created)
    };
    // Reproducible builds: every image says 1970; the last pushed wins.
    let epoch = Some(DateTime::<Utc>::UNIX_EPOCH);
    let tags: Vec<TagInput> = ["alpha", "beta", "gamma", "xray", "zeta"]
        .iter()
        .enumerate()
        .map(|(i, name)| TagInput {
            created: epoch,
            ..seen(name, &format!("d{i}"), None, 10 - i as i64)
        })
        .collect();
    let p = flat(&rules(2, 0, "", ""), tags.clone());
    let kept: Vec<&str> =
        p.decisions.iter().filter(|d| d.action == Action::Keep).map(|d| d.tag.as_str()).collect();
    assert_eq!(kept, ["xray", "zeta"]);
    assert!(p.decisions.iter().all(|d| d.age_from == AgeFrom::FirstSeen));
    // Equal `created`: first-seen order, not the name.
    let tags: Vec<TagInput> = ["zz", "aa"]
        .iter()
        .enumerate()
        .map(|(i, name)| seen(name, &format!("d{i}"), Some(5), 3 - i as i64))
        .collect();
    let p = flat(&rules(1, 0, "", ""), tags);
    assert_eq!(decided(&p), [("aa", Rule::KeepN), ("zz", Rule::Delete)]);
    // The `created` source ignores first-seen times.
    let strict = Rules::compile(&RuleSpec { age_source: AgeSource::Created, ..spec(0, 1, "", "") })
        .expect("valid");
    let p = flat(&strict, vec![TagInput { created: epoch, ..seen("old", "d", None, 90) }]);
    assert_eq!(decided(&p), [("old", Rule::AgeUnknown)]);
}

#[test]
fn ties_are_broken_by_digest_never_by_name() {
    let tags = vec![tag("c", "1", Some(1)), tag("a", "3", Some(1)), tag("b", "2", Some(1))];
    let p = flat(&rules(2, 0, "", ""), tags);
    assert_eq!(decided(&p), [("a", Rule::Delete), ("b", Rule::KeepN), ("c", Rule::KeepN)]);
}

#[test]
fn keep_n_counts_images_not_tags() {
    let tags = vec![
        tag("v1.2.3", "new", Some(1)),
        tag("v1.2", "new", Some(1)),
        tag("v1", "new", Some(1)),
        tag("v1.2.2", "old", Some(9)),
    ];
    let p = flat(&rules(1, 0, "", ""), tags);
    assert_eq!(
        decided(&p),
        [
            ("v1", Rule::KeepN),
            ("v1.2", Rule::KeepN),
            ("v1.2.2", Rule::Delete),
            ("v1.2.3", Rule::KeepN)
        ]
    );
}

#[test]
fn keep_n_larger_than_the_candidates_keeps_them_all() {
    let tags = vec![tag("a", "1", Some(300)), tag("b", "2", Some(200))];
    let p = flat(&rules(100_000, 0, "", ""), tags);
    assert_eq!(decided(&p), [("a", Rule::KeepN), ("b", Rule::KeepN)]);
    assert!(p.images.is_empty());
}

#[test]
fn older_than_spares_recent_and_unknown_ages() {
    let tags = vec![tag("old", "1", Some(30)), tag("new", "2", Some(1)), tag("unknown", "3", None)];
    let p = flat(&rules(0, 7, "", ""), tags);
    assert_eq!(
        decided(&p),
        [("new", Rule::NewerThan), ("old", Rule::Delete), ("unknown", Rule::AgeUnknown)]
    );
}

#[test]
fn older_than_boundary() {
    let at = |name: &str, seconds_old: i64| TagInput {
        created: Some(now() - Duration::seconds(seconds_old)),
        ..tag(name, name, None)
    };
    let week = 7 * 86_400;
    let tags = vec![at("exactly", week), at("just-newer", week - 1), at("just-older", week + 1)];
    let p = flat(&rules(0, 7, "", ""), tags);
    assert_eq!(
        decided(&p),
        [("exactly", Rule::Delete), ("just-newer", Rule::NewerThan), ("just-older", Rule::Delete)]
    );
}

#[test]
fn no_age_rule_means_no_age_filter() {
    // GitLab's semantics: without older_than, age does not protect.
    let future = TagInput { created: Some(now() + Duration::hours(1)), ..tag("future", "3", None) };
    let tags = vec![tag("old", "1", Some(400)), tag("unknown", "2", None), future];
    let p = flat(&rules(0, 0, "", ""), tags);
    assert_eq!(
        decided(&p),
        [("future", Rule::Delete), ("old", Rule::Delete), ("unknown", Rule::Delete)]
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
    let p = flat(&rules(2, 25, "", ""), tags);
    assert_eq!(
        decided(&p),
        [("a", Rule::Delete), ("b", Rule::Delete), ("c", Rule::KeepN), ("d", Rule::KeepN)]
    );
}

#[test]
fn delete_and_keep_regexes_together() {
    let tags =
        vec![tag("v1", "1", Some(30)), tag("v1-keep", "2", Some(30)), tag("main", "3", Some(30))];
    let p = flat(&rules(0, 0, "v.*", ".*-keep"), tags);
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
fn a_digest_shared_with_a_kept_tag_is_only_untagged() {
    let tags = vec![
        tag("v1", "shared", Some(30)),
        tag("prod", "shared", Some(30)),
        tag("v2", "alone", Some(30)),
        tag("v3", "alone", Some(30)),
    ];
    let p = flat(&rules(0, 0, "v.*", ""), tags);
    assert_eq!(decided(&p)[1], ("v1", Rule::Delete));
    assert_eq!(p.images, [image("alone", &["v2", "v3"], true), image("shared", &["v1"], false)]);
}

#[test]
fn empty_input_plans_nothing() {
    let p = flat(&rules(3, 1, "", ""), Vec::new());
    assert!(p.decisions.is_empty() && p.images.is_empty() && p.blocked.is_none());
}

#[test]
fn an_unresolved_tag_blocks_every_deletion() {
    let tags = vec![unresolved("v1", Some(900)), tag("v3", "d", Some(900))];
    let p = flat(&rules(0, 1, "", ""), tags);
    assert_eq!(decided(&p), [("v1", Rule::Unresolved), ("v3", Rule::Delete)]);
    assert!(p.images.is_empty());
    assert!(p.blocked.as_deref().is_some_and(|b| b.contains("v1")), "{:?}", p.blocked);
}

#[test]
fn a_repeated_tag_is_decided_once_from_its_most_cautious_reading() {
    let old = tag("v1", "d1", Some(90));
    for tags in
        [vec![old.clone(), unresolved("v1", Some(90))], vec![unresolved("v1", Some(90)), old]]
    {
        let p = flat(&rules(0, 0, "", ""), tags);
        assert_eq!(decided(&p), [("v1", Rule::Unresolved)]);
        assert!(p.images.is_empty());
    }
}

#[test]
fn decisions_serialize_snake_case() {
    let p = flat(&rules(0, 0, "", "keep-.*"), vec![tag("keep-1", "d", Some(1))]);
    let d = &p.decisions[0];
    assert_eq!((d.digest.as_deref(), d.created), (Some("d"), Some(now() - Duration::days(1))));
    let json = serde_json::to_value(&p).expect("serialize");
    assert_eq!(json["decisions"][0]["rule"], "keep_regex");
    assert_eq!(json["decisions"][0]["action"], "keep");
    assert_eq!(json["decisions"][0]["kind"], "image");
    assert_eq!(json["decisions"][0]["age_from"], "created");
    let back: Plan = serde_json::from_value(json).expect("round trip");
    assert_eq!(back, p);
}

// The graph: indexes, platforms and attachments.

fn sha(c: char) -> String {
    format!("sha256:{}", c.to_string().repeat(64))
}

fn fallback_tag(subject: &str) -> String {
    subject.replace(':', "-")
}

fn links(children: &[&str], subject: Option<&str>) -> ManifestLinks {
    ManifestLinks {
        children: children.iter().map(|c| c.to_string()).collect(),
        subject: subject.map(Into::into),
        blobs: Vec::new(),
    }
}

/// `v1` (an index over amd and arm, each with a per-arch tag), `v2` a plain
/// image, each signed by cosign; v2 also has a referrers fallback index
/// listing an SBOM whose subject is v2.
fn published() -> Inventory {
    let (v1, amd, arm, v2) = (sha('1'), sha('a'), sha('b'), sha('2'));
    let (sig1, sig2, refs2, sbom2) = (sha('c'), sha('d'), sha('e'), sha('f'));
    let mut tags = vec![
        tag("v1", &v1, Some(10)),
        tag("v1-amd64", &amd, Some(10)),
        tag("v1-arm64", &arm, Some(10)),
        tag("v2", &v2, Some(5)),
    ];
    tags.push(tag(&format!("{}.sig", fallback_tag(&v1)), &sig1, None));
    tags.push(tag(&format!("{}.sig", fallback_tag(&v2)), &sig2, None));
    tags.push(tag(&fallback_tag(&v2), &refs2, None));
    let manifests = [
        (v1.clone(), links(&[&amd, &arm], None)),
        (refs2, links(&[&sbom2], None)),
        (sbom2, links(&[], Some(&v2))),
    ]
    .into_iter()
    .collect();
    Inventory { tags, manifests, gaps: Vec::new() }
}

fn action_of(p: &Plan, tag: &str) -> (Action, Rule) {
    let d = p.decisions.iter().find(|d| d.tag == tag).expect("decided");
    (d.action, d.rule)
}

#[test]
fn an_index_goes_with_its_platforms_and_signature_in_order() {
    // Only `v1` and `v2` are candidates by name; the per-arch tags would
    // be too, but follow their index instead.
    let p = plan(&rules(1, 0, "v.*", ""), published(), now());
    assert_eq!(action_of(&p, "v2"), (Action::Keep, Rule::KeepN));
    assert_eq!(action_of(&p, "v1"), (Action::Delete, Rule::Delete));
    assert_eq!(action_of(&p, "v1-amd64"), (Action::Delete, Rule::DeletedWithIndex));
    let sig1 = format!("{}.sig", fallback_tag(&sha('1')));
    assert_eq!(action_of(&p, &sig1), (Action::Delete, Rule::DeletedWithSubject));
    let sig2 = format!("{}.sig", fallback_tag(&sha('2')));
    assert_eq!(action_of(&p, &sig2), (Action::Keep, Rule::KeptWithSubject));
    assert_eq!(action_of(&p, &fallback_tag(&sha('2'))), (Action::Keep, Rule::KeptWithSubject));
    // v1 goes whole: its signature first, then the index, then its children.
    let v1 = &p.images[0];
    assert_eq!((v1.digest.as_str(), v1.delete_digest), (sha('1').as_str(), true));
    let before: Vec<&str> = v1.before.iter().map(|l| l.digest.as_str()).collect();
    let after: Vec<&str> = v1.after.iter().map(|l| l.digest.as_str()).collect();
    assert_eq!(before, [sha('c')]);
    assert_eq!(after, [sha('a'), sha('b')]);
    assert_eq!(v1.before[0].tags, [sig1]);
    assert_eq!(v1.after[0].tags, ["v1-amd64"]);
    assert_eq!(v1.after[0].relation, Relation::Child);
    assert_eq!(p.images.len(), 1);
    assert_eq!(p.deleted_digests(), 4);
}

#[test]
fn a_kept_platform_tag_keeps_its_manifest_when_the_index_goes() {
    let p = plan(&rules(0, 0, "v.*", "v1-arm64"), published(), now());
    assert_eq!(action_of(&p, "v1-arm64"), (Action::Keep, Rule::KeepRegex));
    assert_eq!(action_of(&p, "v1-amd64"), (Action::Delete, Rule::DeletedWithIndex));
    let v1 = p.images.iter().find(|i| i.digest == sha('1')).expect("v1 planned");
    let after: Vec<&str> = v1.after.iter().map(|l| l.digest.as_str()).collect();
    assert_eq!(after, [sha('a')], "the kept arm64 manifest stays");
}

#[test]
fn per_arch_tags_never_take_keep_n_slots_and_attachments_never_do() {
    let p = plan(&rules(1, 0, "", ""), published(), now());
    // One image kept: the newest, v2, not a signature or a platform.
    let kept_n: Vec<&str> =
        p.decisions.iter().filter(|d| d.rule == Rule::KeepN).map(|d| d.tag.as_str()).collect();
    assert_eq!(kept_n, ["v2"]);
    // The SBOM under v2's referrers index stays with v2.
    assert!(p.images.iter().all(|i| i.after.iter().chain(&i.before).all(|l| l.digest != sha('f'))));
}

#[test]
fn a_deleted_image_takes_its_referrers_first() {
    let p = plan(&rules(0, 0, "v2", ""), published(), now());
    let v2 = p.images.iter().find(|i| i.digest == sha('2')).expect("v2 planned");
    let before: Vec<&str> = v2.before.iter().map(|l| l.digest.as_str()).collect();
    // The referrers index before the SBOM it lists, both before v2.
    let at = |d: &str| before.iter().position(|b| *b == d).expect("present");
    assert!(at(&sha('e')) < at(&sha('f')));
    assert!(before.contains(&sha('d').as_str()));
    assert!(v2.before.iter().all(|l| l.relation == Relation::Attachment));
    assert!(v2.after.is_empty());
    // The signature and the referrers index name v2 as their subject (by
    // their tags): the scrubber keeps them if v2 gains a tag meanwhile.
    let subjects = |d: &str| &v2.before.iter().find(|l| l.digest == d).expect("linked").subjects;
    assert_eq!(subjects(&sha('d')), &[sha('2')]);
    assert_eq!(subjects(&sha('e')), &[sha('2')]);
}

/// An artifact with a tag of its own (no attachment convention in its
/// name) still follows its subject: it is never planned as an image of its
/// own, so `ImagePlan::subjects` stays empty in this planner's plans (the
/// scrubber honours it from any submitter).
#[test]
fn a_tagged_artifact_follows_its_subject_and_is_never_planned_alone() {
    // Its subject unknown (untagged): kept, as any orphan attachment.
    let (sbom, subject) = (sha('f'), sha('9'));
    let tags = vec![tag("sbom-1", &sbom, Some(5))];
    let manifests = [(sbom.clone(), links(&[], Some(&subject)))].into_iter().collect();
    let p = plan(&rules(0, 0, "", ""), Inventory { tags, manifests, gaps: Vec::new() }, now());
    assert_eq!(action_of(&p, "sbom-1"), (Action::Keep, Rule::SubjectMissing));
    assert!(p.images.is_empty());
    // Its subject kept: kept with it, tag and all.
    let mut inventory = published();
    inventory.tags.push(tag("sbom-2", &sha('f'), Some(5)));
    let p = plan(&rules(0, 0, "sbom-2", ""), inventory.clone(), now());
    assert_eq!(action_of(&p, "sbom-2"), (Action::Keep, Rule::KeptWithSubject));
    // Its subject deleted: deleted before it, naming it as its subject.
    let p = plan(&rules(0, 0, "v2|sbom-2", ""), inventory, now());
    assert_eq!(action_of(&p, "sbom-2").0, Action::Delete);
    assert!(p.images.iter().all(|i| i.subjects.is_empty()), "{:?}", p.images);
    let v2 = p.images.iter().find(|i| i.digest == sha('2')).expect("v2 planned");
    let linked = v2.before.iter().find(|l| l.digest == sha('f')).expect("the SBOM goes first");
    assert_eq!(
        (linked.tags.as_slice(), linked.subjects.as_slice()),
        (&["sbom-2".to_string()][..], &[sha('2')][..])
    );
}

#[test]
fn attachments_keep_spares_them() {
    let keep = Rules::compile(&RuleSpec {
        attachments: crate::AttachmentPolicy::Keep,
        ..spec(0, 0, "v2", "")
    })
    .expect("valid");
    let p = plan(&keep, published(), now());
    let v2 = p.images.iter().find(|i| i.digest == sha('2')).expect("v2 planned");
    assert!(v2.before.is_empty());
    let sig2 = format!("{}.sig", fallback_tag(&sha('2')));
    assert_eq!(action_of(&p, &sig2), (Action::Keep, Rule::AttachmentsKept));
}

#[test]
fn an_orphan_attachment_is_kept() {
    let mut inventory =
        Inventory::from_tags(vec![tag(&fallback_tag(&sha('9')), &sha('8'), Some(99))]);
    inventory.tags.push(tag("v1", &sha('1'), Some(99)));
    let p = plan(&rules(0, 0, "", ""), inventory, now());
    assert_eq!(action_of(&p, &fallback_tag(&sha('9'))), (Action::Keep, Rule::SubjectMissing));
    assert_eq!(p.images.len(), 1);
    assert!(p.images[0].before.is_empty());
}

#[test]
fn a_child_shared_with_a_kept_index_stays() {
    let (old, new, shared, own) = (sha('1'), sha('2'), sha('3'), sha('4'));
    let manifests =
        [(old.clone(), links(&[&shared, &own], None)), (new.clone(), links(&[&shared], None))]
            .into_iter()
            .collect();
    let tags = vec![tag("old", &old, Some(30)), tag("new", &new, Some(1))];
    let p = plan(&rules(1, 0, "", ""), Inventory { tags, manifests, gaps: Vec::new() }, now());
    let after: Vec<&str> = p.images[0].after.iter().map(|l| l.digest.as_str()).collect();
    assert_eq!(after, [own.as_str()]);
}

#[test]
fn gaps_and_cycles_block_the_plan() {
    let mut inventory = published();
    inventory.gaps.push("index sha256:1 child could not be read".into());
    let p = plan(&rules(0, 0, "", ""), inventory, now());
    assert!(p.images.is_empty() && p.blocked.is_some());
    let (a, b) = (sha('1'), sha('2'));
    let manifests =
        [(a.clone(), links(&[&b], None)), (b.clone(), links(&[&a], None))].into_iter().collect();
    let inventory = Inventory { tags: vec![tag("x", &a, Some(9))], manifests, gaps: Vec::new() };
    let p = plan(&rules(0, 0, "", ""), inventory, now());
    assert_eq!(p.blocked.as_deref(), Some("manifest graph has a cycle"));
    assert!(p.images.is_empty());
}

// Protection.

fn guarded(spec: crate::ProtectionSpec, marks: Vec<crate::InUse>) -> Protection {
    Protection::compile(&spec, "team/app", marks, now()).expect("valid protection")
}

#[test]
fn an_untagged_child_in_use_stays_when_its_index_goes() {
    // v1-amd64's manifest is untagged here, and a cluster runs it.
    let mut inventory = published();
    inventory.tags.retain(|t| t.tag != "v1-amd64");
    let mark = crate::InUse {
        digest: sha('a'),
        holder: "prod-eu".into(),
        until: now() + Duration::hours(1),
    };
    let protection = guarded(Default::default(), vec![mark]);
    let p = plan_protected(&rules(0, 0, "v1.*", ""), inventory, &protection, now());
    assert_eq!(action_of(&p, "v1"), (Action::Delete, Rule::Delete));
    let v1 = p.images.iter().find(|i| i.digest == sha('1')).expect("v1 planned");
    let after: Vec<&str> = v1.after.iter().map(|l| l.digest.as_str()).collect();
    assert_eq!(after, [sha('b')], "the manifest in use is not deleted with its index");
}

#[test]
fn protected_tags_and_digests_are_kept_and_say_why() {
    let spec = crate::ProtectionSpec {
        tag_patterns: vec!["v2".into()],
        digests: vec![sha('1')],
        ..Default::default()
    };
    let p = plan_protected(&rules(0, 0, "", ""), published(), &guarded(spec, vec![]), now());
    assert_eq!(action_of(&p, "v1"), (Action::Keep, Rule::Protected));
    assert_eq!(action_of(&p, "v2"), (Action::Keep, Rule::Protected));
    // What a protected index reaches stays with it.
    assert_eq!(action_of(&p, "v1-amd64").0, Action::Keep);
    let v2 = p.decisions.iter().find(|d| d.tag == "v2").expect("decided");
    assert_eq!(v2.shield.as_deref(), Some("tag protected by `v2`"));
    assert_eq!(p.deleted_tags(), 0);
}

#[test]
fn a_protected_repository_deletes_nothing() {
    let spec =
        crate::ProtectionSpec { repository_globs: vec!["team/*".into()], ..Default::default() };
    let p = plan_protected(&rules(0, 0, "", ""), published(), &guarded(spec, vec![]), now());
    assert!(p.decisions.iter().all(|d| d.rule == Rule::Protected), "{:?}", decided(&p));
    assert!(p.images.is_empty());
}

#[test]
fn an_expired_mark_protects_nothing() {
    let mark = crate::InUse { digest: sha('2'), holder: "ci".into(), until: now() };
    let p = plan_protected(
        &rules(0, 0, "v2", ""),
        published(),
        &guarded(Default::default(), vec![mark]),
        now(),
    );
    assert_eq!(action_of(&p, "v2"), (Action::Delete, Rule::Delete));
}
