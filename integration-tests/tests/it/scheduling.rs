//! Which job runs when, where, and how many at once.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use regsweep_integration_tests::{Scheduler, TestDb, Worker, wait_until};
use regsweep_proto::v1::{self, JobStatus};
use regsweep_proto::{json_to_struct, timestamp_from_chrono, timestamp_to_chrono};
use serde_json::json;

use crate::{Jobs, create, create_with, get, wait_status};

fn time(ts: Option<&regsweep_proto::pbjson_types::Timestamp>) -> DateTime<Utc> {
    ts.and_then(timestamp_to_chrono).expect("timestamp set")
}

#[tokio::test]
async fn a_scheduled_job_is_not_claimed_before_it_is_due() {
    let db = TestDb::create().await;
    let scheduler = Scheduler::start(&db, &[]).await;
    let mut jobs = scheduler.jobs().await;
    let _worker = Worker::start(&scheduler, "w1", &[]).await;

    let due = Utc::now() + chrono::Duration::milliseconds(1500);
    let later = create_with(
        &mut jobs,
        v1::CreateJobRequest {
            kind: "sleep".into(),
            args: Some(json_to_struct(json!({"seconds": 0}))),
            scheduled_at: Some(timestamp_from_chrono(due)),
            ..Default::default()
        },
    )
    .await;
    // A job created after it but due now runs first, proving the worker
    // was free while the scheduled one waited.
    let now = create(&mut jobs, "sleep", json!({"seconds": 0})).await;
    let now = wait_status(&jobs, now.id, JobStatus::Done, Duration::from_secs(10)).await;
    assert_eq!(get(&mut jobs, later.id).await.status(), JobStatus::Waiting);

    let later = wait_status(&jobs, later.id, JobStatus::Done, Duration::from_secs(10)).await;
    assert!(time(later.claimed_at.as_ref()) >= due, "claimed before due");
    assert!(time(now.claimed_at.as_ref()) < due);
}

#[tokio::test]
async fn higher_priority_is_claimed_first() {
    let db = TestDb::create().await;
    let scheduler = Scheduler::start(&db, &[]).await;
    let mut jobs = scheduler.jobs().await;
    let mut created = Vec::new();
    for priority in [-5, 0, 10, 3] {
        let request = v1::CreateJobRequest {
            kind: "sleep".into(),
            args: Some(json_to_struct(json!({"seconds": 0.05}))),
            priority,
            ..Default::default()
        };
        created.push((priority, create_with(&mut jobs, request).await.id));
    }
    // One slot: the jobs run one at a time, in claim order.
    let _worker = Worker::start(&scheduler, "w1", &["--capacity", "sleep=1"]).await;
    let mut claimed = Vec::new();
    for (priority, id) in created {
        let job = wait_status(&jobs, id, JobStatus::Done, Duration::from_secs(10)).await;
        claimed.push((time(job.claimed_at.as_ref()), priority));
    }
    claimed.sort();
    let order: Vec<i32> = claimed.into_iter().map(|(_, p)| p).collect();
    assert_eq!(order, [10, 3, 0, -5]);
}

/// Start and end of each attempt as its worker saw them (first and last
/// log line of a `sleep`), grouped by worker.
async fn worker_intervals(
    jobs: &mut Jobs,
    ids: &[i64],
) -> HashMap<String, Vec<(DateTime<Utc>, DateTime<Utc>)>> {
    let mut by_worker: HashMap<String, Vec<_>> = HashMap::new();
    for id in ids {
        let job = get(jobs, *id).await;
        let logs = jobs
            .get_job_logs(v1::GetJobLogsRequest { id: *id, ..Default::default() })
            .await
            .expect("logs")
            .into_inner()
            .lines;
        assert_eq!(logs.len(), 2, "a sleep logs its start and end");
        let start = time(logs[0].time.as_ref());
        let end = time(logs[1].time.as_ref());
        by_worker.entry(job.worker_id).or_default().push((start, end));
    }
    by_worker
}

fn max_overlap(intervals: &[(DateTime<Utc>, DateTime<Utc>)]) -> usize {
    let mut edges: Vec<(DateTime<Utc>, i32)> =
        intervals.iter().flat_map(|(s, e)| [(*s, 1), (*e, -1)]).collect();
    // Ends sort before starts at the same instant.
    edges.sort();
    let (mut now, mut max) = (0i32, 0i32);
    for (_, delta) in edges {
        now += delta;
        max = max.max(now);
    }
    usize::try_from(max).unwrap_or_default()
}

#[tokio::test]
async fn two_workers_of_capacity_four_never_run_more_than_eight() {
    let db = TestDb::create().await;
    let scheduler = Scheduler::start(&db, &[]).await;
    let mut jobs = scheduler.jobs().await;
    let mut ids = Vec::new();
    for _ in 0..40 {
        ids.push(create(&mut jobs, "sleep", json!({"seconds": 0.25})).await.id);
    }
    let _a = Worker::start(&scheduler, "a", &["--capacity", "sleep=4"]).await;
    let _b = Worker::start(&scheduler, "b", &["--capacity", "sleep=4"]).await;
    for id in &ids {
        wait_status(&jobs, *id, JobStatus::Done, Duration::from_secs(30)).await;
    }
    let by_worker = worker_intervals(&mut jobs, &ids).await;
    assert_eq!(by_worker.len(), 2, "both workers ran jobs");
    for (worker, intervals) in &by_worker {
        let max = max_overlap(intervals);
        println!("worker {worker}: {} jobs, at most {max} at once", intervals.len());
        assert!(max <= 4, "worker {worker} ran {max} jobs at once with capacity 4");
        assert!(max >= 2, "worker {worker} never ran jobs in parallel");
    }
}

#[tokio::test]
async fn a_thousand_jobs_each_run_exactly_once() {
    let db = TestDb::create().await;
    let scheduler = Scheduler::start(&db, &[]).await;
    let jobs = scheduler.jobs().await;
    let _a = Worker::start(&scheduler, "a", &["--capacity", "sleep=16"]).await;
    let _b = Worker::start(&scheduler, "b", &["--capacity", "sleep=16"]).await;

    let created: Vec<i64> = futures::stream::iter(0..1000)
        .map(|_| {
            let mut jobs = jobs.clone();
            async move { create(&mut jobs, "sleep", json!({"seconds": 0})).await.id }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    assert_eq!(created.len(), 1000);

    let pool = db.scheduler_pool().await;
    wait_until("1000 jobs done", Duration::from_secs(60), || {
        let pool = pool.clone();
        async move {
            let (done,): (i64,) = sqlx::query_as("SELECT count(*) FROM jobs WHERE status = 'done'")
                .fetch_one(&pool)
                .await
                .expect("count");
            (done == 1000).then_some(())
        }
    })
    .await;
    // Exactly once: every job was claimed once (the attempt counts claims)
    // and ended on the first try.
    let rows: Vec<(i64, i32, String, Option<String>)> =
        sqlx::query_as("SELECT id, attempt, status, last_error FROM jobs ORDER BY id")
            .fetch_all(&pool)
            .await
            .expect("rows");
    assert_eq!(rows.len(), 1000);
    for (id, attempt, status, error) in rows {
        assert_eq!((attempt, status.as_str(), error), (1, "done", None), "job {id}");
    }
    let (workers,): (i64,) = sqlx::query_as("SELECT count(DISTINCT worker_id) FROM jobs")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(workers, 2, "both workers took jobs");
}
