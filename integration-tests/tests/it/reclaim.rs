//! The space a plan frees, on real images: multi-arch indexes whose
//! untagged children hold the layers, base layers shared with what is
//! kept, and a plain image. The preview's figure, the repository's after
//! the run, and the registry's state afterwards all agree.

use std::time::Duration;

use chrono::Utc;
use regsweep_integration_tests::{Scheduler, Scrubber, TestDb, TestRegistry, Worker, wait_until};
use regsweep_policy::RuleSpec;
use regsweep_proto::v1::{self, DeletionStatus};

use crate::policies::{create_policy, create_registry, policy_for, preview, run_policy, sync};

/// `len` bytes of `fill`: a distinct blob per fill byte and length.
fn blob(fill: u8, len: usize) -> Vec<u8> {
    vec![fill; len]
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plan_frees_the_blobs_only_deleted_manifests_hold_each_once() {
    let r = TestRegistry::start().await;
    let db = TestDb::create().await;
    let scheduler = Scheduler::start(&db, &["--tick", "200ms"]).await;
    let scrubber = Scrubber::start("scrubber", &db, &scheduler, &["--delay", "0s"]).await;
    let _worker = Worker::start(&scheduler, "w1", &["--scrubber", &scrubber.url]).await;
    create_registry(&scheduler, "local", &r.url()).await;
    let repo = "team/big";
    let days = |n: i64| Utc::now() - chrono::Duration::days(n);
    let (amd_base, arm_base) = (blob(1, 1000), blob(2, 1500));
    // v1 (old) and v2 (new) are indexes over untagged children that share
    // each architecture's base layer; v0 is a plain image of its own.
    let (l1, l1a, l2, l2a, l0) =
        (blob(3, 200), blob(4, 210), blob(5, 300), blob(6, 310), blob(7, 400));
    let (v1_amd, v1_amd_bytes) =
        r.push_layered_image(repo, &[], days(20), "v1-amd", &[&amd_base, &l1]).await;
    let (v1_arm, v1_arm_bytes) =
        r.push_layered_image(repo, &[], days(20), "v1-arm", &[&arm_base, &l1a]).await;
    let (v2_amd, _) = r.push_layered_image(repo, &[], days(1), "v2-amd", &[&amd_base, &l2]).await;
    let (v2_arm, _) = r.push_layered_image(repo, &[], days(1), "v2-arm", &[&arm_base, &l2a]).await;
    let (v0, v0_bytes) = r.push_layered_image(repo, &["v0"], days(30), "v0", &[&l0]).await;
    let v1 = r.push_index(repo, "v1", &[(&v1_amd, "amd64"), (&v1_arm, "arm64")]).await;
    let v2 = r.push_index(repo, "v2", &[(&v2_amd, "amd64"), (&v2_arm, "arm64")]).await;
    // Freed: v1's children and v0 whole, except the two base layers v2
    // still uses; each blob once.
    let shared = (amd_base.len() + arm_base.len()) as u64;
    let expected = v1_amd_bytes + v1_arm_bytes + v0_bytes - shared;
    // Three configs and three layers (200 + 210 + 400 bytes).
    let configs = (v1_amd_bytes - 1200) + (v1_arm_bytes - 1710) + (v0_bytes - 400);
    assert_eq!(expected, configs + 810);

    sync(&scheduler, "local").await;
    let spec = RuleSpec { keep_n: 1, name_regex_delete: ".*".into(), ..RuleSpec::default() };
    create_policy(&scheduler, policy_for("big", repo, &spec)).await;
    let said = preview(&scheduler, "big", repo).await;
    assert_eq!(said.delete_count, 2, "{:?}", said.decisions);
    assert_eq!(said.unread_manifests, 0);
    assert_eq!(said.reclaimable_bytes, expected);
    assert_eq!(said.reclaimable_blobs, 6);

    run_policy(&scheduler, "big").await;
    let listed = wait_until("the deletions to end", Duration::from_secs(60), || async {
        let request = v1::ListRepositoriesRequest { policy: "big".into(), ..Default::default() };
        let repos = scheduler.repositories().await.list_repositories(request).await.ok()?;
        let repository = repos.into_inner().repositories.first()?.clone();
        let request =
            v1::ListDeletionsRequest { job_id: repository.last_job_id, ..Default::default() };
        let listed = scrubber.client().await.list_deletions(request).await.ok()?.into_inner();
        let done = listed.deletions.iter().all(|d| d.status() == DeletionStatus::Deleted);
        (repository.last_job_id > 0 && listed.deletions.len() == 2 && done).then_some(repository)
    })
    .await;
    assert_eq!(listed.last_reclaimable_bytes, expected);
    let left = r.manifests(repo);
    let kept = [v2.clone(), v2_amd, v2_arm];
    assert_eq!(left, kept.iter().cloned().collect(), "v1, its children and v0 went");
    assert!(!left.contains(&v1) && !left.contains(&v0));
    r.pull(repo, "v2").await.expect("v2 still pulls");
}
