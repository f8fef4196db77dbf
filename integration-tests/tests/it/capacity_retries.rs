//! Capacity changes at runtime, retries with backoff, bad input.

use std::time::Duration;

use chrono::{DateTime, Utc};
use regsweep_integration_tests::{Scheduler, TestDb, Worker, wait_until};
use regsweep_proto::v1::{self, JobStatus};
use regsweep_proto::{json_to_struct, timestamp_to_chrono};
use serde_json::json;
use tonic::Code;

use crate::validation::violations;
use crate::{create, create_with, get, wait_status};

fn time(ts: Option<&regsweep_proto::pbjson_types::Timestamp>) -> DateTime<Utc> {
    ts.and_then(timestamp_to_chrono).expect("timestamp")
}

#[tokio::test]
async fn lowering_capacity_lets_running_jobs_finish_and_claims_nothing_until_under() {
    let db = TestDb::create().await;
    let scheduler = Scheduler::start(&db, &[]).await;
    let mut jobs = scheduler.jobs().await;
    let _worker = Worker::start(&scheduler, "w", &["--capacity", "sleep=4"]).await;
    let mut ids = Vec::new();
    for _ in 0..8 {
        ids.push(create(&mut jobs, "sleep", json!({"seconds": 1.5})).await.id);
    }
    let first_four = wait_until("four running", Duration::from_secs(10), || {
        let mut jobs = jobs.clone();
        let ids = ids.clone();
        async move {
            let mut running = Vec::new();
            for id in ids {
                let job = get(&mut jobs, id).await;
                if job.status() == JobStatus::Running {
                    running.push(job);
                }
            }
            (running.len() == 4).then_some(running)
        }
    })
    .await;
    let worker_id = first_four[0].worker_id.clone();
    let set = jobs
        .set_worker_capacity(v1::SetWorkerCapacityRequest {
            worker_id: worker_id.clone(),
            capacity: [("sleep".to_string(), 1)].into_iter().collect(),
        })
        .await
        .expect("set capacity")
        .into_inner()
        .worker
        .expect("worker");
    assert_eq!(set.capacity.get("sleep"), Some(&1));
    let changed = Utc::now();

    let mut done = Vec::new();
    for id in &ids {
        done.push(wait_status(&jobs, *id, JobStatus::Done, Duration::from_secs(30)).await);
    }
    // Nothing was preempted: the four running ones finished on attempt 1.
    for job in &first_four {
        let finished = done.iter().find(|d| d.id == job.id).expect("done");
        assert_eq!(finished.attempt, 1);
    }
    // The other four ran one at a time (as their worker saw them: first
    // and last log line), all after the change.
    let mut later = Vec::new();
    for d in done.iter().filter(|d| !first_four.iter().any(|f| f.id == d.id)) {
        let logs = jobs
            .get_job_logs(v1::GetJobLogsRequest { id: d.id, ..Default::default() })
            .await
            .expect("logs")
            .into_inner()
            .lines;
        later.push((time(logs[0].time.as_ref()), time(logs[1].time.as_ref())));
    }
    later.sort();
    assert_eq!(later.len(), 4);
    for pair in later.windows(2) {
        assert!(
            pair[1].0 >= pair[0].1,
            "two jobs ran at once after lowering capacity to 1: {pair:?}"
        );
    }
    assert!(later[0].0 >= changed - chrono::Duration::milliseconds(50));
}

#[tokio::test]
async fn a_retryable_failure_is_retried_with_backoff_then_ends_error() {
    let db = TestDb::create().await;
    let scheduler = Scheduler::start(&db, &[]).await;
    let mut jobs = scheduler.jobs().await;
    let _worker = Worker::start(&scheduler, "w", &[]).await;
    let job = create_with(
        &mut jobs,
        v1::CreateJobRequest {
            kind: "false".into(),
            args: Some(json_to_struct(json!({"message": "flaky", "retryable": true}))),
            max_attempts: 3,
            ..Default::default()
        },
    )
    .await;
    let failed = wait_status(&jobs, job.id, JobStatus::Error, Duration::from_secs(20)).await;
    assert_eq!(failed.attempt, 3);
    let errors: Vec<_> = failed.errors.iter().map(|e| (e.attempt, e.error.as_str())).collect();
    assert_eq!(errors, [(1, "flaky"), (2, "flaky"), (3, "flaky")]);
    // Each retry waited its backoff: at least half of 1 s, then of 2 s.
    let at: Vec<_> = failed.errors.iter().map(|e| time(e.at.as_ref())).collect();
    assert!(at[1] - at[0] >= chrono::Duration::milliseconds(500), "{at:?}");
    assert!(at[2] - at[1] >= chrono::Duration::milliseconds(1000), "{at:?}");
}

