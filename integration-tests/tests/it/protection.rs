//! What no policy may delete, run for real against the real registry: a
//! registry's protection list (tag patterns, digests, repository globs)
//! and digests marked in use, at planning and again right before the
//! scrubber's DELETE. Every assertion is on the registry's state.

use std::collections::BTreeSet;
use std::time::Duration;

use regsweep_integration_tests::{Scheduler, Scrubber, TestDb, TestRegistry, Worker, wait_until};
use regsweep_policy::RuleSpec;
use regsweep_proto::duration_from_std;
use regsweep_proto::v1::{self, DeletionStatus, TagAction};

use crate::policies::{
    create_policy, create_registry, days_ago, policy_for, preview, run_policy, sync,
};

/// Everything older than a week is a candidate; nothing kept by count.
fn old_goes() -> RuleSpec {
    RuleSpec {
        older_than_seconds: 7 * 86_400,
        name_regex_delete: ".*".into(),
        ..Default::default()
    }
}

/// Sets registry `local`'s protection.
pub async fn protect(scheduler: &Scheduler, protection: v1::RegistryProtection) {
    let registry =
        v1::Registry { name: "local".into(), protection: Some(protection), ..Default::default() };
    let request = v1::UpdateRegistryRequest {
        registry: Some(registry),
        update_mask: vec!["protection".into()],
        ..Default::default()
    };
    scheduler.registries().await.update_registry(request).await.expect("protect");
}

/// Marks `images` (repository, digest) of registry `local` in use by
/// `holder` for an hour.
pub async fn mark_in_use(scheduler: &Scheduler, holder: &str, images: &[(&str, &str)]) {
    let request = v1::MarkInUseRequest {
        registry: "local".into(),
        holder: holder.into(),
        ttl: Some(duration_from_std(Duration::from_secs(3600))),
        images: images
            .iter()
            .map(|(r, d)| v1::ImageReference { repository: r.to_string(), digest: d.to_string() })
            .collect(),
        replace: false,
    };
    let marked = scheduler.registries().await.mark_in_use(request).await.expect("mark");
    assert_eq!(marked.into_inner().marked as usize, images.len());
}

