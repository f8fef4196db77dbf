//! Deletions only from plans the scheduler vouches for, under policies as
//! they stand when the DELETE is sent, and never from a policy nobody made
//! live, nor from one that would empty a repository, without a person's
//! approval. Every assertion is on the registry's real state.

use std::collections::BTreeMap;
use std::time::Duration;

use regsweep_integration_tests::authproxy::{AuthProxy, Mode};
use regsweep_integration_tests::raw::HeldCleanup;
use regsweep_integration_tests::{Scheduler, Scrubber, TestDb, TestRegistry, Worker, wait_until};
use regsweep_proto::v1::{self, DeletionStatus};
use tonic::Code;

use crate::cli::{json, regsweep};
use crate::policies::{create_policy, create_registry, run_policy, sync};

/// Pushes `tags` to `repo`, one image each; returns tag -> digest.
async fn seed(registry: &TestRegistry, repo: &str, tags: &[&str]) -> BTreeMap<String, String> {
    let mut digests = BTreeMap::new();
    for tag in tags {
        let digest = registry.push_image(repo, &[tag], None, &format!("{repo}:{tag}")).await;
        digests.insert(tag.to_string(), digest);
    }
    digests
}

/// Every tag of `seeded` still names its image, and nothing else is gone.
async fn untouched(registry: &TestRegistry, repo: &str, seeded: &BTreeMap<String, String>) {
    for (tag, digest) in seeded {
        assert_eq!(registry.tag_digest(repo, tag).await.as_ref(), Some(digest), "{repo}:{tag}");
    }
    assert_eq!(registry.manifest_count(repo), seeded.len(), "{repo} lost a manifest");
}

/// A scheduler (200 ms ticks), a scrubber with `delay`, a worker handing
/// plans to it, and registry `local` at `url`, synced.
struct Cleaning {
    scheduler: Scheduler,
    scrubber: Scrubber,
    _worker: Worker,
    _db: TestDb,
}

impl Cleaning {
    async fn start(url: &str, delay: &str) -> Self {
        let db = TestDb::create().await;
        let scheduler = Scheduler::start(&db, &["--tick", "200ms"]).await;
        let scrubber = Scrubber::start("scrubber", &db, &scheduler, &["--delay", delay]).await;
        let worker = Worker::start(&scheduler, "w", &["--scrubber", &scrubber.url]).await;
        create_registry(&scheduler, "local", url).await;
        sync(&scheduler, "local").await;
        Self { scheduler, scrubber, _worker: worker, _db: db }
    }
}

/// Waits for the first cleanup of `repo` to finish; returns its job id.
async fn cleaned(scheduler: &Scheduler, repo: &str) -> i64 {
    wait_until(&format!("the cleanup of {repo}"), Duration::from_secs(30), || async move {
        let request = v1::ListRepositoriesRequest::default();
        let repos =
            scheduler.repositories().await.list_repositories(request).await.ok()?.into_inner();
        let found = repos.repositories.into_iter().find(|r| r.name == repo)?;
        found.cleanup_finished_at.is_some().then_some(found.last_job_id)
    })
    .await
}

/// The deletions of `job_id` once `n` of them are in a status `done` accepts.
async fn deletions_when(
    scrubber: &Scrubber,
    job_id: i64,
    n: usize,
    done: fn(DeletionStatus) -> bool,
) -> Vec<v1::Deletion> {
    let client = scrubber.client().await;
    wait_until(&format!("{n} deletions of job {job_id}"), Duration::from_secs(30), || {
        let mut client = client.clone();
        async move {
            let request = v1::ListDeletionsRequest { job_id, ..Default::default() };
            let listed = client.list_deletions(request).await.ok()?.into_inner().deletions;
            (listed.len() == n && listed.iter().all(|d| done(d.status()))).then_some(listed)
        }
    })
    .await
}

