//! Limits that keep one replica from being overrun.

use std::time::Duration;

use nix::sys::signal::Signal;
use regsweep_integration_tests::{Scheduler, TestDb, Worker};

#[tokio::test(flavor = "multi_thread")]
async fn worker_streams_beyond_the_limit_are_refused_until_a_slot_frees() {
    let db = TestDb::create().await;
    let scheduler = Scheduler::start(&db, &["--max-worker-streams", "1"]).await;
    let mut first = Worker::start(&scheduler, "first", &[]).await;
    let second = Worker::spawn(&scheduler.url, "second", &["--reconnect-max-backoff", "300ms"]);
    let refused = second
        .process
        .wait_for_log("a refused stream", Duration::from_secs(20), |line| {
            line["message"] == "scheduler stream lost"
                && line["reason"].as_str().is_some_and(|r| r.contains("worker streams already"))
        })
        .await;
    assert!(
        refused["reason"].as_str().is_some_and(|r| r.contains("1 worker streams")),
        "{refused}"
    );
    scheduler
        .process
        .wait_for_message("refusing a worker stream: too many", Duration::from_secs(5))
        .await;

    // The first one leaves: its slot goes to the second.
    first.process.signal(Signal::SIGTERM);
    assert!(first.process.wait_exit(Duration::from_secs(30)).await.success());
    second.process.wait_for_message("registered with scheduler", Duration::from_secs(20)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_deadline_ends_a_call_that_would_wait_longer() {
    let db = TestDb::create().await;
    let scheduler = Scheduler::start(&db, &[]).await;
    let mut jobs = scheduler.jobs().await;
    // No worker: the job waits, and following its log would never end.
    let job = crate::create(&mut jobs, "sleep", serde_json::json!({"seconds": 1})).await;
    let mut request = tonic::Request::new(regsweep_proto::v1::TailJobLogsRequest {
        id: job.id,
        ..Default::default()
    });
    request.set_timeout(Duration::from_millis(300));
    // Only a hang guard: the deadline, not this, must end the call.
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        let mut stream = match jobs.tail_job_logs(request).await {
            Ok(response) => response.into_inner(),
            Err(status) => return status,
        };
        loop {
            match stream.message().await {
                Ok(Some(_)) => {}
                Ok(None) => panic!("the tail ended by itself"),
                Err(status) => return status,
            }
        }
    })
    .await
    .expect("the server honoured the deadline");
    assert!(
        matches!(ended.code(), tonic::Code::DeadlineExceeded | tonic::Code::Cancelled),
        "{ended:?}"
    );
}
