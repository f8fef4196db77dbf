//! The catalog: repositories from catalog syncs, and the limited-capacity
//! selection of cleanups (README, "How cleanups are selected").

use regsweep_policy::{
    AgeSource, AttachmentPolicy, ProtectionSpec, TagCleanupArgs, TagRuleSpec, VersionGroup,
};
use regsweep_scheduler::store::catalog::Counted;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use regsweep_proto::v1::{self, CleanupStatus, JobStatus};
use regsweep_scheduler::cleanup::advance;
use regsweep_scheduler::store::catalog::{
    DeleteRegistryOutcome, NewPolicy, NewRegistry, PolicyRecord, ReportOutcome, RepositoryFilter,
    RepositoryRecord, Selection, SelectionConfig,
};
use regsweep_scheduler::store::in_use::{InUseMarks, MarkOutcome};
use regsweep_scheduler::store::sightings::{Sighting, SightingBatch};
use regsweep_scheduler::store::{CancelOutcome, Fence, JobRecord, SessionRef};

use super::{Fixture, TTL};

fn config(capacity: u32) -> SelectionConfig {
    SelectionConfig {
        capacity,
        stale_after: Duration::from_secs(3600),
        time_budget: Duration::from_secs(300),
        max_attempts: 3,
        arm_limit: 50_000,
    }
}

fn new_policy(registry_id: i64, enabled: bool) -> NewPolicy {
    NewPolicy {
        name: "p".into(),
        registry_id,
        repository_selector: "**".into(),
        cadence: "1d".into(),
        keep_n: 2,
        older_than_seconds: 0,
        name_regex_delete: ".*".into(),
        name_regex_keep: String::new(),
        attachments: AttachmentPolicy::Keep,
        age_source: AgeSource::FirstSeen,
        rules: Vec::new(),
        priority: 0,
        max_delete_fraction: 0.25,
        dry_run: false,
        enabled,
        next_run_at: Utc::now() + chrono::Duration::days(1),
        keep_schedule: false,
        expected_updated_at: None,
    }
}

/// A registry, policy `p` over all of it, and `names` reported by a
/// catalog sync; a worker running both cleanup kinds.
struct Catalog {
    registry_id: i64,
    policy: PolicyRecord,
    worker: SessionRef,
}

async fn catalog(f: &Fixture, names: &[&str]) -> Catalog {
    let registry = NewRegistry {
        name: "r".into(),
        url: "http://127.0.0.1:9".into(),
        credentials: v1::RegistryCredentials::default(),
        rate_limit: 0.0,
        max_parallel_deletions: 0,
        realm_allow_list: vec!["auth.internal:8443".into()],
        protection: ProtectionSpec::default(),
        expected_updated_at: None,
    };
    let registry = f.catalog().create_registry(registry.clone()).await.unwrap().expect("new");
    let policy =
        f.catalog().create_policy(new_policy(registry.id, true)).await.unwrap().expect("new");
    assert_eq!(policy.max_delete_fraction, 0.25, "the guard's share is stored");
    let worker = f.worker(&["catalog_sync", "tag_cleanup"], TTL).await;
    let c = Catalog { registry_id: registry.id, policy, worker };
    sync(f, &c, names).await;
    c
}

/// Runs one complete catalog sync reporting `names`.
async fn sync(f: &Fixture, c: &Catalog, names: &[&str]) -> ReportOutcome {
    f.job("catalog_sync").await;
    let job = f.claim("catalog_sync", c.worker, 1).await.remove(0);
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let policy = c.policy.id;
    let outcome = f
        .catalog()
        .report_repositories(job.id, job.attempt, c.registry_id, &names, true, &move |_| {
            Some(policy)
        })
        .await
        .expect("report");
    f.update(c.worker, &job, JobStatus::Done, None).await;
    outcome
}

async fn repositories(f: &Fixture) -> Vec<RepositoryRecord> {
    f.catalog().list_repositories(&RepositoryFilter::default(), None, 1000).await.expect("list")
}

async fn repository(f: &Fixture, id: i64) -> RepositoryRecord {
    repositories(f).await.into_iter().find(|r| r.id == id).expect("repository")
}