fn image(digest: &str, tag: &str) -> v1::ImageDeletion {
    v1::ImageDeletion {
        digest: digest.into(),
        tags: vec![tag.into()],
        delete_digest: true,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plan_the_scheduler_did_not_hand_out_deletes_nothing() {
    let registry = TestRegistry::start().await;
    let seeded = seed(&registry, "app", &["v1", "v2"]).await;
    let db = TestDb::create().await;
    let scheduler = Scheduler::start(&db, &[]).await;
    create_registry(&scheduler, "local", &registry.url()).await;
    let scrubber = Scrubber::start("scrubber", &db, &scheduler, &["--delay", "0s"]).await;
    let mut client = scrubber.client().await;
    let plan = vec![image(&seeded["v1"], "v1")];
    let refused = |status: tonic::Status, reason: &str| {
        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
        assert!(status.message().contains(reason), "{reason:?} not in {:?}", status.message());
    };

    // No such job.
    let forged = HeldCleanup::start(&scheduler, "local", "other").await;
    let mut request = forged.plan(plan.clone());
    request.job_id = 999_999;
    request.repository = "app".into();
    refused(client.submit_deletions(request).await.expect_err("forged"), "no job 999999");
    // A real running cleanup, but of another repository.
    let mut request = forged.plan(plan.clone());
    request.repository = "app".into();
    refused(client.submit_deletions(request).await.expect_err("other repo"), "cleans local/other");
    let mut request = forged.plan(plan.clone());
    request.repository = "other".into();
    request.attempt += 1;
    refused(client.submit_deletions(request).await.expect_err("stale"), "not its current one");
    forged.finish(&scheduler).await;
    // A cleanup of this repository that has ended.
    let ended = HeldCleanup::start(&scheduler, "local", "app").await;
    let late = ended.plan(plan.clone());
    ended.finish(&scheduler).await;
    refused(client.submit_deletions(late).await.expect_err("ended"), "is not running");

    let all = client.list_deletions(v1::ListDeletionsRequest::default()).await.expect("list");
    assert!(all.into_inner().deletions.is_empty(), "a refused plan was stored");
    untouched(&registry, "app", &seeded).await;
    // The same plan from the running attempt is accepted and carried out:
    // what was refused was the plan's origin, not its content.
    let real = HeldCleanup::start(&scheduler, "local", "app").await;
    client.submit_deletions(real.plan(plan)).await.expect("a vouched plan");
    deletions_when(&scrubber, real.job_id, 1, |s| s == DeletionStatus::Deleted).await;
    assert_eq!(registry.tag_digest("app", "v1").await, None);
    assert_eq!(registry.tag_digest("app", "v2").await.as_ref(), Some(&seeded["v2"]));
}

/// The change each policy gets while its plan waits, and the reason its
/// deletions must end `cancelled` with.
const CHANGES: [(&str, &str); 6] = [
    ("dry", "is now a dry run"),
    ("changed", "changed (revision"),
    ("disabled", "is disabled"),
    ("deleted", "was deleted"),
    // A new policy of higher priority takes the repository over.
    ("outranked", r#"policy "over" now governs outranked/app, not "outranked""#),
    // Its own priority falls below another policy that selects it.
    ("lowered", r#"policy "under" now governs lowered/app, not "lowered""#),
];

/// A policy `name` over `selector` at `priority`, keeping everything.
async fn create_keeping(scheduler: &Scheduler, name: &str, selector: &str, priority: i32) {
    let keeping = v1::Policy {
        name: name.into(),
        registry: "local".into(),
        repository_selector: selector.into(),
        cadence: "7d".into(),
        keep_n: 100,
        priority,
        ..Default::default()
    };
    create_policy(scheduler, keeping).await;
}

async fn change(scheduler: &Scheduler, policy: &str) {
    let mut policies = scheduler.policies().await;
    let update = |p: v1::Policy, field: &str| v1::UpdatePolicyRequest {
        policy: Some(v1::Policy { name: policy.into(), ..p }),
        update_mask: vec![field.into()],
        ..Default::default()
    };
    match policy {
        "dry" => {
            let p = v1::Policy { dry_run: true, ..Default::default() };
            policies.update_policy(update(p, "dry_run")).await.expect("dry run");
        }
        "changed" => {
            let p = v1::Policy { keep_n: 2, ..Default::default() };
            policies.update_policy(update(p, "keep_n")).await.expect("keep 2");
        }
        "disabled" => {
            let request = v1::DisablePolicyRequest { name: policy.into() };
            policies.disable_policy(request).await.expect("disable");
        }
        "outranked" => create_keeping(scheduler, "over", "outranked/*", 1).await,
        "lowered" => {
            create_keeping(scheduler, "under", "lowered/**", -5).await;
            let p = v1::Policy { priority: -10, ..Default::default() };
            policies.update_policy(update(p, "priority")).await.expect("lower");
        }
        _ => {
            let request = v1::DeletePolicyRequest { name: policy.into() };
            policies.delete_policy(request).await.expect("delete");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_changed_while_its_plan_waits_deletes_nothing() {
    let registry = TestRegistry::start().await;
    let mut seeded = BTreeMap::new();
    for (policy, _) in CHANGES {
        let repo = format!("{policy}/app");
        seeded.insert(repo.clone(), seed(&registry, &repo, &["v1", "v2", "v3"]).await);
    }
    // Long enough for every cleanup to plan and every change to land
    // before the first deletion is due.
    let Cleaning { scheduler, scrubber, .. } = &Cleaning::start(&registry.url(), "10s").await;
    for (policy, _) in CHANGES {
        let rules = v1::Policy {
            name: policy.into(),
            registry: "local".into(),
            repository_selector: format!("{policy}/*"),
            cadence: "7d".into(),
            keep_n: 1,
            ..Default::default()
        };
        create_policy(scheduler, rules).await;
        run_policy(scheduler, policy).await;
    }
    let mut jobs = BTreeMap::new();
    for (policy, _) in CHANGES {
        let job_id = cleaned(scheduler, &format!("{policy}/app")).await;
        let pending = |s| s == DeletionStatus::PendingDelete;
        let planned = deletions_when(scrubber, job_id, 2, pending).await;
        assert!(planned.iter().all(|d| d.policy == policy && !d.policy_revision.is_empty()));
        jobs.insert(policy, job_id);
    }
    for (policy, _) in CHANGES {
        change(scheduler, policy).await;
    }
    for (policy, reason) in CHANGES {
        let ended = |s| !matches!(s, DeletionStatus::PendingDelete | DeletionStatus::Deleting);
        let deletions = deletions_when(scrubber, jobs[policy], 2, ended).await;
        for d in &deletions {
            assert_eq!(d.status(), DeletionStatus::Cancelled, "{d:?}");
            assert!(d.error.contains(reason), "{reason:?} not in {:?}", d.error);
            assert_eq!(d.attempts, 1, "cancelled before any registry call: {d:?}");
        }
        let repo = format!("{policy}/app");
        untouched(&registry, &repo, &seeded[&repo]).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_policy_deletes_nothing_until_made_live() {
    let registry = TestRegistry::start().await;
    let seeded = seed(&registry, "team/app", &["v1", "v2", "v3"]).await;
    let Cleaning { scheduler, scrubber, .. } = &Cleaning::start(&registry.url(), "0s").await;
    // Only a name, a registry, a selector and a cadence: no keep rule.
    let url = scheduler.url.as_str();
    let create = ["--output", "json", "policies", "create", "--name", "team", "--registry"];
    let args: Vec<&str> = create
        .iter()
        .copied()
        .chain(["local", "--selector", "team/*", "--cadence", "1d"])
        .collect();
    let created = json(&regsweep(url, &args).await);
    assert_eq!(created[0]["dry_run"], true, "{created}");
    assert_eq!(created[0]["revision"].as_str().map(str::len), Some(16), "{created}");
    run_policy(scheduler, "team").await;
    let job_id = cleaned(scheduler, "team/app").await;
    let _ = job_id;
    let mut client = scrubber.client().await;
    let submitted = client.list_deletions(v1::ListDeletionsRequest::default()).await;
    assert!(submitted.expect("list").into_inner().deletions.is_empty(), "it deleted");
    untouched(&registry, "team/app", &seeded).await;
    // Made live on purpose, it deletes (and its revision stays: only what
    // decides deletions changes it).
    let update = ["--output", "json", "policies", "update", "--name", "team", "--live"];
    let live = json(&regsweep(url, &update).await);
    assert_eq!(live[0]["dry_run"], serde_json::Value::Null, "{live}");
    assert_eq!(live[0]["revision"], created[0]["revision"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plan_that_deletes_most_of_a_repository_waits_for_approval() {
    let registry = TestRegistry::start().await;
    let seeded = seed(&registry, "team/app", &["latest", "v1", "v2", "v3", "v4"]).await;
    let Cleaning { scheduler, scrubber, .. } = &Cleaning::start(&registry.url(), "0s").await;
    let policy = v1::Policy {
        name: "team".into(),
        registry: "local".into(),
        repository_selector: "team/*".into(),
        cadence: "7d".into(),
        name_regex_delete: "v.*".into(),
        // The guard as a new policy has it.
        max_delete_fraction: 0.5,
        ..Default::default()
    };
    create_policy(scheduler, policy).await;
    run_policy(scheduler, "team").await;
    let job_id = cleaned(scheduler, "team/app").await;
    let held = |s| s == DeletionStatus::AwaitingApproval;
    let deletions = deletions_when(scrubber, job_id, 4, held).await;
    for d in &deletions {
        assert_eq!(d.hold_reason, "deletes 4 of 5 tags, more than 50%", "{d:?}");
        let reasons = &d.image.as_ref().expect("image").reasons;
        assert_eq!(reasons.len(), 1);
        assert_eq!(reasons[0].rule, "delete", "{reasons:?}");
    }
    let id_of = |tag: &str| {
        let d = deletions.iter().find(|d| d.image.as_ref().expect("image").tags == [tag]);
        d.expect("a deletion per tag").id
    };
    // One approved, one restored; the rest hold while the approved one is
    // carried out (the scrubber claimed what it could meanwhile).
    let url = scheduler.url.as_str();
    let cli = |args: &[&str]| {
        let mut all = vec!["--scrubber", scrubber.url.as_str(), "--output", "json", "scrub"];
        all.extend_from_slice(args);
        all.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let run = |args: Vec<String>| async move {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        json(&regsweep(url, &refs).await)
    };
    let approved = run(cli(&["approve", &id_of("v1").to_string()])).await;
    assert_eq!(approved[0]["approved"], true, "{approved}");
    let restored = run(cli(&["restore", &id_of("v2").to_string()])).await;
    assert_eq!(restored[0]["restored"], true, "{restored}");
    let client = scrubber.client().await;
    wait_until("the approved deletion", Duration::from_secs(20), || {
        let mut client = client.clone();
        let id = id_of("v1");
        async move {
            let request = v1::ListDeletionsRequest { job_id, ..Default::default() };
            let listed = client.list_deletions(request).await.ok()?.into_inner().deletions;
            let d = listed.into_iter().find(|d| d.id == id)?;
            (d.status() == DeletionStatus::Deleted).then_some(())
        }
    })
    .await;
    assert_eq!(registry.tag_digest("team/app", "v1").await, None);
    for tag in ["latest", "v2", "v3", "v4"] {
        assert_eq!(registry.tag_digest("team/app", tag).await.as_ref(), Some(&seeded[tag]));
    }
    // The rest of the job's plan, approved at once.
    let rest = run(cli(&["approve", "--job", &job_id.to_string()])).await;
    let approved = rest.as_array().expect("outcomes");
    assert_eq!(approved.len(), 2, "only the held ones: {rest}");
    assert!(approved.iter().all(|o| o["approved"] == true), "{rest}");
    let done = |s| matches!(s, DeletionStatus::Deleted | DeletionStatus::Restored);
    deletions_when(scrubber, job_id, 4, done).await;
    for tag in ["v1", "v3", "v4"] {
        assert_eq!(registry.tag_digest("team/app", tag).await, None, "{tag}");
    }
    for tag in ["latest", "v2"] {
        assert_eq!(registry.tag_digest("team/app", tag).await.as_ref(), Some(&seeded[tag]));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_request_that_changes_the_registry_is_on_record() {
    let registry = TestRegistry::start().await;
    let repo = "team/app";
    registry.push_image(repo, &["latest"], None, "latest").await;
    // Untagged by the placeholder (prod keeps the image), deleted by
    // digest, and an index deleted with its platforms.
    registry.push_image(repo, &["v1", "prod"], None, "shared").await;
    let v2 = registry.push_image(repo, &["v2"], None, "v2").await;
    let amd = registry.push_image(repo, &[], None, "amd64").await;
    let arm = registry.push_image(repo, &[], None, "arm64").await;
    registry.push_index(repo, "v3", &[(&amd, "amd64"), (&arm, "arm64")]).await;
    let proxy = AuthProxy::start(&registry.url(), Mode::SlowDeletes { millis: 0 }).await;
    let Cleaning { scheduler, scrubber, .. } = &Cleaning::start(&proxy.url(), "0s").await;
    let policy = v1::Policy {
        name: "team".into(),
        registry: "local".into(),
        repository_selector: "team/*".into(),
        cadence: "7d".into(),
        name_regex_delete: "v.*".into(),
        ..Default::default()
    };
    create_policy(scheduler, policy).await;
    run_policy(scheduler, "team").await;
    let job_id = cleaned(scheduler, repo).await;
    let done = |s| s == DeletionStatus::Deleted;
    let deletions = deletions_when(scrubber, job_id, 3, done).await;
    assert_eq!(registry.tag_digest(repo, "v2").await, None);

    // What reached the registry is exactly what is on record, answered.
    // Probes of a digest or a tag that cannot exist (is this registry
    // deleting at all? can it delete a tag?) change nothing; the workers',
    // in the catalog sync and before a cleanup submits, belong to no
    // deletion and are left out on both sides.
    let probe = format!("sha256:{}", "0".repeat(64));
    let is_probe = |path: &str| path.ends_with(&probe) || path.contains("/regsweep-probe-");
    let changes = |list: Vec<(String, String)>| {
        let mut list: Vec<_> = list.into_iter().filter(|(_, path)| !is_probe(path)).collect();
        list.sort();
        list
    };
    let reached = changes(proxy.destructive_requests());
    let deletion_ids: Vec<i64> = deletions.iter().map(|d| d.id).collect();
    let client = scrubber.client().await;
    // Answers are written in batches, just after the deletion ends.
    let record = wait_until("every answer on record", Duration::from_secs(10), || {
        let mut client = client.clone();
        let request = v1::ListRegistryRequestsRequest { deletion_ids: deletion_ids.clone() };
        async move {
            let record = client.list_registry_requests(request).await.ok()?.into_inner();
            record.requests.iter().all(|r| r.answered).then_some(record)
        }
    })
    .await;
    for r in &record.requests {
        let expected = if is_probe(&r.path) { 404..405 } else { 200..300 };
        assert!(r.answered && expected.contains(&r.status), "{r:?}");
    }
    let recorded =
        changes(record.requests.iter().map(|r| (r.method.clone(), r.path.clone())).collect());
    assert_eq!(recorded, reached);
    let methods: Vec<&str> = recorded.iter().map(|(m, _)| m.as_str()).collect();
    assert!(methods.contains(&"PUT") && methods.contains(&"DELETE"), "{recorded:?}");

    // Who deleted team/app:v2, when and why.
    let url = scheduler.url.as_str();
    let args = ["--scrubber", scrubber.url.as_str(), "scrub", "history", "team/app:v2"];
    let output = regsweep(url, &args).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8_lossy(&output.stdout);
    for expected in [
        format!("DELETE /v2/team/app/manifests/{v2} -> 202"),
        "policy team, revision ".to_string(),
        "rule delete".to_string(),
        format!("job {job_id} attempt 1"),
    ] {
        assert!(text.contains(&expected), "{expected:?} not in:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn registries_check_shows_what_each_registry_allows_and_changes_nothing() {
    let open = TestRegistry::start().await;
    let locked = TestRegistry::start_without_deletes().await;
    let seeded_open = seed(&open, "app", &["v1"]).await;
    let seeded_locked = seed(&locked, "app", &["v1"]).await;
    let db = TestDb::create().await;
    let scheduler = Scheduler::start(&db, &[]).await;
    let _worker = Worker::start(&scheduler, "w", &[]).await;
    create_registry(&scheduler, "open", &open.url()).await;
    create_registry(&scheduler, "locked", &locked.url()).await;
    let url = scheduler.url.as_str();
    let check = |name: &'static str| async move {
        json(&regsweep(url, &["--output", "json", "registries", "check", name]).await)
    };
    let caps = check("open").await;
    let caps = &caps[0]["capabilities"];
    assert_eq!(caps["manifest_deletes"], "SUPPORT_YES", "{caps}");
    // Distribution 2.8 cannot delete a tag, nor serve referrers.
    assert_eq!(caps["tag_deletes"], "SUPPORT_NO", "{caps}");
    assert_eq!(caps["referrers"], "SUPPORT_NO", "{caps}");
    assert_eq!(caps["repository"], "app", "{caps}");
    assert!(caps["checked_at"].is_string(), "{caps}");
    let caps = check("locked").await;
    let caps = &caps[0]["capabilities"];
    assert_eq!(caps["manifest_deletes"], "SUPPORT_NO", "{caps}");
    assert_eq!(caps["tag_deletes"], "SUPPORT_NO", "{caps}");
    // Shown by `registries get` too, and the probes changed nothing.
    let shown = regsweep(url, &["registries", "get", "locked"]).await;
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(text.contains("DELETES") && text.contains(" no "), "{text}");
    untouched(&open, "app", &seeded_open).await;
    untouched(&locked, "app", &seeded_locked).await;
}

/// A registry is probed when it is created: its capabilities and its
/// repositories are known without anyone asking for a sync.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_registry_is_probed_and_listed_at_once() {
    let locked = TestRegistry::start_without_deletes().await;
    let seeded = seed(&locked, "app", &["v1"]).await;
    let db = TestDb::create().await;
    let scheduler = Scheduler::start(&db, &[]).await;
    let _worker = Worker::start(&scheduler, "w", &[]).await;
    let definition =
        v1::Registry { name: "locked".into(), url: locked.url(), ..Default::default() };
    let request = v1::CreateRegistryRequest { registry: Some(definition), ..Default::default() };
    let created = scheduler.registries().await.create_registry(request).await.expect("create");
    let sync_job_id = created.into_inner().sync_job_id;
    assert!(sync_job_id > 0, "a first catalog sync is enqueued");
    let jobs = scheduler.jobs().await;
    crate::wait_status(&jobs, sync_job_id, v1::JobStatus::Done, Duration::from_secs(30)).await;
    let request = v1::GetRegistryRequest { name: "locked".into() };
    let registry = scheduler.registries().await.get_registry(request).await.expect("get");
    let caps = registry.into_inner().registry.expect("registry").capabilities.expect("probed");
    assert_eq!(caps.manifest_deletes(), v1::Support::No, "{caps:?}");
    assert!(caps.checked_at.is_some());
    let request = v1::ListRepositoriesRequest { registry: "locked".into(), ..Default::default() };
    let listed = scheduler.repositories().await.list_repositories(request).await.expect("list");
    let names: Vec<String> = listed.into_inner().repositories.into_iter().map(|r| r.name).collect();
    assert_eq!(names, ["app"]);
    // A policy on it says its cleanups cannot delete, wherever it is shown.
    let policy = v1::Policy {
        name: "doomed".into(),
        registry: "locked".into(),
        repository_selector: "**".into(),
        cadence: "7d".into(),
        ..Default::default()
    };
    let created = create_policy(&scheduler, policy).await;
    assert_eq!(created.warnings.len(), 1, "{created:?}");
    assert!(created.warnings[0].contains("refuses manifest deletes"), "{created:?}");
    let shown = regsweep(&scheduler.url, &["policies", "list"]).await;
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(text.contains("warning: policy doomed: registry locked refuses"), "{text}");
    untouched(&locked, "app", &seeded).await;
}
