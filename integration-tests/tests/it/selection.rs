//! The limited-capacity selection (README, "How cleanups are selected"): capacity, order,
//! policy runs, and its cost on large catalogs.

use std::time::Duration;

use chrono::{DateTime, Utc};
use regsweep_integration_tests::selection::SelectionProbe;
use regsweep_integration_tests::{Scheduler, TestDb, TestRegistry, Worker, wait_until};
use regsweep_proto::v1;

use crate::policies::{create_policy, create_registry, sync};

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[tokio::test(flavor = "multi_thread")]
async fn tick_cost_does_not_grow_with_repositories() {
    let mut medians = Vec::new();
    for repositories in [1_000_u64, 100_000] {
        let db = TestDb::create().await;
        let probe = SelectionProbe::populate(&db, repositories, 4).await;
        let arming = probe.arm().await;
        let samples = probe.time_picks(20).await;
        // Every tick fills the capacity, never more.
        assert!(samples.iter().all(|(_, picked)| *picked == 4), "{samples:?}");
        // Each repository got one cleanup; the arming ticks picked too.
        let (repositories_started, jobs): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM repositories WHERE cleanup_started_at IS NOT NULL),
                    (SELECT count(*) FROM jobs WHERE kind = 'tag_cleanup')",
        )
        .fetch_one(&probe.pool)
        .await
        .expect("counts");
        assert_eq!(repositories_started, jobs);
        assert!(jobs >= 84, "{jobs} cleanups started");
        let tick = median(samples.into_iter().map(|(d, _)| d).collect());
        println!(
            "selection at {repositories} repositories: median tick {tick:?} (capacity 4), marking all {arming:?}"
        );
        medians.push(tick);
    }
    println!("median tick 1k -> 100k: {:?} -> {:?}", medians[0], medians[1]);
}

/// The time intervals `[started, finished]` of every repository's cleanup.
async fn intervals(pool: &sqlx::PgPool) -> Vec<(String, DateTime<Utc>, DateTime<Utc>)> {
    sqlx::query_as(
        "SELECT name, cleanup_started_at, cleanup_finished_at FROM repositories
         WHERE cleanup_finished_at IS NOT NULL ORDER BY cleanup_started_at",
    )
    .fetch_all(pool)
    .await
    .expect("intervals")
}