async fn select(f: &Fixture, capacity: u32) -> Selection {
    let fence = f.lead().await;
    f.catalog().select_cleanups(&config(capacity), advance, fence).await.expect("selection")
}

/// Claims the cleanup jobs started and ends each with `result`.
async fn finish_cleanups(f: &Fixture, c: &Catalog, result: serde_json::Value) -> Vec<JobRecord> {
    let jobs = f.claim("tag_cleanup", c.worker, 100).await;
    for job in &jobs {
        f.update(c.worker, job, JobStatus::Done, Some(result.clone())).await;
    }
    jobs
}

fn count(repos: &[RepositoryRecord], status: CleanupStatus) -> usize {
    repos.iter().filter(|r| r.cleanup_status == status).count()
}

pub async fn selection_starts_at_most_capacity_and_advances_a_completed_run(f: Fixture) {
    let c = catalog(&f, &["a", "b", "c", "d", "e"]).await;
    assert_eq!(select(&f, 2).await.started.len(), 0, "the policy is not due yet");
    f.catalog().run_policy("p").await.unwrap().expect("policy");
    let first = select(&f, 2).await;
    assert_eq!((first.armed, first.started.len(), first.running), (5, 2, 0));
    let repos = repositories(&f).await;
    assert_eq!(
        (count(&repos, CleanupStatus::Ongoing), count(&repos, CleanupStatus::Scheduled)),
        (2, 3)
    );
    let full = select(&f, 2).await;
    assert_eq!((full.started.len(), full.running), (0, 2), "no slot is free");

    let jobs = f.claim("tag_cleanup", c.worker, 10).await;
    assert_eq!(jobs.len(), 2);
    assert_eq!(jobs[0].args["registry"], "r");
    assert_eq!(jobs[0].args["rules"]["keep_n"], 2);
    // No listed rules, no key: workers of before rules read these jobs.
    assert!(jobs[0].args["rules"].get("rules").is_none(), "{}", jobs[0].args);
    assert_eq!(jobs[0].args["time_budget_seconds"], 300);
    // The job's arguments are the contract the worker reads, policy choices
    // included.
    let args: TagCleanupArgs = serde_json::from_value(jobs[0].args.clone()).expect("the contract");
    assert_eq!(args.rules.attachments, AttachmentPolicy::Keep);
    assert_eq!(args.rules.age_source, AgeSource::FirstSeen);
    let policy = f.catalog().get_policy("p", Counted::No).await.unwrap().expect("policy");
    assert_eq!(policy.attachments, AttachmentPolicy::Keep);
    assert_eq!(policy.age_source, AgeSource::FirstSeen);
    let mut started = 2;
    let mut advanced = Vec::new();
    for job in &jobs {
        f.update(c.worker, job, JobStatus::Done, Some(serde_json::json!({"deleted_count": 1})))
            .await;
    }
    for _ in 0..10 {
        let s = select(&f, 2).await;
        started += s.started.len();
        advanced.extend(s.advanced);
        finish_cleanups(&f, &c, serde_json::json!({"deleted_count": 1})).await;
    }
    assert_eq!(started, 5, "each repository is cleaned once per run");
    // The run is complete once every repository started after it began.
    assert_eq!(advanced, vec!["p".to_string()], "the run completes once");
    let repos = repositories(&f).await;
    assert!(repos.iter().all(|r| r.cleanup_status == CleanupStatus::Unscheduled));
    assert!(repos.iter().all(|r| r.last_deleted_count == 1 && r.cleanup_finished_at.is_some()));
    let policy = f.catalog().get_policy("p", Counted::Yes).await.unwrap().expect("policy");
    assert!(
        policy.next_run_at > f.clock.now() + chrono::Duration::hours(23),
        "moved to its next run"
    );
    assert_eq!(policy.repository_count, Some(5));
    let uncounted = f.catalog().get_policy("p", Counted::No).await.unwrap().expect("policy");
    assert_eq!(uncounted.repository_count, None, "counting is asked for");
    assert_eq!(uncounted.revision(), policy.revision(), "the same policy otherwise");
    let idle = select(&f, 2).await;
    assert_eq!((idle.armed, idle.started.len()), (0, 0));
}

