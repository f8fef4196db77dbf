//! Operators cancelling jobs, and workers shutting down gracefully.

use std::time::Duration;

use nix::sys::signal::Signal;
use regsweep_integration_tests::{Scheduler, TestDb, Worker, wait_until};
use regsweep_proto::v1::{self, JobStatus, WorkerStatus};
use serde_json::json;
use tonic::Code;

use crate::{create, get, wait_started, wait_status};

#[tokio::test]
async fn a_cancelled_running_job_ends_cancel_within_a_second() {
    let db = TestDb::create().await;
    let scheduler = Scheduler::start(&db, &[]).await;
    let mut jobs = scheduler.jobs().await;
    let _worker = Worker::start(&scheduler, "w1", &[]).await;

    let job = create(&mut jobs, "sleep", json!({"seconds": 60})).await;
    wait_started(&jobs, job.id, Duration::from_secs(10)).await;
    let response = jobs
        .cancel_job(v1::CancelJobRequest { id: job.id, reason: "not needed".into() })
        .await
        .expect("cancel")
        .into_inner()
        .job
        .expect("job");
    assert_eq!(response.status(), JobStatus::CancelRequest);

    let cancelled = wait_status(&jobs, job.id, JobStatus::Cancel, Duration::from_secs(1)).await;
    assert_eq!(cancelled.last_error, "not needed");
    assert!(cancelled.finished_at.is_some());
    let logs = jobs
        .get_job_logs(v1::GetJobLogsRequest { id: job.id, ..Default::default() })
        .await
        .expect("logs")
        .into_inner()
        .lines;
    assert!(
        logs.iter().any(|l| l.text.starts_with("cancelled after")),
        "worker stopped the sleep: {logs:?}"
    );

    // A terminal job cannot be cancelled again.
    let again = jobs.cancel_job(v1::CancelJobRequest { id: job.id, reason: String::new() }).await;
    assert_eq!(again.expect_err("terminal").code(), Code::FailedPrecondition);
}

#[tokio::test]
async fn a_waiting_job_is_cancelled_at_once_and_never_runs() {
    let db = TestDb::create().await;
    let scheduler = Scheduler::start(&db, &[]).await;
    let mut jobs = scheduler.jobs().await;
    let job = create(&mut jobs, "sleep", json!({"seconds": 0})).await;
    let cancelled = jobs
        .cancel_job(v1::CancelJobRequest { id: job.id, reason: String::new() })
        .await
        .expect("cancel")
        .into_inner()
        .job
        .expect("job");
    assert_eq!(cancelled.status(), JobStatus::Cancel);
    assert_eq!(cancelled.last_error, "cancelled by operator");

    // A worker arriving afterwards does not run it; a later job proves the
    // worker was taking work.
    let _worker = Worker::start(&scheduler, "w1", &[]).await;
    let later = create(&mut jobs, "sleep", json!({"seconds": 0})).await;
    wait_status(&jobs, later.id, JobStatus::Done, Duration::from_secs(10)).await;
    let job = get(&mut jobs, job.id).await;
    assert_eq!((job.status(), job.attempt), (JobStatus::Cancel, 0));

    // Deleting removes it (tombstone) and a running job cannot be deleted.
    jobs.delete_job(v1::DeleteJobRequest { id: job.id }).await.expect("delete");
    assert_eq!(get(&mut jobs, job.id).await.status(), JobStatus::Deleted);
}

#[tokio::test]
async fn sigterm_gives_a_long_job_back_and_another_worker_finishes_it() {
    let db = TestDb::create().await;
    let scheduler = Scheduler::start(&db, &[]).await;
    let mut jobs = scheduler.jobs().await;
    let mut first = Worker::start(&scheduler, "first", &["--shutdown-grace", "500ms"]).await;

    let job = create(&mut jobs, "sleep", json!({"seconds": 3})).await;
    let running = wait_started(&jobs, job.id, Duration::from_secs(10)).await;
    let first_id = running.worker_id.clone();

    // Deleting a running job is refused.
    let refused = jobs.delete_job(v1::DeleteJobRequest { id: job.id }).await;
    assert_eq!(refused.expect_err("running").code(), Code::FailedPrecondition);

    first.signal(Signal::SIGTERM);
    let status = first.process.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "worker exits 0 after draining: {status:?}");
    let given_back =
        wait_status(&jobs, job.id, JobStatus::WorkerShutdown, Duration::from_secs(10)).await;
    assert_eq!(given_back.attempt, 1);

    // The session's end is written after its last updates, by the writer.
    wait_until("the drained worker listed offline", Duration::from_secs(10), || {
        let mut jobs = jobs.clone();
        let first_id = first_id.clone();
        async move {
            let request = v1::ListWorkersRequest { include_gone: true, ..Default::default() };
            let workers = jobs.list_workers(request).await.expect("workers").into_inner().workers;
            let first = workers.into_iter().find(|w| w.id == first_id).expect("first listed");
            (first.status() == WorkerStatus::Offline).then_some(())
        }
    })
    .await;

    let _second = Worker::start(&scheduler, "second", &[]).await;
    let done = wait_status(&jobs, job.id, JobStatus::Done, Duration::from_secs(15)).await;
    assert_eq!(done.attempt, 2);
    assert_ne!(done.worker_id, first_id);
}

#[tokio::test]
async fn sigterm_lets_a_short_job_finish_within_the_grace_period() {
    let db = TestDb::create().await;
    let scheduler = Scheduler::start(&db, &[]).await;
    let mut jobs = scheduler.jobs().await;
    let mut worker = Worker::start(&scheduler, "w1", &["--shutdown-grace", "30s"]).await;
    let job = create(&mut jobs, "sleep", json!({"seconds": 1})).await;
    wait_started(&jobs, job.id, Duration::from_secs(10)).await;
    worker.signal(Signal::SIGTERM);
    let status = worker.process.wait_exit(Duration::from_secs(15)).await;
    assert!(status.success());
    // Its last update may still be in the scheduler's writer.
    let job = wait_status(&jobs, job.id, JobStatus::Done, Duration::from_secs(10)).await;
    assert_eq!(job.attempt, 1, "finished by its first attempt");
}
