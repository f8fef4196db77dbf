//! Policies of listed rules, run for real against the real registry: a
//! semantic-version rule, a CI rule, a protection list and an in-use mark
//! together; the registry afterwards holds exactly what the preview said.

use std::collections::BTreeSet;

use regsweep_integration_tests::{Scheduler, Scrubber, TestDb, TestRegistry, Worker};
use regsweep_policy::{RuleSpec, TagRuleSpec, VersionGroup};
use regsweep_proto::v1::{self, DeletionStatus, TagAction};

use crate::policies::{
    create_policy, create_registry, days_ago, policy_for, preview, run_policy, sync,
};
use crate::protection::{deletions_ended, mark_in_use, protect};
use crate::validation::violations;

/// Releases: the highest per major (prereleases not counted); CI builds:
/// a week.
fn two_rules() -> RuleSpec {
    RuleSpec {
        rules: vec![
            TagRuleSpec {
                name: "releases".into(),
                keep_newest: 1,
                per: VersionGroup::Major,
                ..TagRuleSpec::default()
            },
            TagRuleSpec {
                name: "ci".into(),
                tag_glob: "sha-*".into(),
                keep_within_seconds: 7 * 86_400,
                ..TagRuleSpec::default()
            },
        ],
        ..RuleSpec::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn listed_rules_with_protection_delete_exactly_what_the_preview_said() {
    let registry = TestRegistry::start().await;
    let db = TestDb::create().await;
    let scheduler = Scheduler::start(&db, &["--tick", "200ms"]).await;
    let scrubber = Scrubber::start("scrubber", &db, &scheduler, &["--delay", "0s"]).await;
    let _worker = Worker::start(&scheduler, "w1", &["--scrubber", &scrubber.url]).await;
    create_registry(&scheduler, "local", &registry.url()).await;
    let r = &registry;
    let repo = "team/svc";
    let mut digests = std::collections::BTreeMap::new();
    for (tag, age) in [
        ("1.0.0", 300),
        ("1.1.0", 200),
        ("v1.2.0", 100),
        ("2.0.0", 90),
        ("2.1.0", 60),
        ("2.1.1-rc.1", 50),
        ("sha-aaa", 2),
        ("sha-bbb", 30),
        ("nightly", 40),
    ] {
        let digest = r.push_image(repo, &[tag], Some(days_ago(age)), tag).await;
        digests.insert(tag, digest);
    }
    let before = r.manifests(repo);
    assert_eq!(before.len(), 9);
    // 1.0.0 is protected by name; a cluster runs 1.1.0.
    let protection =
        v1::RegistryProtection { tag_patterns: vec![r"1\.0\.0".into()], ..Default::default() };
    protect(&scheduler, protection).await;
    mark_in_use(&scheduler, "prod-eu", &[(repo, &digests["1.1.0"])]).await;

    sync(&scheduler, "local").await;
    create_policy(&scheduler, policy_for("svc", repo, &two_rules())).await;
    let said = preview(&scheduler, "svc", repo).await;
    let decided = |tag: &str| {
        let d = said.decisions.iter().find(|d| d.tag == tag).expect("decided");
        (d.action(), d.rule.clone(), d.rule_position, d.rule_name.clone())
    };
    let keep = TagAction::Keep;
    let delete = TagAction::Delete;
    assert_eq!(decided("1.0.0"), (keep, "protected".into(), 0, String::new()));
    assert_eq!(decided("1.1.0"), (keep, "in_use".into(), 0, String::new()));
    assert_eq!(decided("v1.2.0"), (keep, "keep_version".into(), 1, "releases".into()));
    assert_eq!(decided("2.0.0"), (delete, "delete".into(), 1, "releases".into()));
    assert_eq!(decided("2.1.0"), (keep, "keep_version".into(), 1, "releases".into()));
    assert_eq!(decided("2.1.1-rc.1"), (delete, "delete".into(), 1, "releases".into()));
    assert_eq!(decided("sha-aaa"), (keep, "newer_than".into(), 2, "ci".into()));
    assert_eq!(decided("sha-bbb"), (delete, "delete".into(), 2, "ci".into()));
    assert_eq!(decided("nightly"), (keep, "not_selected".into(), 0, String::new()));

    let planned: BTreeSet<String> =
        said.images.iter().filter(|i| i.delete_digest).map(|i| i.digest.clone()).collect();
    let expected: BTreeSet<String> =
        ["2.0.0", "2.1.1-rc.1", "sha-bbb"].iter().map(|t| digests[t].clone()).collect();
    assert_eq!(planned, expected);

    run_policy(&scheduler, "svc").await;
    let ended = deletions_ended(&scheduler, &scrubber, "svc", 3).await;
    assert!(ended.iter().all(|d| d.status() == DeletionStatus::Deleted), "{ended:?}");
    let left: BTreeSet<String> = before.difference(&planned).cloned().collect();
    assert_eq!(r.manifests(repo), left);
    for tag in ["1.0.0", "1.1.0", "v1.2.0", "2.1.0", "sha-aaa", "nightly"] {
        r.pull(repo, tag).await.unwrap_or_else(|e| panic!("{tag}: {e}"));
    }
}

#[tokio::test]
async fn bad_rules_are_refused_field_by_field_and_change_nothing() {
    let registry = TestRegistry::start().await;
    let db = TestDb::create().await;
    let scheduler = Scheduler::start(&db, &[]).await;
    create_registry(&scheduler, "local", &registry.url()).await;
    let mut bad = policy_for("bad", "team/**", &two_rules());
    bad.keep_n = 3;
    bad.rules[0].semver = ">>1".into();
    bad.rules[1].tag_state = v1::TagState::Untagged.into();
    bad.rules.push(v1::PolicyRule { name: "ci".into(), ..Default::default() });
    let request = v1::CreatePolicyRequest { policy: Some(bad), ..Default::default() };
    let refused = scheduler.policies().await.create_policy(request).await.expect_err("refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    let mut fields = violations(&refused);
    fields.sort();
    assert_eq!(
        fields,
        [
            "policy.keep_n",
            "policy.rules[0].semver",
            "policy.rules[1].tag_state",
            "policy.rules[2].name",
        ]
    );
    let listed = scheduler
        .policies()
        .await
        .list_policies(v1::ListPoliciesRequest::default())
        .await
        .expect("list");
    assert!(listed.into_inner().policies.is_empty());

    // A valid policy stores its rules as given, and a masked update
    // replaces them.
    let stored = create_policy(&scheduler, policy_for("ok", "team/**", &two_rules())).await;
    assert_eq!(stored.rules, policy_for("ok", "team/**", &two_rules()).rules);
    let one = v1::Policy {
        name: "ok".into(),
        rules: vec![v1::PolicyRule { keep_all: true, ..Default::default() }],
        ..Default::default()
    };
    let request = v1::UpdatePolicyRequest {
        policy: Some(one),
        update_mask: vec!["rules".into()],
        ..Default::default()
    };
    let updated = scheduler.policies().await.update_policy(request).await.expect("update");
    let updated = updated.into_inner().policy.expect("policy");
    assert_eq!(updated.rules.len(), 1);
    assert_ne!(updated.revision, stored.revision);
}