pub async fn unfinished_cleanups_come_after_due_ones(f: Fixture) {
    let c = catalog(&f, &["a", "b", "c"]).await;
    f.catalog().run_policy("p").await.unwrap();
    let mut order = Vec::new();
    let mut advanced = Vec::new();
    let mut outcome = serde_json::json!({"outcome": "unfinished"});
    for _ in 0..4 {
        let s = select(&f, 1).await;
        assert_eq!(s.started.len(), 1);
        order.push(repository(&f, s.started[0].0).await.name);
        advanced.extend(s.advanced);
        finish_cleanups(&f, &c, outcome).await;
        outcome = serde_json::json!({"outcome": "done"});
    }
    assert_eq!(order, ["a", "b", "c", "a"], "the unfinished one resumes after the due ones");
    advanced.extend(select(&f, 1).await.advanced);
    assert_eq!(advanced, vec!["p".to_string()], "an unfinished cleanup does not hold the run");
}

pub async fn cleanup_ends_record_errors_and_deleted_counts(f: Fixture) {
    let c = catalog(&f, &["a", "b"]).await;
    f.catalog().run_policy("p").await.unwrap();
    let s = select(&f, 2).await;
    let jobs = f.claim("tag_cleanup", c.worker, 10).await;
    assert_eq!(jobs.len(), 2);
    let (ok, failed) = (&jobs[0], &jobs[1]);
    assert!(f.catalog().record_deletions(ok.id, 3).await.unwrap());
    assert!(!f.catalog().record_deletions(i64::MAX, 3).await.unwrap(), "no repository's cleanup");
    let result = serde_json::json!({"deleted_count": 2, "reclaim": {"bytes": 4096}});
    f.update(c.worker, ok, JobStatus::Done, Some(result)).await;
    f.update(c.worker, failed, JobStatus::Error, None).await;
    // The leader's next tick closes them (woken by the ends), and counts
    // their slots free in the same tick.
    let closed = select(&f, 0).await;
    assert_eq!((closed.ended.len(), closed.running), (2, 0));
    let repo_of =
        |job: &JobRecord| s.started.iter().find(|(_, j)| *j == job.id).expect("started").0;
    let ok_repo = repository(&f, repo_of(ok)).await;
    assert_eq!((ok_repo.last_deleted_count, ok_repo.last_error), (5, None));
    assert_eq!(
        (ok_repo.cleanup_status, ok_repo.last_reclaimable_bytes),
        (CleanupStatus::Unscheduled, 4096)
    );
    assert!(ok_repo.cleanup_finished_at.is_some());
    assert_eq!(ok_repo.last_job_id, Some(ok.id));
    let failed_repo = repository(&f, repo_of(failed)).await;
    assert_eq!(failed_repo.cleanup_status, CleanupStatus::Unscheduled);
    assert_eq!(failed_repo.last_error.as_deref(), Some("it broke"));
    assert_eq!(select(&f, 0).await.ended, [], "closed once");
}

/// A cleanup job ended by any path (here cancelled before any worker took
/// it) frees its repository at the next tick: no path has to remember to.
pub async fn a_cleanup_ended_by_any_path_is_closed_by_the_next_tick(f: Fixture) {
    let _catalog = catalog(&f, &["a", "b"]).await;
    f.catalog().run_policy("p").await.unwrap();
    let s = select(&f, 1).await;
    let (repo, job) = s.started[0];
    let outcome = f.jobs().cancel_job(job, "operator").await.expect("cancel");
    assert!(matches!(outcome, CancelOutcome::Cancelled(_)), "{outcome:?}");
    let next = select(&f, 1).await;
    assert_eq!(next.ended, [(repo, CleanupStatus::Unscheduled)]);
    assert_eq!((next.running, next.started.len()), (0, 1), "the slot is refilled");
    let closed = repository(&f, repo).await;
    assert_eq!(
        (closed.cleanup_status, closed.last_error.as_deref()),
        (CleanupStatus::Unscheduled, Some("cleanup cancel"))
    );
}

