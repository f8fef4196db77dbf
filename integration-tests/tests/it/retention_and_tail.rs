//! Job history retention, deletion with logs, and following a log live.

use std::time::Duration;

use regsweep_integration_tests::{Scheduler, TestDb, Worker};
use regsweep_proto::json_to_struct;
use regsweep_proto::v1::{self, JobStatus};
use serde_json::json;
use tonic::Code;

use crate::{create, create_with, wait_status};

#[tokio::test]
async fn joblogs_gc_keeps_the_newest_finished_jobs_and_deletes_the_rest_with_their_logs() {
    let db = TestDb::create().await;
    let scheduler = Scheduler::start(&db, &[]).await;
    let mut jobs = scheduler.jobs().await;
    let _worker = Worker::start(&scheduler, "w", &[]).await;
    let mut finished = Vec::new();
    for i in 0..5 {
        let job = create(&mut jobs, "false", json!({"message": format!("run {i}")})).await;
        finished
            .push(wait_status(&jobs, job.id, JobStatus::Error, Duration::from_secs(10)).await.id);
    }
    let running = create(&mut jobs, "sleep", json!({"seconds": 30})).await;
    wait_status(&jobs, running.id, JobStatus::Running, Duration::from_secs(10)).await;

    let gc = create_with(
        &mut jobs,
        v1::CreateJobRequest {
            kind: "joblogs_gc".into(),
            args: Some(json_to_struct(json!({"older_than_seconds": 86400, "keep_last": 2}))),
            ..Default::default()
        },
    )
    .await;
    let gc = wait_status(&jobs, gc.id, JobStatus::Done, Duration::from_secs(15)).await;
    let result = regsweep_proto::struct_to_json(gc.result.as_ref().expect("result"));
    assert_eq!(result, json!({"deleted_jobs": 3, "deleted_log_chunks": 3}));

    for id in &finished[..3] {
        let status = jobs.get_job(v1::GetJobRequest { id: *id }).await.expect_err("purged");
        assert_eq!(status.code(), Code::NotFound);
    }
    for id in finished[3..].iter().chain([&running.id]) {
        jobs.get_job(v1::GetJobRequest { id: *id }).await.expect("kept");
    }
    let pool = db.scheduler_pool().await;
    let (orphans,): (i64,) = sqlx::query_as("SELECT count(*) FROM job_logs WHERE job_id = ANY($1)")
        .bind(&finished[..3])
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(orphans, 0);
}

#[tokio::test]
async fn delete_job_removes_its_logs() {
    let db = TestDb::create().await;
    let scheduler = Scheduler::start(&db, &[]).await;
    let mut jobs = scheduler.jobs().await;
    let _worker = Worker::start(&scheduler, "w", &[]).await;
    let job = create(&mut jobs, "false", json!({})).await;
    wait_status(&jobs, job.id, JobStatus::Error, Duration::from_secs(10)).await;
    let before = jobs
        .get_job_logs(v1::GetJobLogsRequest { id: job.id, ..Default::default() })
        .await
        .expect("logs");
    assert_eq!(before.into_inner().lines.len(), 1);
    jobs.delete_job(v1::DeleteJobRequest { id: job.id }).await.expect("delete");
    let after = jobs
        .get_job_logs(v1::GetJobLogsRequest { id: job.id, ..Default::default() })
        .await
        .expect("logs");
    assert!(after.into_inner().lines.is_empty());
}

#[tokio::test]
async fn tail_follows_a_running_job_to_its_end() {
    let db = TestDb::create().await;
    let scheduler = Scheduler::start(&db, &[]).await;
    let mut jobs = scheduler.jobs().await;
    let _worker = Worker::start(&scheduler, "w", &[]).await;
    let job = create(&mut jobs, "sleep", json!({"seconds": 1.5})).await;
    wait_status(&jobs, job.id, JobStatus::Running, Duration::from_secs(10)).await;

    let tail = |id, page_token: &str| v1::TailJobLogsRequest {
        id,
        attempt: 0,
        page_token: page_token.to_string(),
    };
    let follow = |request: v1::TailJobLogsRequest| {
        let mut jobs = jobs.clone();
        async move {
            let mut stream = jobs.tail_job_logs(request).await?.into_inner();
            let mut messages = Vec::new();
            while let Some(message) =
                tokio::time::timeout(Duration::from_secs(10), stream.message())
                    .await
                    .expect("tail keeps up")?
            {
                messages.push(message);
            }
            Ok::<_, tonic::Status>(messages)
        }
    };
    let texts = |messages: &[v1::TailJobLogsResponse]| -> Vec<String> {
        messages.iter().flat_map(|m| m.lines.iter().map(|l| l.text.clone())).collect()
    };
    let messages = follow(tail(job.id, "")).await.expect("tail healthy");
    assert_eq!(texts(&messages), ["sleeping for 1.5s", "slept for 1.5s"]);
    assert_eq!(messages.last().expect("messages").status(), JobStatus::Done);
    // The end line came live, in a later message than the first one.
    assert!(messages.len() >= 2, "{} messages", messages.len());

    // A follower that lost its stream resumes after the last message it
    // got, and is sent nothing twice; from where a full read of the log
    // ended, only the end.
    let resumed = follow(tail(job.id, &messages[0].next_page_token)).await.expect("resumed");
    assert_eq!(texts(&resumed), texts(&messages[1..]));
    let page = jobs
        .clone()
        .get_job_logs(v1::GetJobLogsRequest { id: job.id, ..Default::default() })
        .await
        .expect("logs")
        .into_inner();
    assert!(page.next_page_token.is_empty(), "one page");
    let after = follow(tail(job.id, &page.follow_token)).await.expect("from the page's end");
    assert!(texts(&after).is_empty(), "{after:?}");
    assert_eq!(after.last().expect("the end").status(), JobStatus::Done);
    // A token of another job is refused, not followed.
    let status = follow(tail(job.id + 1, &page.follow_token)).await.expect_err("foreign token");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    let status = follow(tail(424_242, "")).await.expect_err("missing");
    assert_eq!(status.code(), Code::NotFound);
}