#[tokio::test]
async fn bad_crons_capacities_and_retention_settings_are_refused_and_write_nothing() {
    let db = TestDb::create().await;
    let scheduler = Scheduler::start(&db, &[]).await;
    let mut jobs = scheduler.jobs().await;
    let mut crons = v1::cron_service_client::CronServiceClient::new(scheduler.channel().await);

    for (schedule, why) in
        [("* * *", "too few fields"), ("61 * * * *", "minute 61"), ("0 0 30 2 *", "never")]
    {
        let cron = v1::Cron {
            name: "c".into(),
            schedule: schedule.into(),
            kind: "sleep".into(),
            args: Some(json_to_struct(json!({"seconds": 0}))),
            ..Default::default()
        };
        let status =
            crons.create_cron(v1::CreateCronRequest { cron: Some(cron) }).await.expect_err(why);
        assert_eq!(
            (status.code(), violations(&status)),
            (Code::InvalidArgument, vec!["cron.schedule".to_string()]),
            "{why}"
        );
    }
    let retention = v1::Cron {
        name: "gc".into(),
        schedule: "0 3 * * *".into(),
        kind: "joblogs_gc".into(),
        args: Some(json_to_struct(json!({"older_than_seconds": 1, "keep_last": -5}))),
        ..Default::default()
    };
    let status = crons
        .create_cron(v1::CreateCronRequest { cron: Some(retention) })
        .await
        .expect_err("refused");
    assert_eq!(violations(&status), ["cron.args.older_than_seconds", "cron.args.keep_last"]);
    let status = jobs
        .create_job(v1::CreateJobRequest {
            kind: "joblogs_gc".into(),
            args: Some(json_to_struct(json!({"older_than_seconds": 1e12}))),
            ..Default::default()
        })
        .await
        .expect_err("refused");
    assert_eq!(violations(&status), ["args.older_than_seconds"]);

    let worker = Worker::start(&scheduler, "w", &[]).await;
    let workers = jobs
        .list_workers(v1::ListWorkersRequest::default())
        .await
        .expect("list")
        .into_inner()
        .workers;
    let worker_id = workers.iter().find(|w| w.name == "w").expect("listed").id.clone();
    for (capacity, field) in [
        (vec![("teleport", 1)], "capacity[teleport]"),
        (vec![("sleep", 1_000_000)], "capacity[sleep]"),
        (vec![("joblogs_gc", 1)], "capacity[joblogs_gc]"),
    ] {
        let request = v1::SetWorkerCapacityRequest {
            worker_id: worker_id.clone(),
            capacity: capacity.into_iter().map(|(k, n)| (k.to_string(), n)).collect(),
        };
        let status = jobs.set_worker_capacity(request).await.expect_err("refused");
        assert_eq!(violations(&status), [field]);
    }
    let unknown = v1::SetWorkerCapacityRequest {
        worker_id: uuid::Uuid::new_v4().to_string(),
        capacity: [("sleep".to_string(), 1)].into_iter().collect(),
    };
    assert_eq!(
        jobs.set_worker_capacity(unknown).await.expect_err("missing").code(),
        Code::NotFound
    );

    // Nothing was written: only the default retention cron exists, the
    // worker kept its capacity, and there are no jobs.
    let list = crons.list_crons(v1::ListCronsRequest {}).await.expect("list").into_inner().crons;
    assert_eq!(list.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["joblogs-gc"]);
    let workers = jobs
        .list_workers(v1::ListWorkersRequest::default())
        .await
        .expect("list")
        .into_inner()
        .workers;
    let listed = workers.iter().find(|w| w.name == "w").expect("listed");
    assert_eq!(listed.capacity.get("sleep"), Some(&4));
    let all = jobs.list_jobs(v1::ListJobsRequest::default()).await.expect("list").into_inner().jobs;
    assert!(all.is_empty());
    drop(worker);
}