pub async fn catalog_reports_are_fenced_and_complete_ones_prune(f: Fixture) {
    let c = catalog(&f, &["a", "b", "c"]).await;
    assert_eq!(repositories(&f).await.len(), 3);
    let mut stored = f.catalog().get_registry("r").await.unwrap().expect("registry");
    assert_eq!(stored.realm_allow_list, ["auth.internal:8443"]);
    let changed = NewRegistry {
        name: "r".into(),
        url: "https://r.internal".into(),
        credentials: stored.credentials.clone(),
        rate_limit: 5.0,
        max_parallel_deletions: 2,
        realm_allow_list: vec!["a.internal".into(), "b.internal".into()],
        protection: ProtectionSpec::default(),
        expected_updated_at: Some(stored.updated_at),
    };
    stored = f.catalog().update_registry(changed).await.unwrap().expect("updated");
    assert_eq!((stored.rate_limit, stored.realm_allow_list.len()), (5.0, 2));
    assert!(
        f.catalog()
            .update_registry(NewRegistry { name: "nope".into(), ..changed_clone(&stored) })
            .await
            .unwrap()
            .is_none()
    );
    f.job("catalog_sync").await;
    let job = f.claim("catalog_sync", c.worker, 1).await.remove(0);
    let policy = c.policy.id;
    let matcher = move |_: &str| Some(policy);
    let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let stale = f
        .catalog()
        .report_repositories(job.id, job.attempt + 1, c.registry_id, &names(&["x"]), true, &matcher)
        .await
        .unwrap();
    assert_eq!(stale, ReportOutcome::Stale);
    let page = f
        .catalog()
        .report_repositories(
            job.id,
            job.attempt,
            c.registry_id,
            &names(&["a", "d"]),
            false,
            &matcher,
        )
        .await
        .unwrap();
    assert_eq!(page, ReportOutcome::Reported { added: 1, removed: 0 });
    let last = f
        .catalog()
        .report_repositories(job.id, job.attempt, c.registry_id, &[], true, &matcher)
        .await
        .unwrap();
    assert_eq!(last, ReportOutcome::Reported { added: 0, removed: 2 });
    let mut left: Vec<String> = repositories(&f).await.into_iter().map(|r| r.name).collect();
    left.sort();
    assert_eq!(left, ["a", "d"]);
    let others = RepositoryFilter { registry_id: Some(i64::MAX), ..Default::default() };
    assert!(f.catalog().list_repositories(&others, None, 10).await.unwrap().is_empty());
}

pub async fn stale_cleanups_become_unfinished(f: Fixture) {
    let _c = catalog(&f, &["a"]).await;
    f.catalog().run_policy("p").await.unwrap();
    let first = select(&f, 1).await;
    assert_eq!(first.started.len(), 1);
    let stale = SelectionConfig { stale_after: Duration::from_secs(600), ..config(1) };
    let s = f.catalog().select_cleanups(&stale, advance, f.lead().await).await.unwrap();
    assert_eq!(s.stale, 0, "started 0 s ago, stale after 600 s");
    f.clock.advance(Duration::from_secs(601));
    // A replica that is not the leader selects nothing, and marks nothing.
    let former = Fence { lease: "leader", holder: uuid::Uuid::from_u128(2) };
    let s = f.catalog().select_cleanups(&stale, advance, former).await.unwrap();
    assert_eq!((s.stale, s.started.len(), s.armed), (0, 0, 0));
    let s = f.catalog().select_cleanups(&stale, advance, f.lead().await).await.unwrap();
    assert_eq!(s.stale, 1);
    // Its job is still active: the repository picks it up again rather
    // than starting a second cleanup.
    assert_eq!(s.started, first.started);
    let jobs = f.jobs().list_jobs(&Default::default(), None, 100).await.unwrap();
    assert_eq!(jobs.iter().filter(|j| j.kind == "tag_cleanup").count(), 1);
}