fn max_overlap(intervals: &[(String, DateTime<Utc>, DateTime<Utc>)]) -> usize {
    intervals
        .iter()
        .map(|(_, start, _)| intervals.iter().filter(|(_, s, f)| s <= start && start < f).count())
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn capacity_bounds_cleanups_and_a_run_advances_once_all_started() {
    let registry = TestRegistry::start().await;
    for i in 0..10 {
        registry.push_image(&format!("app/r{i}"), &["v1", "v2"], None, &format!("r{i}")).await;
    }
    let db = TestDb::create().await;
    let scheduler = Scheduler::start(&db, &["--cleanup-capacity", "2", "--tick", "100ms"]).await;
    let pool = db.scheduler_pool().await;
    create_registry(&scheduler, "local", &registry.url()).await;
    let worker =
        Worker::start(&scheduler, "w1", &["--capacity", "catalog_sync=1,tag_cleanup=8"]).await;
    sync(&scheduler, "local").await;
    let policy = create_policy(
        &scheduler,
        v1::Policy {
            name: "all".into(),
            registry: "local".into(),
            repository_selector: "app/*".into(),
            cadence: "1d".into(),
            keep_n: 1,
            dry_run: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(policy.repository_count, 10);
    drop(worker);

    // No worker: the first tick starts exactly 2 cleanups and the run is
    // not complete, so next_run_at stays.
    let mut policies = scheduler.policies().await;
    let due = policies
        .run_policy(v1::RunPolicyRequest { name: "all".into() })
        .await
        .expect("run policy")
        .into_inner()
        .policy
        .expect("policy");
    wait_until("2 cleanups ongoing", Duration::from_secs(10), || {
        let pool = pool.clone();
        async move {
            let n: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM repositories WHERE cleanup_status = 'ongoing'",
            )
            .fetch_one(&pool)
            .await
            .expect("count");
            (n == 2).then_some(())
        }
    })
    .await;
    let (scheduled, jobs): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM repositories WHERE cleanup_status = 'scheduled'),
                (SELECT count(*) FROM jobs WHERE kind = 'tag_cleanup')",
    )
    .fetch_one(&pool)
    .await
    .expect("counts");
    assert_eq!((scheduled, jobs), (8, 2));
    let still = policies
        .get_policy(v1::GetPolicyRequest { name: "all".into() })
        .await
        .expect("get")
        .into_inner()
        .policy
        .expect("policy");
    assert_eq!(still.next_run_at, due.next_run_at, "advanced before every repository started");

    // A worker with room for 8: the scheduler still runs at most 2.
    let _worker = Worker::start(&scheduler, "w2", &["--capacity", "tag_cleanup=8"]).await;
    let done = wait_until("every repository cleaned", Duration::from_secs(30), || {
        let pool = pool.clone();
        async move {
            let done = intervals(&pool).await;
            (done.len() == 10).then_some(done)
        }
    })
    .await;
    assert!(max_overlap(&done) <= 2, "more than 2 cleanups at once: {done:?}");
    let per_repository: Vec<i64> = sqlx::query_scalar(
        "SELECT count(*) FROM jobs WHERE kind = 'tag_cleanup' GROUP BY unique_key",
    )
    .fetch_all(&pool)
    .await
    .expect("jobs per repository");
    assert_eq!(per_repository, vec![1; 10], "each repository cleaned once per run");

    let due_at = regsweep_proto::timestamp_to_chrono(due.next_run_at.as_ref().expect("next run"))
        .expect("time");
    let advanced = wait_until("the run to complete", Duration::from_secs(10), || {
        let mut policies = policies.clone();
        async move {
            let p = policies
                .get_policy(v1::GetPolicyRequest { name: "all".into() })
                .await
                .ok()?
                .into_inner()
                .policy?;
            let next = regsweep_proto::timestamp_to_chrono(p.next_run_at.as_ref()?)?;
            (next > due_at).then_some(next)
        }
    })
    .await;
    assert!(done.iter().all(|(_, started, _)| *started >= due_at));
    assert!(advanced > Utc::now() + chrono::Duration::hours(23), "1d cadence: {advanced}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unfinished_repositories_come_after_due_ones() {
    let db = TestDb::create().await;
    let probe = SelectionProbe::populate(&db, 12, 1).await;
    // Three repositories left unfinished by an earlier run.
    sqlx::query(
        "UPDATE repositories SET cleanup_status = 'unfinished',
             cleanup_started_at = now() - interval '2 days'
         WHERE name IN ('repo/1', 'repo/2', 'repo/3')",
    )
    .execute(&probe.pool)
    .await
    .expect("mark unfinished");
    probe.arm().await;
    let mut order = Vec::new();
    for _ in 0..12 {
        let s = probe.tick().await;
        assert!(s.started.len() <= 1, "capacity 1: {s:?}");
        order.extend(s.started.iter().map(|(repository, _)| *repository));
        probe.release_ongoing().await;
    }
    let names: Vec<String> = {
        let mut names = Vec::new();
        for id in &order {
            let name: String = sqlx::query_scalar("SELECT name FROM repositories WHERE id = $1")
                .bind(id)
                .fetch_one(&probe.pool)
                .await
                .expect("name");
            names.push(name);
        }
        names
    };
    // The arming tick picked one due repository before these 12 ticks.
    assert_eq!(names.len(), 11, "{names:?}");
    assert_eq!(&names[8..], ["repo/1", "repo/2", "repo/3"], "unfinished went before due ones");
    // The run completed only once the unfinished ones were cleaned too.
    let s = probe.tick().await;
    assert!(s.started.is_empty());
    let next: DateTime<Utc> = sqlx::query_scalar("SELECT next_run_at FROM policies")
        .fetch_one(&probe.pool)
        .await
        .expect("next run");
    assert!(next > Utc::now(), "the run did not advance");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cleanup_out_of_budget_ends_unfinished_and_failures_are_recorded() {
    let db = TestDb::create().await;
    let probe = SelectionProbe::populate(&db, 4, 2).await;
    probe.arm().await;
    // The arming tick released its picks; pick the rest now.
    probe.tick().await;
    let jobs: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT id, cleanup_job_id FROM repositories WHERE cleanup_status = 'ongoing' ORDER BY id",
    )
    .fetch_all(&probe.pool)
    .await
    .expect("ongoing");
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    let (unfinished, failed) = (jobs[0], jobs[1]);
    sqlx::query(
        "UPDATE jobs SET status = 'done', result = '{\"outcome\": \"unfinished\"}' WHERE id = $1",
    )
    .bind(unfinished.1)
    .execute(&probe.pool)
    .await
    .expect("end unfinished");
    sqlx::query("UPDATE jobs SET status = 'error', last_error = 'registry said 500' WHERE id = $1")
        .bind(failed.1)
        .execute(&probe.pool)
        .await
        .expect("end failed");
    // Ended by hand, outside any store path: the next tick closes them.
    let closed = probe.tick().await;
    assert_eq!(
        (closed.ended.clone(), closed.running),
        (
            vec![
                (unfinished.0, v1::CleanupStatus::Unfinished),
                (failed.0, v1::CleanupStatus::Unscheduled)
            ],
            0
        ),
        "{closed:?}"
    );
    let rows: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT cleanup_status, last_error FROM repositories WHERE id = ANY($1) ORDER BY id",
    )
    .bind(vec![unfinished.0, failed.0])
    .fetch_all(&probe.pool)
    .await
    .expect("repositories");
    // The unfinished one resumes (this tick may have started it again).
    assert!(["unfinished", "ongoing"].contains(&rows[0].0.as_str()), "{rows:?}");
    assert_eq!(rows[1], ("unscheduled".to_string(), Some("registry said 500".to_string())));
    // A job that is not the repository's current cleanup changes nothing.
    sqlx::query("INSERT INTO jobs (kind, status) VALUES ('tag_cleanup', 'waiting')")
        .execute(&probe.pool)
        .await
        .expect("stray job");
    sqlx::query(
        "UPDATE jobs SET status = 'done' WHERE kind = 'tag_cleanup' AND unique_key IS NULL",
    )
    .execute(&probe.pool)
    .await
    .expect("end stray job");
    assert_eq!(probe.tick().await.ended, [], "the stray job is no repository's cleanup");
}
