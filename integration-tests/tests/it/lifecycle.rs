//! A job's life from creation to its end, its logs, as the CLI shows it.

use std::time::Duration;

use regsweep_integration_tests::{Scheduler, TestDb, Worker};
use regsweep_proto::struct_to_json;
use regsweep_proto::v1::{self, JobStatus};
use serde_json::json;

use crate::{create, wait_status};

#[tokio::test]
async fn sleep_job_goes_waiting_running_done_with_logs() {
    let db = TestDb::create().await;
    let scheduler = Scheduler::start(&db, &[]).await;
    let mut jobs = scheduler.jobs().await;

    let job = create(&mut jobs, "sleep", json!({"seconds": 1})).await;
    assert_eq!(job.status(), JobStatus::Waiting);
    assert_eq!(job.attempt, 0);
    assert!(job.worker_id.is_empty());

    let _worker = Worker::start(&scheduler, "w1", &[]).await;
    let running = wait_status(&jobs, job.id, JobStatus::Running, Duration::from_secs(10)).await;
    assert_eq!(running.attempt, 1);
    assert!(!running.worker_id.is_empty());
    assert!(running.claimed_at.is_some());

    let done = wait_status(&jobs, job.id, JobStatus::Done, Duration::from_secs(10)).await;
    assert_eq!(done.attempt, 1);
    assert!(done.started_at.is_some() && done.finished_at.is_some());
    assert_eq!(done.result.as_ref().map(struct_to_json), Some(json!({"slept_seconds": 1})));
    assert!(done.last_error.is_empty());

    let logs = jobs
        .get_job_logs(v1::GetJobLogsRequest { id: job.id, ..Default::default() })
        .await
        .expect("logs")
        .into_inner();
    let texts: Vec<_> = logs.lines.iter().map(|l| (l.attempt, l.text.as_str())).collect();
    assert_eq!(texts, [(1, "sleeping for 1s"), (1, "slept for 1s")]);
}

#[tokio::test]
async fn false_job_ends_error_at_once_with_its_message() {
    let db = TestDb::create().await;
    let scheduler = Scheduler::start(&db, &[]).await;
    let mut jobs = scheduler.jobs().await;
    let _worker = Worker::start(&scheduler, "w1", &[]).await;

    let job = create(&mut jobs, "false", json!({"message": "disk on fire"})).await;
    let failed = wait_status(&jobs, job.id, JobStatus::Error, Duration::from_secs(10)).await;
    // Not retried although max_attempts is 3: `false` fails for good.
    assert_eq!((failed.attempt, failed.max_attempts), (1, 3));
    assert_eq!(failed.last_error, "disk on fire");
    assert_eq!(failed.errors.len(), 1);
    assert_eq!(failed.errors[0].attempt, 1);
    assert_eq!(failed.errors[0].error, "disk on fire");

    let logs = jobs
        .get_job_logs(v1::GetJobLogsRequest { id: job.id, ..Default::default() })
        .await
        .expect("logs")
        .into_inner();
    assert_eq!(logs.lines.len(), 1);
    assert_eq!(logs.lines[0].text, "failing: disk on fire");
}

#[tokio::test(flavor = "multi_thread")]
async fn migrate_only_applies_both_schemas_and_exits() {
    let db = regsweep_integration_tests::TestDb::create().await;
    for binary in ["regsweep-scheduler", "regsweep-scrubber"] {
        let status = tokio::process::Command::new(regsweep_integration_tests::process::bin(binary))
            .args(["--migrate-only", "--database-url", &db.url])
            .status()
            .await
            .expect("run");
        assert!(status.success(), "{binary} --migrate-only failed");
    }
    let pool = db.scheduler_pool().await;
    let (scheduler, scrubber): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM scheduler._sqlx_migrations WHERE success),
                (SELECT count(*) FROM scrubber._sqlx_migrations WHERE success)",
    )
    .fetch_one(&pool)
    .await
    .expect("migrations");
    let files = |dir: &str| {
        std::fs::read_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(dir))
            .expect("migrations dir")
            .count() as i64
    };
    assert_eq!(scheduler, files("services/scheduler/migrations/postgres"));
    assert_eq!(scrubber, files("services/scrubber/migrations/postgres"));
}