pub async fn disabling_a_policy_releases_its_waiting_repositories(f: Fixture) {
    let c = catalog(&f, &["a", "b", "c"]).await;
    f.catalog().run_policy("p").await.unwrap();
    assert_eq!(select(&f, 1).await.started.len(), 1);
    let mut disabled = new_policy(c.registry_id, false);
    disabled.max_delete_fraction = 1.0;
    disabled.next_run_at =
        f.catalog().get_policy("p", Counted::No).await.unwrap().expect("policy").next_run_at;
    let updated = f.catalog().update_policy(disabled).await.unwrap().expect("updated");
    assert_eq!(updated.max_delete_fraction, 1.0);
    let repos = repositories(&f).await;
    assert_eq!(count(&repos, CleanupStatus::Ongoing), 1, "a running cleanup finishes");
    assert_eq!(count(&repos, CleanupStatus::Unscheduled), 2);
    assert!(select(&f, 3).await.started.is_empty());
    assert!(f.catalog().delete_policy("p").await.unwrap());
    assert!(!f.catalog().delete_policy("p").await.unwrap());
}

/// A registry in use by a policy is not deleted (the policies are named);
/// once they are gone it is, once.
pub async fn a_registry_is_deleted_only_when_no_policy_uses_it(f: Fixture) {
    let _catalog = catalog(&f, &["a"]).await;
    let pushback = r#"{"rate": 12.0, "status": 429}"#;
    assert!(f.catalog().record_pushback("r", pushback).await.unwrap());
    assert!(!f.catalog().record_pushback("nope", pushback).await.unwrap(), "no such registry");
    let in_use = f.catalog().delete_registry("r").await.unwrap();
    assert_eq!(in_use, DeleteRegistryOutcome::InUse(vec!["p".into()]));
    assert!(f.catalog().get_registry("r").await.unwrap().is_some());
    assert!(f.catalog().delete_policy("p").await.unwrap());
    assert_eq!(f.catalog().delete_registry("r").await.unwrap(), DeleteRegistryOutcome::Deleted);
    assert_eq!(f.catalog().delete_registry("r").await.unwrap(), DeleteRegistryOutcome::NotFound);
    assert!(f.catalog().get_registry("r").await.unwrap().is_none());
}

fn changed_clone(r: &regsweep_scheduler::store::catalog::RegistryRecord) -> NewRegistry {
    NewRegistry {
        name: r.name.clone(),
        url: r.url.clone(),
        credentials: r.credentials.clone(),
        rate_limit: r.rate_limit,
        max_parallel_deletions: r.max_parallel_deletions,
        realm_allow_list: r.realm_allow_list.clone(),
        protection: r.protection.clone(),
        expected_updated_at: Some(r.updated_at),
    }
}

/// Records `seen` (tag, digest) in repository `repository` of `c` at `at`.
async fn sightings(
    f: &Fixture,
    c: &Catalog,
    repository: &str,
    seen: &[(&str, &str)],
    at: DateTime<Utc>,
    forget_unseen_since: Option<DateTime<Utc>>,
) -> Vec<DateTime<Utc>> {
    let seen: Vec<Sighting> =
        seen.iter().map(|(t, d)| Sighting { tag: t.to_string(), digest: d.to_string() }).collect();
    let batch = SightingBatch {
        registry_id: c.registry_id,
        repository,
        sightings: &seen,
        now: at,
        forget_unseen_since,
    };
    f.catalog().record_sightings(batch).await.unwrap()
}

