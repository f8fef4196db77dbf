//! Bad input gets a clear error naming the field, and writes nothing.

use regsweep_integration_tests::{Scheduler, TestDb};
use regsweep_proto::json_to_struct;
use regsweep_proto::v1;
use serde_json::json;
use tonic::Code;
use tonic_types::StatusExt as _;

fn violations(status: &tonic::Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn bad_requests_are_refused_and_write_nothing() {
    let db = TestDb::create().await;
    let scheduler = Scheduler::start(&db, &[]).await;
    let mut jobs = scheduler.jobs().await;

    let cases: Vec<(v1::CreateJobRequest, &[&str])> = vec![
        (v1::CreateJobRequest { kind: "frobnicate".into(), ..Default::default() }, &["kind"]),
        (v1::CreateJobRequest::default(), &["kind"]),
        (
            v1::CreateJobRequest {
                kind: "sleep".into(),
                args: Some(json_to_struct(json!({"seconds": "ten"}))),
                ..Default::default()
            },
            &["args.seconds"],
        ),
        (
            v1::CreateJobRequest {
                kind: "sleep".into(),
                args: Some(json_to_struct(json!({"seconds": -3}))),
                ..Default::default()
            },
            &["args.seconds"],
        ),
        (
            v1::CreateJobRequest {
                kind: "sleep".into(),
                args: Some(json_to_struct(json!({"seconds": 1, "extra": true}))),
                ..Default::default()
            },
            &["args.extra"],
        ),
        (
            v1::CreateJobRequest {
                kind: "sleep".into(),
                args: Some(json_to_struct(json!({"seconds": 1}))),
                priority: 1_000_000,
                max_attempts: 1000,
                parent_id: 424_242,
                ..Default::default()
            },
            &["priority", "max_attempts"],
        ),
    ];
    for (request, fields) in cases {
        let status = jobs.create_job(request.clone()).await.expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{request:?}: {status:?}");
        assert_eq!(violations(&status), fields, "{request:?}");
        assert!(status.message().starts_with("invalid request: "), "{}", status.message());
    }
    // A parent that does not exist is named too, once the rest is valid.
    let orphan = v1::CreateJobRequest {
        kind: "sleep".into(),
        args: Some(json_to_struct(json!({"seconds": 1}))),
        parent_id: 424_242,
        ..Default::default()
    };
    let status = jobs.create_job(orphan).await.expect_err("refused");
    assert_eq!(violations(&status), ["parent_id"]);

    for page_size in [-1, 1001] {
        let status = jobs
            .list_jobs(v1::ListJobsRequest { page_size, ..Default::default() })
            .await
            .expect_err("refused");
        assert_eq!(
            (status.code(), violations(&status)),
            (Code::InvalidArgument, vec!["page_size".to_string()])
        );
    }
    let status = jobs
        .list_jobs(v1::ListJobsRequest { page_token: "forged".into(), ..Default::default() })
        .await
        .expect_err("refused");
    assert_eq!(violations(&status), ["page_token"]);
    let status = jobs
        .list_jobs(v1::ListJobsRequest { statuses: vec![42], ..Default::default() })
        .await
        .expect_err("refused");
    assert_eq!(violations(&status), ["statuses[0]"]);

    for status in [
        jobs.get_job(v1::GetJobRequest { id: 999 }).await.expect_err("missing"),
        jobs.cancel_job(v1::CancelJobRequest { id: 999, reason: String::new() })
            .await
            .expect_err("missing"),
        jobs.delete_job(v1::DeleteJobRequest { id: 999 }).await.expect_err("missing"),
        jobs.get_job_logs(v1::GetJobLogsRequest { id: 999, ..Default::default() })
            .await
            .expect_err("missing"),
    ] {
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
        assert_eq!(status.message(), "job 999 not found");
    }
    let status = jobs.get_job(v1::GetJobRequest { id: 0 }).await.expect_err("refused");
    assert_eq!(violations(&status), ["id"]);

    let pool = db.scheduler_pool().await;
    let (count,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM jobs").fetch_one(&pool).await.expect("count");
    assert_eq!(count, 0, "no refused request wrote a job");
}

#[tokio::test]
async fn oversized_requests_are_refused() {
    let db = TestDb::create().await;
    let scheduler = Scheduler::start(&db, &[]).await;
    let mut jobs = scheduler.jobs().await;
    let huge = "x".repeat(2 * 1024 * 1024);
    let request = v1::CreateJobRequest {
        kind: "false".into(),
        args: Some(json_to_struct(json!({"message": huge}))),
        ..Default::default()
    };
    let status = jobs.create_job(request).await.expect_err("refused");
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    let big = "x".repeat(100 * 1024);
    let request = v1::CreateJobRequest {
        kind: "false".into(),
        args: Some(json_to_struct(json!({"message": big}))),
        ..Default::default()
    };
    let status = jobs.create_job(request).await.expect_err("refused");
    assert_eq!(violations(&status), ["args"]);
}
