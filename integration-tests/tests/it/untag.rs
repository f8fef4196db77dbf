//! Untagging on a registry that cannot delete a tag, where every failure
//! leaves the tag where it was or gone, never on a placeholder; and
//! registries that refuse deletes, answered at once, never written to.
//! Every assertion is on the registry's state.

use std::time::Duration;

use regsweep_integration_tests::raw::HeldCleanup;
use regsweep_integration_tests::{Scheduler, Scrubber, TestDb, TestRegistry, wait_until};
use regsweep_proto::v1::{self, DeletionStatus, scrubber_service_client::ScrubberServiceClient};
use tonic::transport::Channel;

use crate::policies::create_registry;

/// A scheduler and a scrubber (no undo window) over `registry`.
async fn services(registry: &TestRegistry) -> (TestDb, Scheduler, Scrubber) {
    let db = TestDb::create().await;
    let scheduler = Scheduler::start(&db, &[]).await;
    create_registry(&scheduler, "local", &registry.url()).await;
    let scrubber = Scrubber::start("scrubber", &db, &scheduler, &["--delay", "0s"]).await;
    (db, scheduler, scrubber)
}

/// Submits `images` for `app` as the plan of a real cleanup attempt;
/// returns its job id.
async fn submit(
    scheduler: &Scheduler,
    client: &ScrubberServiceClient<Channel>,
    images: Vec<v1::ImageDeletion>,
) -> i64 {
    let cleanup = HeldCleanup::start(scheduler, "local", "app").await;
    client.clone().submit_deletions(cleanup.plan(images)).await.expect("submit");
    let job_id = cleanup.job_id;
    cleanup.finish(scheduler).await;
    job_id
}

