//! Registries, policies, catalog sync, preview and dry-run cleanups
//! against the real registry.

use std::time::Duration;

use chrono::Utc;
use regsweep_integration_tests::{Scheduler, TestDb, TestRegistry, Worker};
use regsweep_proto::duration_from_std;
use regsweep_proto::v1::{self, JobStatus, TagAction};
use tonic::Code;

use crate::validation::violations;
use crate::wait_status;

pub async fn create_registry(scheduler: &Scheduler, name: &str, url: &str) -> v1::Registry {
    let registry = v1::Registry { name: name.into(), url: url.into(), ..Default::default() };
    scheduler
        .registries()
        .await
        .create_registry(v1::CreateRegistryRequest {
            registry: Some(registry),
            ..Default::default()
        })
        .await
        .expect("create registry")
        .into_inner()
        .registry
        .expect("registry")
}

/// Creates `policy` live unless it says `dry_run`, and with the
/// blast-radius guard off unless it sets `max_delete_fraction`: these tests
/// are about what a plan deletes; the defaults have tests of their own.
pub async fn create_policy(scheduler: &Scheduler, mut policy: v1::Policy) -> v1::Policy {
    if policy.max_delete_fraction == 0.0 {
        policy.max_delete_fraction = 1.0;
    }
    let live = !policy.dry_run;
    scheduler
        .policies()
        .await
        .create_policy(v1::CreatePolicyRequest { policy: Some(policy), live, ..Default::default() })
        .await
        .expect("create policy")
        .into_inner()
        .policy
        .expect("policy")
}

/// A live policy named `name` on registry `local` over `repo` alone, with
/// the rules of `spec` (the generator's policies, run for real).
pub fn policy_for(name: &str, repo: &str, spec: &regsweep_policy::RuleSpec) -> v1::Policy {
    let older_than = u64::try_from(spec.older_than_seconds).unwrap_or(0);
    v1::Policy {
        name: name.into(),
        registry: "local".into(),
        repository_selector: repo.into(),
        cadence: "7d".into(),
        keep_n: i32::try_from(spec.keep_n).expect("keep_n"),
        older_than: Some(regsweep_proto::duration_from_std(Duration::from_secs(older_than))),
        name_regex_delete: spec.name_regex_delete.clone(),
        name_regex_keep: spec.name_regex_keep.clone(),
        attachments: match spec.attachments {
            regsweep_policy::AttachmentPolicy::DeleteWithSubject => {
                v1::AttachmentPolicy::DeleteWithSubject
            }
            regsweep_policy::AttachmentPolicy::Keep => v1::AttachmentPolicy::Keep,
        }
        .into(),
        age_source: v1::AgeSource::from(spec.age_source).into(),
        rules: spec.rules.iter().map(Into::into).collect(),
        ..Default::default()
    }
}

/// Previews `policy` on `repository`.
pub async fn preview(
    scheduler: &Scheduler,
    policy: &str,
    repository: &str,
) -> v1::PreviewPolicyResponse {
    let request = v1::PreviewPolicyRequest {
        policy: policy.into(),
        repository: repository.into(),
        ..Default::default()
    };
    scheduler.policies().await.preview_policy(request).await.expect("preview").into_inner()
}

/// Makes `policy` due now.
pub async fn run_policy(scheduler: &Scheduler, policy: &str) {
    let request = v1::RunPolicyRequest { name: policy.into() };
    scheduler.policies().await.run_policy(request).await.expect("run policy");
}

/// Runs a catalog sync of `registry` that starts now, to its end. A sync
/// already under way (the one adding the registry starts) may have read
/// the catalog before the test's last push: it is waited out, then one of
/// our own runs.
pub async fn sync(scheduler: &Scheduler, registry: &str) -> v1::Job {
    loop {
        let response = scheduler
            .repositories()
            .await
            .sync_repositories(v1::SyncRepositoriesRequest { registry: registry.into() })
            .await
            .expect("sync")
            .into_inner();
        let job = response.job.expect("job");
        let jobs = scheduler.jobs().await;
        let done = wait_status(&jobs, job.id, JobStatus::Done, Duration::from_secs(20)).await;
        if response.created {
            return done;
        }
    }
}