/// The deletions of `policy`'s last cleanup of its one repository, once
/// every one of them ended.
pub async fn deletions_ended(
    scheduler: &Scheduler,
    scrubber: &Scrubber,
    policy: &str,
    count: usize,
) -> Vec<v1::Deletion> {
    wait_until("the deletions to end", Duration::from_secs(60), || async move {
        let request = v1::ListRepositoriesRequest { policy: policy.into(), ..Default::default() };
        let repos = scheduler.repositories().await.list_repositories(request).await.ok()?;
        let job_id = repos.into_inner().repositories.first()?.last_job_id;
        let request = v1::ListDeletionsRequest { job_id, ..Default::default() };
        let listed = scrubber.client().await.list_deletions(request).await.ok()?.into_inner();
        let ended = |d: &v1::Deletion| {
            !matches!(d.status(), DeletionStatus::PendingDelete | DeletionStatus::Deleting)
        };
        (job_id > 0 && listed.deletions.len() == count && listed.deletions.iter().all(ended))
            .then_some(listed.deletions)
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn protected_and_in_use_images_stay_exactly_as_the_preview_said() {
    let registry = TestRegistry::start().await;
    let db = TestDb::create().await;
    let scheduler = Scheduler::start(&db, &["--tick", "200ms"]).await;
    let scrubber = Scrubber::start("scrubber", &db, &scheduler, &["--delay", "0s"]).await;
    let _worker = Worker::start(&scheduler, "w1", &["--scrubber", &scrubber.url]).await;
    create_registry(&scheduler, "local", &registry.url()).await;
    let r = &registry;
    let repo = "team/app";
    // Every image is a month old and a candidate.
    let release = r.push_image(repo, &["v1.0"], Some(days_ago(30)), "release").await;
    let running = r.push_image(repo, &["build-1"], Some(days_ago(30)), "running").await;
    let pinned = r.push_image(repo, &["build-2"], Some(days_ago(30)), "pinned").await;
    let stale = r.push_image(repo, &["build-3"], Some(days_ago(30)), "stale").await;
    // A multi-arch build whose arm64 manifest (untagged) a cluster runs.
    let amd = r.push_image(repo, &[], Some(days_ago(30)), "amd").await;
    let arm = r.push_image(repo, &[], Some(days_ago(30)), "arm").await;
    let index = r.push_index(repo, "build-4", &[(&amd, "amd64"), (&arm, "arm64")]).await;
    // A repository protected whole.
    let prod = r.push_image("prod/app", &["build-9"], Some(days_ago(30)), "prod").await;
    let before = r.manifests(repo);
    assert_eq!(before.len(), 7);

    protect(
        &scheduler,
        v1::RegistryProtection {
            tag_patterns: vec![r"v\d+\.\d+".into()],
            digests: vec![pinned.clone()],
            repository_globs: vec!["prod/**".into()],
        },
    )
    .await;
    mark_in_use(&scheduler, "prod-eu", &[(repo, &running), (repo, &arm)]).await;

    sync(&scheduler, "local").await;
    create_policy(&scheduler, policy_for("app", repo, &old_goes())).await;
    create_policy(&scheduler, policy_for("prod", "prod/app", &old_goes())).await;
    let said = preview(&scheduler, "app", repo).await;
    let decided = |tag: &str| {
        let d = said.decisions.iter().find(|d| d.tag == tag).expect("decided");
        (d.action(), d.rule.clone(), d.shield.clone())
    };
    assert_eq!(
        decided("v1.0"),
        (TagAction::Keep, "protected".into(), r"tag protected by `v\d+\.\d+`".into())
    );
    let (action, rule, shield) = decided("build-1");
    assert_eq!((action, rule.as_str()), (TagAction::Keep, "in_use"));
    assert!(shield.starts_with("in use by prod-eu until "), "{shield}");
    assert_eq!(
        decided("build-2"),
        (TagAction::Keep, "protected".into(), "digest protected".into())
    );
    assert_eq!(decided("build-3").0, TagAction::Delete);
    assert_eq!(decided("build-4").0, TagAction::Delete);
    let prod_said = preview(&scheduler, "prod", "prod/app").await;
    assert_eq!(prod_said.decisions[0].rule, "protected");
    assert_eq!(prod_said.delete_count, 0);

    // Run for real: the registry loses exactly what the preview planned.
    let planned: BTreeSet<String> = said
        .images
        .iter()
        .filter(|i| i.delete_digest)
        .flat_map(|i| {
            let linked = i.before.iter().chain(&i.after).map(|l| l.digest.clone());
            std::iter::once(i.digest.clone()).chain(linked)
        })
        .collect();
    assert_eq!(planned, [stale.clone(), index.clone(), amd.clone()].into());
    run_policy(&scheduler, "app").await;
    run_policy(&scheduler, "prod").await;
    let ended = deletions_ended(&scheduler, &scrubber, "app", 2).await;
    assert!(ended.iter().all(|d| d.status() == DeletionStatus::Deleted), "{ended:?}");
    let left: BTreeSet<String> = before.difference(&planned).cloned().collect();
    assert_eq!(r.manifests(repo), left);
    assert_eq!(left, [release, running, pinned, arm].into());
    for tag in ["v1.0", "build-1", "build-2"] {
        r.pull(repo, tag).await.unwrap_or_else(|e| panic!("{e}"));
    }
    // The protected repository's cleanup ran and deleted nothing.
    let job = wait_until("prod's cleanup to end", Duration::from_secs(30), || async {
        let request = v1::ListRepositoriesRequest { policy: "prod".into(), ..Default::default() };
        let repos = scheduler.repositories().await.list_repositories(request).await.ok()?;
        let repo = repos.into_inner().repositories.into_iter().next()?;
        (repo.cleanup_finished_at.is_some()).then_some(repo)
    })
    .await;
    assert_eq!(job.last_deleted_count, 0);
    assert_eq!(r.manifests("prod/app"), [prod].into());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mark_or_protection_made_after_the_plan_stops_its_delete() {
    let registry = TestRegistry::start().await;
    let db = TestDb::create().await;
    let scheduler = Scheduler::start(&db, &["--tick", "200ms"]).await;
    // The undo window is the time a cluster has to report a new image.
    let scrubber = Scrubber::start("scrubber", &db, &scheduler, &["--delay", "10s"]).await;
    let _worker = Worker::start(&scheduler, "w1", &["--scrubber", &scrubber.url]).await;
    create_registry(&scheduler, "local", &registry.url()).await;
    let r = &registry;
    let repo = "team/late";
    let started = r.push_image(repo, &["build-1"], Some(days_ago(30)), "started").await;
    let _frozen = r.push_image(repo, &["build-2"], Some(days_ago(30)), "frozen").await;
    let stale = r.push_image(repo, &["build-3"], Some(days_ago(30)), "stale").await;
    // Two new images keep the plan under the blast-radius guard.
    r.push_image(repo, &["build-4"], Some(days_ago(1)), "new-4").await;
    r.push_image(repo, &["build-5"], Some(days_ago(1)), "new-5").await;
    sync(&scheduler, "local").await;
    let mut policy = policy_for("late", repo, &old_goes());
    policy.max_delete_fraction = 1.0;
    create_policy(&scheduler, policy).await;
    run_policy(&scheduler, "late").await;

    // The three old images are planned and waiting out the delay.
    let scrubber_client = scrubber.client().await;
    wait_until("three pending deletions", Duration::from_secs(30), || {
        let mut scrubber = scrubber_client.clone();
        async move {
            let request =
                v1::ListDeletionsRequest { repository: repo.into(), ..Default::default() };
            let listed = scrubber.list_deletions(request).await.ok()?.into_inner().deletions;
            let pending = listed.iter().filter(|d| d.status() == DeletionStatus::PendingDelete);
            (pending.count() == 3).then_some(())
        }
    })
    .await;
    // Then a cluster starts build-1, and an operator freezes build-2.
    mark_in_use(&scheduler, "prod-us", &[(repo, &started)]).await;
    protect(
        &scheduler,
        v1::RegistryProtection { tag_patterns: vec!["build-2".into()], ..Default::default() },
    )
    .await;

    let ended = deletions_ended(&scheduler, &scrubber, "late", 3).await;
    let by_tag = |tag: &str| {
        ended
            .iter()
            .find(|d| d.image.as_ref().is_some_and(|i| i.tags.contains(&tag.to_string())))
            .expect("deletion")
    };
    for (tag, why) in [("build-1", "in use by prod-us"), ("build-2", "tag protected by")] {
        let d = by_tag(tag);
        assert_eq!(d.status(), DeletionStatus::Cancelled, "{tag}: {d:?}");
        assert!(d.error.contains(why), "{tag}: {}", d.error);
        r.pull(repo, tag).await.unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(by_tag("build-3").status(), DeletionStatus::Deleted);
    assert!(!r.manifests(repo).contains(&stale));
    assert_eq!(r.manifests(repo).len(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_protection_and_marks_are_refused_field_by_field() {
    let db = TestDb::create().await;
    let scheduler = Scheduler::start(&db, &[]).await;
    create_registry(&scheduler, "local", "http://127.0.0.1:9").await;
    let registry = v1::Registry {
        name: "local".into(),
        protection: Some(v1::RegistryProtection {
            tag_patterns: vec!["(".into()],
            digests: vec!["sha256:short".into()],
            repository_globs: vec!["ok/**".into()],
        }),
        ..Default::default()
    };
    let request = v1::UpdateRegistryRequest {
        registry: Some(registry),
        update_mask: vec!["protection".into()],
        ..Default::default()
    };
    let status = scheduler.registries().await.update_registry(request).await.expect_err("refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        crate::validation::violations(&status),
        ["registry.protection.tag_patterns[0]", "registry.protection.digests[0]"]
    );
    let stored = scheduler
        .registries()
        .await
        .get_registry(v1::GetRegistryRequest { name: "local".into() })
        .await
        .expect("get")
        .into_inner()
        .registry
        .expect("registry");
    assert_eq!(stored.protection.unwrap_or_default(), v1::RegistryProtection::default());

    let request = v1::MarkInUseRequest {
        registry: "local".into(),
        holder: String::new(),
        ttl: Some(duration_from_std(Duration::from_secs(1))),
        images: vec![v1::ImageReference { repository: "a".into(), digest: "nope".into() }],
        replace: false,
    };
    let status = scheduler.registries().await.mark_in_use(request).await.expect_err("refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(crate::validation::violations(&status), ["holder", "ttl", "images[0].digest"]);
}