pub async fn first_sightings_last_per_digest_and_are_forgotten_with_their_tag(f: Fixture) {
    let c = catalog(&f, &["a", "b"]).await;
    // Whole microseconds: both stores keep that precision.
    let at = |hours: i64| Utc.timestamp_opt(1_800_000_000 + hours * 3600, 123_456_000).unwrap();
    let (d1, d2, d3) = ("sha256:11", "sha256:22", "sha256:33");
    let first = sightings(&f, &c, "a", &[("v1", d1), ("v2", d2)], at(0), None).await;
    assert_eq!(first, [at(0), at(0)]);
    // Seen again: the first time stands. A tag on another digest is new.
    let again = sightings(&f, &c, "a", &[("v2", d3), ("v1", d1)], at(1), None).await;
    assert_eq!(again, [at(1), at(0)], "in the request's order");
    // The same tag in another repository is another image.
    assert_eq!(sightings(&f, &c, "b", &[("v1", d1)], at(1), None).await, [at(1)]);
    // Moving back is a push too: no memory of the earlier stay.
    assert_eq!(sightings(&f, &c, "a", &[("v2", d2)], at(2), None).await, [at(2)]);

    // A complete read forgets the tags it did not see (v2), not others'.
    let read = sightings(&f, &c, "a", &[("v1", d1)], at(3), Some(at(3))).await;
    assert_eq!(read, [at(0)]);
    assert_eq!(sightings(&f, &c, "a", &[("v2", d2)], at(4), None).await, [at(4)], "forgotten");
    assert_eq!(sightings(&f, &c, "a", &[("v1", d1)], at(4), None).await, [at(0)], "kept");

    // A complete catalog without `b` forgets b's tags, and only b's.
    sync(&f, &c, &["a"]).await;
    assert_eq!(sightings(&f, &c, "b", &[("v1", d1)], at(5), None).await, [at(5)]);
    assert_eq!(sightings(&f, &c, "a", &[("v1", d1)], at(5), None).await, [at(0)]);
}

/// Marks `images` (repository, digest) for `holder` until `until`, at `now`.
async fn mark(
    f: &Fixture,
    c: &Catalog,
    holder: &str,
    images: &[(&str, &str)],
    (now, until): (DateTime<Utc>, DateTime<Utc>),
    replace: bool,
) -> MarkOutcome {
    let images: Vec<(String, String)> =
        images.iter().map(|(r, d)| (r.to_string(), d.to_string())).collect();
    let marks = InUseMarks {
        registry_id: c.registry_id,
        holder,
        images: &images,
        now,
        expires_at: until,
        replace,
    };
    f.catalog().mark_in_use(marks).await.unwrap()
}

pub async fn protection_lists_are_stored_and_in_use_marks_lapse_or_are_replaced(f: Fixture) {
    let c = catalog(&f, &["a"]).await;
    // The protection list round-trips with the registry.
    let stored = f.catalog().get_registry("r").await.unwrap().expect("registry");
    assert!(stored.protection.is_empty());
    let protection = ProtectionSpec {
        tag_patterns: vec![r"v\d+".into()],
        digests: vec!["sha256:aa".into()],
        repository_globs: vec!["prod/**".into()],
    };
    let changed = NewRegistry { protection: protection.clone(), ..changed_clone(&stored) };
    let updated = f.catalog().update_registry(changed).await.unwrap().expect("updated");
    assert_eq!(updated.protection, protection);
    assert_eq!(f.catalog().list_registries().await.unwrap()[0].protection, protection);

    let at = |hours: i64| Utc.timestamp_opt(1_800_000_000 + hours * 3600, 0).unwrap();
    let (store, registry_id) = (f.catalog(), c.registry_id);
    let live = |now| async move {
        let marks = store.live_marks(registry_id, "a", now, 100).await.unwrap();
        marks.into_iter().map(|m| (m.digest, m.holder, m.expires_at)).collect::<Vec<_>>()
    };
    let (d1, d2) = ("sha256:11", "sha256:22");
    let made = mark(&f, &c, "eu", &[("a", d1), ("a", d2), ("b", d1)], (at(0), at(2)), false).await;
    assert_eq!(made, MarkOutcome { marked: 3, released: 0 });
    mark(&f, &c, "us", &[("a", d1)], (at(0), at(3)), false).await;
    // One row per digest, the longest-lasting holder's; only repository a's.
    let expected =
        vec![(d1.to_string(), "us".to_string(), at(3)), (d2.to_string(), "eu".to_string(), at(2))];
    assert_eq!(live(at(1)).await, expected);
    // At its expiry a mark protects nothing: at 2h only us's d1 is live.
    assert_eq!(live(at(2)).await, [(d1.to_string(), "us".to_string(), at(3))]);
    assert!(live(at(3)).await.is_empty());

    // Replace: eu now runs only d2; its other marks go, us's stay.
    let replaced = mark(&f, &c, "eu", &[("a", d2)], (at(1), at(5)), true).await;
    assert_eq!(replaced, MarkOutcome { marked: 1, released: 2 });
    assert_eq!(
        live(at(1)).await,
        [(d1.to_string(), "us".to_string(), at(3)), (d2.to_string(), "eu".to_string(), at(5))]
    );
    // A refresh moves the expiry to the new one, earlier too.
    mark(&f, &c, "eu", &[("a", d2)], (at(1), at(4)), false).await;
    assert_eq!(live(at(1)).await[1], (d2.to_string(), "eu".to_string(), at(4)));
    // An empty replace releases everything the holder marked.
    assert_eq!(mark(&f, &c, "eu", &[], (at(1), at(9)), true).await.released, 1);
    assert_eq!(live(at(1)).await, [(d1.to_string(), "us".to_string(), at(3))]);
}