fn image(digest: &str, tags: &[&str], delete_digest: bool) -> v1::ImageDeletion {
    v1::ImageDeletion {
        digest: digest.into(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        delete_digest,
        ..Default::default()
    }
}

/// Submits `images` for `app` as the plan of a real cleanup attempt and
/// waits for them all to end.
async fn scrub(
    scheduler: &Scheduler,
    client: &ScrubberServiceClient<Channel>,
    images: Vec<v1::ImageDeletion>,
) -> Vec<v1::Deletion> {
    let n = images.len();
    let job_id = submit(scheduler, client, images).await;
    wait_until("the deletions to end", Duration::from_secs(30), || {
        let mut client = client.clone();
        async move {
            let request = v1::ListDeletionsRequest { job_id, ..Default::default() };
            let listed = client.list_deletions(request).await.ok()?.into_inner().deletions;
            let ended = listed
                .iter()
                .all(|d| matches!(d.status(), DeletionStatus::Deleted | DeletionStatus::Failed));
            (listed.len() == n && ended).then_some(listed)
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registry_without_deletes_fails_at_once_and_keeps_every_tag() {
    let registry = TestRegistry::start_without_deletes().await;
    let shared = registry.push_image("app", &["v1", "prod"], None, "shared").await;
    let alone = registry.push_image("app", &["v2"], None, "alone").await;
    let before = registry.manifests("app");
    let (_db, scheduler, scrubber) = services(&registry).await;

    // v1 needs an untag (prod keeps its digest); v2 goes by digest.
    let ended = scrub(
        &scheduler,
        &scrubber.client().await,
        vec![image(&shared, &["v1"], false), image(&alone, &["v2"], true)],
    )
    .await;
    for d in &ended {
        assert_eq!(d.status(), DeletionStatus::Failed, "{d:?}");
        assert_eq!(d.attempts, 1, "UNSUPPORTED is final, not retried: {d:?}");
        assert!(d.error.contains("UNSUPPORTED"), "{}", d.error);
        assert!(d.deleted_tags.is_empty() && !d.digest_deleted, "{d:?}");
    }
    // Never written to: no placeholder, every tag where it was.
    assert_eq!(registry.manifests("app"), before);
    assert_eq!(registry.tag_digest("app", "v1").await, Some(shared.clone()));
    assert_eq!(registry.tag_digest("app", "prod").await, Some(shared));
    assert_eq!(registry.tag_digest("app", "v2").await, Some(alone));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_untag_stopped_half_way_is_finished_on_the_next_try() {
    let registry = TestRegistry::start().await;
    let shared = registry.push_image("app", &["v1", "prod"], None, "shared").await;
    // A scrubber killed between the placeholder's PUT and its DELETE.
    let placeholder = registry.put_placeholder("app", "v1").await;
    assert_eq!(registry.tag_digest("app", "v1").await, Some(placeholder.clone()));
    let (_db, scheduler, scrubber) = services(&registry).await;

    let ended =
        scrub(&scheduler, &scrubber.client().await, vec![image(&shared, &["v1"], false)]).await;
    assert_eq!(ended[0].status(), DeletionStatus::Deleted, "{ended:?}");
    assert_eq!(ended[0].deleted_tags, ["v1"]);
    assert_eq!(registry.tag_digest("app", "v1").await, None, "v1 is gone");
    assert_eq!(registry.tag_digest("app", "prod").await, Some(shared.clone()));
    assert!(!registry.has_manifest("app", &placeholder).await, "the placeholder is gone");
    assert_eq!(registry.manifests("app"), [shared].into());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_placeholder_that_cannot_be_deleted_is_replaced_by_the_original() {
    let registry = TestRegistry::start_without_deletes().await;
    let shared = registry.push_image("app", &["v1", "prod"], None, "shared").await;
    // Left on a placeholder by an untag that was stopped half-way (PUTs
    // still work where deletes are off).
    registry.put_placeholder("app", "v1").await;
    let (_db, scheduler, scrubber) = services(&registry).await;

    let ended =
        scrub(&scheduler, &scrubber.client().await, vec![image(&shared, &["v1"], false)]).await;
    assert_eq!(ended[0].status(), DeletionStatus::Failed, "{ended:?}");
    assert_eq!(ended[0].attempts, 1, "{ended:?}");
    // The tag names the image again; it is not reported removed.
    assert_eq!(registry.tag_digest("app", "v1").await, Some(shared.clone()));
    assert_eq!(registry.tag_digest("app", "prod").await, Some(shared));
    assert!(ended[0].deleted_tags.is_empty(), "{ended:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_on_a_registry_without_deletes_fails_at_once_and_submits_nothing() {
    let registry = TestRegistry::start_without_deletes().await;
    registry
        .push_image(
            "team/app",
            &["v1"],
            Some(chrono::Utc::now() - chrono::Duration::days(30)),
            "v1",
        )
        .await;
    registry.push_image("team/app", &["v2"], Some(chrono::Utc::now()), "v2").await;
    let before = registry.manifests("team/app");
    let (_db, scheduler, scrubber) = services(&registry).await;
    let _worker =
        regsweep_integration_tests::Worker::start(&scheduler, "w1", &["--scrubber", &scrubber.url])
            .await;
    crate::policies::sync(&scheduler, "local").await;
    crate::policies::create_policy(
        &scheduler,
        v1::Policy {
            name: "team".into(),
            registry: "local".into(),
            repository_selector: "team/*".into(),
            cadence: "7d".into(),
            keep_n: 1,
            ..Default::default()
        },
    )
    .await;
    crate::policies::run_policy(&scheduler, "team").await;
    let repository = wait_until("the cleanup to fail", Duration::from_secs(30), || {
        let scheduler = &scheduler;
        async move {
            let request = v1::ListRepositoriesRequest::default();
            let mut repositories = scheduler.repositories().await;
            let repos = repositories.list_repositories(request).await.ok()?.into_inner();
            repos.repositories.into_iter().find(|r| !r.last_error.is_empty())
        }
    })
    .await;
    assert!(
        repository.last_error.contains("does not delete manifests"),
        "{}",
        repository.last_error
    );
    let request = v1::ListDeletionsRequest::default();
    let listed = scrubber.client().await.list_deletions(request).await.expect("list").into_inner();
    assert!(listed.deletions.is_empty(), "nothing submitted: {:?}", listed.deletions);
    assert_eq!(registry.manifests("team/app"), before, "never written to");
}

#[tokio::test(flavor = "multi_thread")]
async fn pushes_onto_planned_digests_during_the_undo_window_keep_them() {
    let registry = TestRegistry::start().await;
    let tagged = registry.push_image("app", &["v1"], None, "tagged").await;
    let listed = registry.push_image("app", &["v2"], None, "listed").await;
    let alone = registry.push_image("app", &["v3"], None, "alone").await;
    let db = TestDb::create().await;
    let scheduler = Scheduler::start(&db, &[]).await;
    create_registry(&scheduler, "local", &registry.url()).await;
    let scrubber = Scrubber::start("scrubber", &db, &scheduler, &["--delay", "2s"]).await;
    let client = scrubber.client().await;
    let images = vec![
        image(&tagged, &["v1"], true),
        image(&listed, &["v2"], true),
        image(&alone, &["v3"], true),
    ];
    let job_id = submit(&scheduler, &client, images).await;
    // Within the undo window: a new tag on one planned digest, and a new
    // multi-arch index listing another.
    registry.tag("app", "release", &tagged).await;
    let index = registry.push_index("app", "multi", &[(&listed, "amd64")]).await;
    let ended = wait_until("the deletions to end", Duration::from_secs(30), || {
        let mut client = client.clone();
        async move {
            let request = v1::ListDeletionsRequest { job_id, ..Default::default() };
            let listed = client.list_deletions(request).await.ok()?.into_inner().deletions;
            let done =
                listed.len() == 3 && listed.iter().all(|d| d.status() == DeletionStatus::Deleted);
            done.then_some(listed)
        }
    })
    .await;
    // The planned tags are gone; what the pushes reach stays, and pulls.
    for tag in ["v1", "v2", "v3"] {
        assert_eq!(registry.tag_digest("app", tag).await, None, "{tag} survived: {ended:?}");
    }
    assert_eq!(registry.tag_digest("app", "release").await, Some(tagged.clone()));
    assert_eq!(registry.tag_digest("app", "multi").await, Some(index));
    registry.pull("app", "multi").await.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        registry.has_manifest("app", &tagged).await && registry.has_manifest("app", &listed).await
    );
    // The unplanned image went whole.
    assert!(!registry.has_manifest("app", &alone).await);
    let by_digest: Vec<(String, bool)> = ended
        .iter()
        .map(|d| (d.image.as_ref().expect("image").digest.clone(), d.digest_deleted))
        .collect();
    assert!(by_digest.contains(&(tagged, false)) && by_digest.contains(&(listed, false)));
}