pub async fn repositories(scheduler: &Scheduler) -> Vec<v1::Repository> {
    scheduler
        .repositories()
        .await
        .list_repositories(v1::ListRepositoriesRequest::default())
        .await
        .expect("list repositories")
        .into_inner()
        .repositories
}

/// A creation time `days` before now.
pub fn days_ago(days: i64) -> chrono::DateTime<Utc> {
    Utc::now() - chrono::Duration::days(days)
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_registries_and_policies_are_rejected_and_nothing_is_written() {
    let db = TestDb::create().await;
    let scheduler = Scheduler::start(&db, &[]).await;
    let mut registries = scheduler.registries().await;
    let bad = v1::Registry {
        name: "Bad Name".into(),
        url: "ftp://user:secret@host".into(),
        rate_limit: -1.0,
        ..Default::default()
    };
    let status = registries
        .create_registry(v1::CreateRegistryRequest { registry: Some(bad), ..Default::default() })
        .await
        .expect_err("invalid registry");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        violations(&status),
        ["registry.name", "registry.url", "registry.url", "registry.rate_limit"]
    );
    assert!(!status.message().contains("secret"), "{}", status.message());
    create_registry(&scheduler, "local", "http://127.0.0.1:9").await;

    let mut policies = scheduler.policies().await;
    let bad = v1::Policy {
        name: "p".into(),
        registry: "nope".into(),
        repository_selector: "team/[".into(),
        cadence: "2d".into(),
        keep_n: -1,
        older_than: Some(regsweep_proto::pbjson_types::Duration { seconds: -5, nanos: 0 }),
        name_regex_delete: "(".into(),
        name_regex_keep: "a{99999}".into(),
        max_delete_fraction: 1.5,
        ..Default::default()
    };
    let status = policies
        .create_policy(v1::CreatePolicyRequest {
            policy: Some(bad),
            live: true,
            ..Default::default()
        })
        .await
        .expect_err("invalid policy");
    assert_eq!(status.code(), Code::InvalidArgument);
    let mut fields = violations(&status);
    fields.sort();
    assert_eq!(
        fields,
        [
            "policy.cadence",
            "policy.keep_n",
            "policy.max_delete_fraction",
            "policy.name_regex_delete",
            "policy.name_regex_keep",
            "policy.older_than",
            "policy.registry",
            "policy.repository_selector",
        ]
    );
    let listed = policies.list_policies(v1::ListPoliciesRequest::default()).await.expect("list");
    assert!(listed.into_inner().policies.is_empty(), "a rejected policy was written");
    let status = registries
        .delete_registry(v1::DeleteRegistryRequest { name: "missing".into() })
        .await
        .expect_err("unknown registry");
    assert_eq!(status.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread")]
async fn preview_decides_every_tag_with_its_rule() {
    let registry = TestRegistry::start().await;
    let repo = "team/app";
    registry.push_image(repo, &["latest"], Some(days_ago(100)), "latest").await;
    registry.push_image(repo, &["v1", "stable"], Some(days_ago(10)), "v1").await;
    registry.push_image(repo, &["v2"], Some(days_ago(9)), "v2").await;
    registry.push_image(repo, &["v3"], Some(days_ago(8)), "v3").await;
    registry.push_image(repo, &["v4"], Some(days_ago(7)), "v4").await;
    let shared = registry.push_image(repo, &["v5", "prod"], Some(days_ago(6)), "v5").await;
    registry.push_image(repo, &["v6"], Some(Utc::now() - chrono::Duration::hours(1)), "v6").await;
    registry.push_image(repo, &["v7"], Some(Utc::now() - chrono::Duration::hours(2)), "v7").await;
    registry.push_image(repo, &["keep-1"], Some(days_ago(50)), "keep-1").await;
    registry.push_image(repo, &["dev-x"], Some(days_ago(50)), "dev-x").await;

    let db = TestDb::create().await;
    let scheduler = Scheduler::start(&db, &[]).await;
    let _worker = Worker::start(&scheduler, "w1", &[]).await;
    create_registry(&scheduler, "local", &registry.url()).await;
    create_policy(
        &scheduler,
        v1::Policy {
            name: "team".into(),
            registry: "local".into(),
            repository_selector: "team/*".into(),
            cadence: "7d".into(),
            keep_n: 1,
            older_than: Some(duration_from_std(Duration::from_secs(2 * 86_400))),
            name_regex_delete: "v.*|stable|latest".into(),
            name_regex_keep: "keep-.*".into(),
            ..Default::default()
        },
    )
    .await;
    let preview = scheduler
        .policies()
        .await
        .preview_policy(v1::PreviewPolicyRequest {
            policy: "team".into(),
            repository: repo.into(),
            ..Default::default()
        })
        .await
        .expect("preview")
        .into_inner();
    let decided: Vec<(String, TagAction, String)> =
        preview.decisions.iter().map(|d| (d.tag.clone(), d.action(), d.rule.clone())).collect();
    let expect =
        |tag: &str, action: TagAction, rule: &str| (tag.to_string(), action, rule.to_string());
    use TagAction::{Delete, Keep};
    assert_eq!(
        decided,
        [
            expect("dev-x", Keep, "not_matching_delete_regex"),
            expect("keep-1", Keep, "keep_regex"),
            expect("latest", Keep, "latest"),
            expect("prod", Keep, "not_matching_delete_regex"),
            expect("stable", Delete, "delete"),
            expect("v1", Delete, "delete"),
            expect("v2", Delete, "delete"),
            expect("v3", Delete, "delete"),
            expect("v4", Delete, "delete"),
            expect("v5", Delete, "delete"),
            expect("v6", Keep, "keep_n"),
            expect("v7", Keep, "newer_than"),
        ]
    );
    assert_eq!(preview.delete_count, 6);
    // v5 shares its digest with the kept `prod`: untagged, never deleted
    // by digest; v1+stable, v2, v3, v4 go whole.
    assert_eq!(preview.digest_delete_count, 4);
    let v5 = preview.decisions.iter().find(|d| d.tag == "v5").expect("v5");
    assert_eq!(v5.digest, shared);
    // Nothing was deleted.
    assert!(registry.tag_digest(repo, "v1").await.is_some());

    // A repository with no tags (here: none at all) has nothing to decide.
    let empty = self::preview(&scheduler, "team", "team/none").await;
    assert!(empty.decisions.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn catalog_sync_assigns_policies_and_a_dry_run_records_its_plan() {
    let registry = TestRegistry::start().await;
    for repo in ["team/a", "team/b", "other/c"] {
        registry.push_image(repo, &["old"], Some(days_ago(30)), &format!("{repo}-old")).await;
        registry.push_image(repo, &["new"], Some(days_ago(1)), &format!("{repo}-new")).await;
    }
    let db = TestDb::create().await;
    let scheduler = Scheduler::start(&db, &["--tick", "200ms"]).await;
    let _worker = Worker::start(&scheduler, "w1", &[]).await;
    create_registry(&scheduler, "local", &registry.url()).await;
    let job = sync(&scheduler, "local").await;
    let result = regsweep_proto::struct_to_json(job.result.as_ref().expect("result"));
    assert_eq!(result["repositories"], 3);
    let policy = create_policy(
        &scheduler,
        v1::Policy {
            name: "team".into(),
            registry: "local".into(),
            repository_selector: "team/*".into(),
            cadence: "14d".into(),
            older_than: Some(duration_from_std(Duration::from_secs(7 * 86_400))),
            dry_run: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(policy.repository_count, 2);
    let listed = repositories(&scheduler).await;
    let policy_of = |name: &str| listed.iter().find(|r| r.name == name).map(|r| r.policy.clone());
    assert_eq!(policy_of("team/a").as_deref(), Some("team"));
    assert_eq!(policy_of("other/c").as_deref(), Some(""));

    run_policy(&scheduler, "team").await;
    let cleaned = regsweep_integration_tests::wait_until(
        "both team repositories cleaned",
        Duration::from_secs(20),
        || {
            let scheduler = &scheduler;
            async move {
                let listed = repositories(scheduler).await;
                let team: Vec<_> =
                    listed.into_iter().filter(|r| r.name.starts_with("team/")).collect();
                team.iter()
                    .all(|r| {
                        r.cleanup_finished_at.is_some()
                            && r.cleanup_status() == v1::CleanupStatus::Unscheduled
                    })
                    .then_some(team)
            }
        },
    )
    .await;
    for repository in &cleaned {
        assert_eq!(repository.last_deleted_count, 1, "{repository:?}");
        assert!(repository.last_error.is_empty());
        let job = crate::get(&mut scheduler.jobs().await, repository.last_job_id).await;
        let result = regsweep_proto::struct_to_json(job.result.as_ref().expect("result"));
        assert_eq!(result["planned_tags"], 1);
        assert_eq!(result["dry_run"], true);
        let old = result["tags"]
            .as_array()
            .expect("tags")
            .iter()
            .find(|t| t["tag"] == "old")
            .expect("old");
        assert_eq!(old["action"], "delete");
    }
    // Dry run: every tag is still there; other/c was never cleaned.
    for repo in ["team/a", "team/b", "other/c"] {
        assert!(registry.tag_digest(repo, "old").await.is_some(), "{repo}:old is gone");
    }
    let other =
        repositories(&scheduler).await.into_iter().find(|r| r.name == "other/c").expect("other/c");
    assert_eq!(other.last_job_id, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cleanup_that_spends_its_time_budget_ends_unfinished_and_resumes() {
    let registry = TestRegistry::start().await;
    registry.push_image("slow/app", &["v1"], Some(days_ago(30)), "v1").await;
    let db = TestDb::create().await;
    let scheduler =
        Scheduler::start(&db, &["--cleanup-time-budget", "1s", "--tick", "200ms"]).await;
    create_registry(&scheduler, "local", &registry.url()).await;
    {
        let _sync_worker = Worker::start(&scheduler, "sync", &[]).await;
        sync(&scheduler, "local").await;
    }
    // From now on the registry answers its first two requests with 429 and
    // `Retry-After: 1`: a cleanup with a 1 s budget cannot finish until
    // they are spent.
    let proxy = regsweep_integration_tests::authproxy::AuthProxy::start(
        &registry.url(),
        regsweep_integration_tests::authproxy::Mode::Throttle { count: 2, status: 429 },
    )
    .await;
    let update = v1::Registry { name: "local".into(), url: proxy.url(), ..Default::default() };
    scheduler
        .registries()
        .await
        .update_registry(v1::UpdateRegistryRequest {
            registry: Some(update),
            update_mask: vec!["url".into()],
            ..Default::default()
        })
        .await
        .expect("point the registry at the proxy");
    create_policy(
        &scheduler,
        v1::Policy {
            name: "all".into(),
            registry: "local".into(),
            repository_selector: "**".into(),
            cadence: "1d".into(),
            dry_run: true,
            ..Default::default()
        },
    )
    .await;
    run_policy(&scheduler, "all").await;
    let _worker = Worker::start(&scheduler, "cleaner", &[]).await;

    let jobs = scheduler.jobs().await;
    let outcomes = regsweep_integration_tests::wait_until(
        "a complete cleanup",
        Duration::from_secs(30),
        || {
            let mut jobs = jobs.clone();
            async move {
                let request =
                    v1::ListJobsRequest { kind: "tag_cleanup".into(), ..Default::default() };
                let listed = jobs.list_jobs(request).await.ok()?.into_inner().jobs;
                let mut outcomes: Vec<(i64, String)> = listed
                    .iter()
                    .filter(|j| j.status() == JobStatus::Done)
                    .map(|j| {
                        let result =
                            regsweep_proto::struct_to_json(j.result.as_ref().expect("result"));
                        (j.id, result["outcome"].as_str().unwrap_or_default().to_string())
                    })
                    .collect();
                outcomes.sort();
                outcomes.last().is_some_and(|(_, o)| o == "complete").then_some(outcomes)
            }
        },
    )
    .await;
    let outcomes: Vec<&str> = outcomes.iter().map(|(_, o)| o.as_str()).collect();
    assert!(outcomes.len() >= 2 && outcomes[0] == "unfinished", "{outcomes:?}");
    assert!(outcomes[..outcomes.len() - 1].iter().all(|o| *o == "unfinished"), "{outcomes:?}");
    // The ended cleanup is closed on the repository by the next selection
    // tick, not with the job's end.
    let repository = regsweep_integration_tests::wait_until(
        "the cleanup closed on its repository",
        Duration::from_secs(10),
        || async {
            let repository = repositories(&scheduler).await.pop().expect("slow/app");
            (repository.cleanup_status() == v1::CleanupStatus::Unscheduled).then_some(repository)
        },
    )
    .await;
    assert_eq!(repository.last_deleted_count, 1);
}

/// An edit made from what was read never overwrites a change made since:
/// from a stale etag it is `ABORTED` and changes nothing; from the current
/// one it is made, and the resource gets a new etag.
#[tokio::test(flavor = "multi_thread")]
async fn updates_from_a_stale_etag_are_aborted_and_change_nothing() {
    let db = TestDb::create().await;
    let scheduler = Scheduler::start(&db, &[]).await;
    let registry = create_registry(&scheduler, "local", "http://127.0.0.1:9").await;
    let policy = v1::Policy {
        name: "p".into(),
        registry: "local".into(),
        repository_selector: "**".into(),
        cadence: "1d".into(),
        keep_n: 2,
        dry_run: true,
        ..Default::default()
    };
    let policy = create_policy(&scheduler, policy).await;
    let mut policies = scheduler.policies().await;
    let update = |keep_n, etag: &str| v1::UpdatePolicyRequest {
        policy: Some(v1::Policy { name: "p".into(), keep_n, ..Default::default() }),
        update_mask: vec!["keep_n".into()],
        etag: etag.into(),
        ..Default::default()
    };
    let written = policies.update_policy(update(3, &policy.etag)).await.expect("current etag");
    let written = written.into_inner().policy.expect("policy");
    assert_ne!(written.etag, policy.etag, "a write is a new version");
    let status = policies.update_policy(update(9, &policy.etag)).await.expect_err("stale etag");
    assert_eq!(status.code(), Code::Aborted, "{status:?}");
    let get = v1::GetPolicyRequest { name: "p".into() };
    let now = policies.get_policy(get).await.expect("get").into_inner().policy.expect("policy");
    assert_eq!((now.keep_n, now.etag), (3, written.etag));

    let mut registries = scheduler.registries().await;
    let update = |rate_limit, etag: &str| v1::UpdateRegistryRequest {
        registry: Some(v1::Registry { name: "local".into(), rate_limit, ..Default::default() }),
        update_mask: vec!["rate_limit".into()],
        etag: etag.into(),
        ..Default::default()
    };
    registries.update_registry(update(3.0, &registry.etag)).await.expect("current etag");
    let status = registries.update_registry(update(9.0, &registry.etag)).await.expect_err("stale");
    assert_eq!(status.code(), Code::Aborted, "{status:?}");
    let get = v1::GetRegistryRequest { name: "local".into() };
    let now = registries.get_registry(get).await.expect("get").into_inner().registry;
    assert_eq!(now.expect("registry").rate_limit, 3.0);
}