pub async fn listed_rules_are_stored_and_travel_to_the_job(f: Fixture) {
    let c = catalog(&f, &["a"]).await;
    assert!(c.policy.rules.is_empty());
    let rules = vec![
        TagRuleSpec {
            name: "releases".into(),
            keep_newest: 2,
            per: VersionGroup::Minor,
            ..TagRuleSpec::default()
        },
        TagRuleSpec {
            tag_glob: "sha-*".into(),
            keep_within_seconds: 3600,
            ..TagRuleSpec::default()
        },
    ];
    let policy = NewPolicy {
        keep_n: 0,
        name_regex_delete: String::new(),
        rules: rules.clone(),
        ..new_policy(c.registry_id, true)
    };
    let stored = f.catalog().update_policy(policy.clone()).await.unwrap().expect("updated");
    assert_eq!(stored.rules, rules);
    assert_eq!(stored.rules().rules, rules);
    let reversed = NewPolicy { rules: rules.iter().rev().cloned().collect(), ..policy };
    let updated = f.catalog().update_policy(reversed).await.unwrap().expect("updated");
    assert_eq!(updated.rules[0], rules[1]);
    assert_ne!(updated.revision(), stored.revision(), "rule order is part of the revision");

    f.catalog().run_policy("p").await.unwrap().expect("policy");
    assert_eq!(select(&f, 1).await.started.len(), 1);
    let jobs = f.claim("tag_cleanup", c.worker, 1).await;
    let args: TagCleanupArgs = serde_json::from_value(jobs[0].args.clone()).expect("the contract");
    assert_eq!(args.rules.rules, updated.rules);
    assert_eq!(args.rules.revision("**"), updated.revision());
}

/// An update is made only from the version it was made from: one made
/// from a version since overwritten changes nothing (what keeps two
/// operators' edits, or an edit and `apply`, from overwriting each other).
pub async fn updates_are_made_only_from_the_version_read(f: Fixture) {
    let c = catalog(&f, &["a"]).await;
    let read = c.policy.updated_at;
    let edit = |keep_n| NewPolicy {
        keep_n,
        expected_updated_at: Some(read),
        ..new_policy(c.registry_id, true)
    };
    let written = f.catalog().update_policy(edit(3)).await.unwrap().expect("from the version read");
    assert_ne!(written.updated_at, read, "every write is a new version");
    assert!(f.catalog().update_policy(edit(9)).await.unwrap().is_none(), "from an old version");
    let now = f.catalog().get_policy("p", Counted::No).await.unwrap().expect("policy");
    assert_eq!((now.keep_n, now.updated_at), (3, written.updated_at));
    let unconditional = NewPolicy { keep_n: 4, ..new_policy(c.registry_id, true) };
    assert!(f.catalog().update_policy(unconditional).await.unwrap().is_some());

    let registry = f.catalog().get_registry("r").await.unwrap().expect("registry");
    let edit = |rate_limit| NewRegistry { rate_limit, ..changed_clone(&registry) };
    let written =
        f.catalog().update_registry(edit(3.0)).await.unwrap().expect("from the version read");
    assert!(f.catalog().update_registry(edit(9.0)).await.unwrap().is_none(), "from an old version");
    let now = f.catalog().get_registry("r").await.unwrap().expect("registry");
    assert_eq!((now.rate_limit, now.updated_at), (3.0, written.updated_at));
}

