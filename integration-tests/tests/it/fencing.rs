//! The worker protocol spoken directly, as a worker in another language
//! would: every update is fenced by `(job_id, attempt)` and by the worker
//! it was assigned to.

use std::time::Duration;

use regsweep_integration_tests::raw::{credit, update};
use regsweep_integration_tests::{RawWorker, Scheduler, TestDb};
use regsweep_proto::v1::{
    self, JobStatus, connect_request::Message as Out, connect_response::Message as In,
};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::{create, get, wait_status};

fn lines(attempt: u32, texts: &[&str]) -> Vec<v1::JobLogLine> {
    texts.iter().map(|t| v1::JobLogLine { attempt, time: None, text: t.to_string() }).collect()
}

#[tokio::test]
async fn updates_for_another_attempt_or_worker_change_nothing() {
    let db = TestDb::create().await;
    let scheduler = Scheduler::start(&db, &[]).await;
    let mut jobs = scheduler.jobs().await;
    let mut worker = RawWorker::connect(&scheduler, "raw", &[("sleep", 1)]).await;
    let mut intruder = RawWorker::connect(&scheduler, "intruder", &[("sleep", 0)]).await;

    let job = create(&mut jobs, "sleep", json!({"seconds": 60})).await;
    worker.send(credit("sleep", 1)).await;
    let In::Assign(v1::Assign { job: Some(assigned), .. }) = worker.next().await else {
        panic!("expected assign")
    };
    assert_eq!((assigned.id, assigned.attempt), (job.id, 1));
    assert_eq!(assigned.worker_id, worker.id);
    worker.send(update(job.id, 1, JobStatus::Running)).await;
    let log = |attempt, seq, texts: &[&str]| {
        Out::LogChunk(v1::LogChunk { job_id: job.id, attempt, seq, lines: lines(attempt, texts) })
    };
    worker.send(log(1, 0, &["one", "two", "three"])).await;
    worker.send(log(1, 1, &["four", "five"])).await;
    // The same chunk again (a retransmission) is stored once.
    worker.send(log(1, 1, &["four", "five"])).await;

    // Wrong attempt: refused, the job keeps running. An attempt said to
    // have ended gets no cancel (it stopped already); one said to run gets
    // one, once, however often it is named.
    worker.send(log(2, 0, &["from the future"])).await;
    worker.send(update(job.id, 2, JobStatus::Done)).await;
    worker.send(update(job.id, 3, JobStatus::Running)).await;
    worker.send(update(job.id, 3, JobStatus::Running)).await;
    worker.send(update(job.id, 4, JobStatus::Running)).await;
    for attempt in [3, 4] {
        let In::Cancel(cancel) = worker.next().await else { panic!("expected cancel") };
        assert_eq!(
            (cancel.job_id, cancel.attempt, cancel.reason.as_str()),
            (job.id, attempt, "stale attempt")
        );
    }
    assert_eq!(get(&mut jobs, job.id).await.status(), JobStatus::Running);

    // Right attempt, wrong worker: refused too.
    intruder.send(update(job.id, 1, JobStatus::Done)).await;
    intruder.send(update(job.id, 1, JobStatus::Running)).await;
    let In::Cancel(cancel) = intruder.next().await else { panic!("expected cancel") };
    assert_eq!((cancel.job_id, cancel.attempt), (job.id, 1));
    intruder.send(log(1, 2, &["intruding"])).await;
    assert_eq!(get(&mut jobs, job.id).await.status(), JobStatus::Running);

    // The real attempt completes.
    worker.send(update(job.id, 1, JobStatus::Done)).await;
    let done = wait_status(&jobs, job.id, JobStatus::Done, Duration::from_secs(10)).await;
    assert_eq!(done.worker_id, worker.id);

    // Exactly the five lines of attempt 1, over pages of two.
    let mut texts = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = jobs
            .get_job_logs(v1::GetJobLogsRequest {
                id: job.id,
                page_size: 2,
                page_token: token,
                ..Default::default()
            })
            .await
            .expect("logs")
            .into_inner();
        pages += 1;
        texts.extend(page.lines.into_iter().map(|l| l.text));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(texts, ["one", "two", "three", "four", "five"]);
    assert!(pages >= 3);
}

#[tokio::test]
async fn protocol_violations_end_the_stream_with_a_reason() {
    let db = TestDb::create().await;
    let scheduler = Scheduler::start(&db, &[]).await;

    // Unknown kind in Hello.
    let (tx, rx) = mpsc::channel(4);
    let hello = v1::Hello {
        name: "w".into(),
        capacity: [("teleport".to_string(), 1)].into_iter().collect(),
        ..Default::default()
    };
    tx.send(v1::ConnectRequest { message: Some(Out::Hello(hello)) }).await.expect("send");
    let mut stream = scheduler
        .workers()
        .await
        .connect(ReceiverStream::new(rx))
        .await
        .expect("connect")
        .into_inner();
    let status = stream.message().await.expect_err("refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("hello.capacity[teleport]"), "{}", status.message());

    // Anything but Hello first.
    let (tx, rx) = mpsc::channel(4);
    tx.send(v1::ConnectRequest {
        message: Some(Out::Credit(v1::Credit {
            kind: "sleep".into(),
            n: 1,
            capacity_generation: 0,
        })),
    })
    .await
    .expect("send");
    let mut stream = scheduler
        .workers()
        .await
        .connect(ReceiverStream::new(rx))
        .await
        .expect("connect")
        .into_inner();
    let status = stream.message().await.expect_err("refused");
    assert_eq!(status.message(), "the first message must be hello");

    // Credit for a kind the worker did not declare.
    let worker = RawWorker::connect(&scheduler, "w", &[("sleep", 1)]).await;
    worker.send(credit("false", 1)).await;
    let mut rx = worker.rx;
    let status = rx.message().await.expect_err("refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
}
