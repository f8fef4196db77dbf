//! Bad input gets a clear error naming the field, and writes nothing.

use regsweep_integration_tests::{Scheduler, TestDb};
use regsweep_proto::json_to_struct;
use regsweep_proto::v1;
use serde_json::json;
use tonic::Code;
use tonic_types::StatusExt as _;

pub fn violations(status: &tonic::Status) -> Vec<String> {
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

/// First sightings: every field is checked, and a refused request records
/// nothing.
#[tokio::test]
async fn bad_tag_sightings_are_refused_and_record_nothing() {
    let db = TestDb::create().await;
    let scheduler = Scheduler::start(&db, &[]).await;
    crate::policies::create_registry(&scheduler, "local", "http://127.0.0.1:9").await;
    let mut repositories = scheduler.repositories().await;
    let digest = format!("sha256:{}", "a".repeat(64));
    let seen = |tag: &str, digest: &str| v1::TagSighting { tag: tag.into(), digest: digest.into() };
    let request =
        |repository: &str, sightings: Vec<v1::TagSighting>| v1::RecordTagSightingsRequest {
            registry: "local".into(),
            repository: repository.into(),
            sightings,
            forget_unseen_since: None,
        };
    let too_many: Vec<v1::TagSighting> =
        (0..10_001).map(|i| seen(&format!("t{i}"), &digest)).collect();
    let cases: Vec<(v1::RecordTagSightingsRequest, &[&str])> = vec![
        (request("UPPER/case", vec![seen("v1", &digest)]), &["repository"]),
        (request("app", vec![seen("v1", &digest), seen("-bad", &digest)]), &["sightings[1].tag"]),
        (request("app", vec![seen("v1", "sha256:abc")]), &["sightings[0].digest"]),
        (request("app", vec![seen("v1", &digest), seen("v1", &digest)]), &["sightings[1].tag"]),
        (request("app", too_many), &["sightings"]),
        (
            v1::RecordTagSightingsRequest { registry: String::new(), ..request("app", vec![]) },
            &["registry"],
        ),
    ];
    for (request, fields) in cases {
        let status = repositories.record_tag_sightings(request).await.expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert_eq!(violations(&status), fields);
    }
    let status = repositories
        .record_tag_sightings(v1::RecordTagSightingsRequest {
            registry: "nope".into(),
            ..request("app", vec![seen("v1", &digest)])
        })
        .await
        .expect_err("no such registry");
    assert_eq!(status.code(), Code::NotFound);

    let pool = db.scheduler_pool().await;
    let (count,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM tag_sightings").fetch_one(&pool).await.expect("count");
    assert_eq!(count, 0, "no refused request recorded a sighting");

    // Pushback reports: by field; a good one for an unknown registry is
    // NOT_FOUND; a good one is kept on the registry, and its etag stays.
    let pushback = |registry: &str, rate: f64, status: u32| v1::RecordPushbackRequest {
        registry: registry.into(),
        rate,
        status,
    };
    let cases: Vec<(v1::RecordPushbackRequest, &[&str])> = vec![
        (pushback("", 5.0, 429), &["registry"]),
        (pushback("local", f64::NAN, 429), &["rate"]),
        (pushback("local", -1.0, 503), &["rate"]),
        (pushback("local", 2e6, 429), &["rate"]),
        (pushback("local", 5.0, 500), &["status"]),
    ];
    for (request, fields) in cases {
        let status = repositories.record_pushback(request).await.expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert_eq!(violations(&status), fields);
    }
    let status = repositories.record_pushback(pushback("nope", 5.0, 429)).await.expect_err("none");
    assert_eq!(status.code(), Code::NotFound);
    let get = || v1::GetRegistryRequest { name: "local".into() };
    let mut registries = scheduler.registries().await;
    let before = registries.get_registry(get()).await.expect("get").into_inner().registry;
    let before = before.expect("registry");
    assert_eq!(before.pushback, None, "refused reports kept nothing");
    repositories.record_pushback(pushback("local", 12.5, 503)).await.expect("recorded");
    let after = registries.get_registry(get()).await.expect("get").into_inner().registry;
    let after = after.expect("registry");
    let kept = after.pushback.expect("kept");
    assert_eq!((kept.rate, kept.status, kept.at.is_some()), (12.5, 503, true));
    assert_eq!(after.etag, before.etag, "a pushback is not an edit");

    // A policy with an age source or attachment choice this server does
    // not know is refused by field.
    let policy = v1::Policy {
        name: "p".into(),
        registry: "local".into(),
        repository_selector: "**".into(),
        cadence: "1d".into(),
        age_source: 42,
        attachments: 9,
        ..Default::default()
    };
    let status = scheduler
        .policies()
        .await
        .create_policy(v1::CreatePolicyRequest {
            policy: Some(policy),
            live: false,
            ..Default::default()
        })
        .await
        .expect_err("refused");
    assert_eq!(violations(&status), ["policy.age_source", "policy.attachments"]);
}

#[tokio::test]
async fn a_batch_create_answers_each_item_and_refuses_only_the_bad_ones() {
    let db = TestDb::create().await;
    let scheduler = Scheduler::start(&db, &[]).await;
    let mut jobs = scheduler.jobs().await;
    let sleep = |seconds: serde_json::Value| v1::CreateJobRequest {
        kind: "sleep".into(),
        args: Some(json_to_struct(json!({ "seconds": seconds }))),
        ..Default::default()
    };
    let batch = vec![
        sleep(json!(1)),
        v1::CreateJobRequest { kind: "frobnicate".into(), ..Default::default() },
        v1::CreateJobRequest { max_attempts: 1000, ..sleep(json!("ten")) },
        v1::CreateJobRequest { parent_id: i64::MAX, ..sleep(json!(1)) },
        v1::CreateJobRequest { unique_key: "once".into(), ..sleep(json!(2)) },
        v1::CreateJobRequest { unique_key: "once".into(), ..sleep(json!(3)) },
    ];
    let results = jobs
        .create_jobs(v1::CreateJobsRequest { jobs: batch })
        .await
        .expect("a batch with bad items is answered item by item")
        .into_inner()
        .results;
    let fields = |r: &v1::CreateJobsResult| {
        let mut f: Vec<String> = r.violations.iter().map(|v| v.field.clone()).collect();
        f.sort();
        f
    };
    let summary: Vec<(bool, bool, Vec<String>)> =
        results.iter().map(|r| (r.job.is_some(), r.created, fields(r))).collect();
    assert_eq!(
        summary,
        [
            (true, true, vec![]),
            (false, false, vec!["kind".to_string()]),
            (false, false, vec!["args.seconds".to_string(), "max_attempts".to_string()]),
            (false, false, vec!["parent_id".to_string()]),
            (true, true, vec![]),
            (true, false, vec![]),
        ]
    );
    let id = |i: usize| results[i].job.as_ref().map(|j| j.id);
    assert_eq!(id(5), id(4), "the repeated key answers with the job it created");
    let listed = jobs.list_jobs(v1::ListJobsRequest::default()).await.expect("list").into_inner();
    assert_eq!(listed.jobs.len(), 2, "only the two valid, distinct jobs were written");

    for (n, what) in [(0, "empty"), (1001, "oversized")] {
        let batch = v1::CreateJobsRequest { jobs: vec![sleep(json!(1)); n] };
        let status = jobs.create_jobs(batch).await.expect_err(what);
        assert_eq!(status.code(), Code::InvalidArgument, "{what}");
        assert_eq!(violations(&status), ["jobs"], "{what}");
    }
}