/// An edit that keeps the cadence keeps the schedule as it stands when
/// the edit is written, not as it was read: selection moves it without a
/// new version, and a stale `next_run_at` written back would run the
/// policy again at once.
pub async fn an_edit_keeping_the_cadence_keeps_the_schedule_as_written(f: Fixture) {
    let c = catalog(&f, &["a"]).await;
    f.catalog().run_policy("p").await.unwrap().expect("policy");
    let read = f.catalog().get_policy("p", Counted::No).await.unwrap().expect("policy");
    let mut advanced = Vec::new();
    for _ in 0..5 {
        advanced.extend(select(&f, 1).await.advanced);
        finish_cleanups(&f, &c, serde_json::json!({"deleted_count": 1})).await;
    }
    assert_eq!(advanced, ["p"], "the run completed");
    let moved = f.catalog().get_policy("p", Counted::No).await.unwrap().expect("policy");
    assert!(moved.next_run_at > read.next_run_at, "moved to its next run");
    assert_eq!(moved.updated_at, read.updated_at, "selection makes no new version");
    let edit = NewPolicy {
        keep_n: 5,
        next_run_at: read.next_run_at,
        keep_schedule: true,
        expected_updated_at: Some(read.updated_at),
        ..new_policy(c.registry_id, true)
    };
    let written = f.catalog().update_policy(edit).await.unwrap().expect("from the version read");
    assert_eq!((written.keep_n, written.next_run_at), (5, moved.next_run_at));
}

pub async fn policy_priority_is_stored_updated_and_not_part_of_the_revision(f: Fixture) {
    let c = catalog(&f, &["a"]).await;
    assert_eq!(c.policy.priority, 0);
    let raised = NewPolicy { priority: -7, ..new_policy(c.registry_id, true) };
    let stored = f.catalog().update_policy(raised.clone()).await.unwrap().expect("updated");
    assert_eq!(stored.priority, -7);
    let listed = f.catalog().list_policies(Some(c.registry_id), Counted::Yes).await.unwrap();
    assert_eq!(listed[0].priority, -7);
    // Precedence decides which repositories a policy governs, not what it
    // deletes in them: plans recorded under the old revision stay valid.
    assert_eq!(stored.revision(), c.policy.revision());
    let second = NewPolicy { name: "q".into(), priority: 1_000_000, ..raised };
    let created = f.catalog().create_policy(second).await.unwrap().expect("created");
    assert_eq!(created.priority, 1_000_000);
}

pub async fn stats_count_by_the_store_clock(f: Fixture) {
    let _c = catalog(&f, &["a", "b", "c"]).await;
    f.catalog().run_policy("p").await.unwrap().expect("policy");
    assert_eq!(select(&f, 1).await.started.len(), 1);
    f.job("waiting").await;
    f.clock.advance(Duration::from_secs(90));

    let cleanups = f.catalog().cleanup_stats().await.expect("cleanup stats");
    assert_eq!((cleanups.running, cleanups.remaining, cleanups.overdue), (1, 2, 2));
    let overdue = cleanups.max_overdue_seconds;
    assert!((90.0..91.0).contains(&overdue), "overdue for {overdue} s by the store's clock");

    let queue = f.jobs().queue_stats().await.expect("queue stats");
    let backlog: Vec<_> = queue.backlog.iter().filter(|(kind, ..)| kind == "waiting").collect();
    assert_eq!(backlog.len(), 1, "{queue:?}");
    let (_, due, waited) = backlog[0];
    assert_eq!(*due, 1);
    assert!((90.0..91.0).contains(waited), "waited {waited} s by the store's clock");
    assert!(queue.jobs.contains(&("catalog_sync".into(), "done".into(), 1)), "{queue:?}");
}
