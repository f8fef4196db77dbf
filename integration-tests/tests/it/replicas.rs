//! Several scheduler replicas on one database.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use nix::sys::signal::Signal;
use regsweep_integration_tests::{Scheduler, TestDb, Worker, wait_until};
use regsweep_proto::v1::{self, JobStatus};
use serde_json::json;

use crate::{create, wait_status};

const LEASE: &str = "2s";

async fn replica(name: &str, db: &TestDb) -> Scheduler {
    Scheduler::start_named(name, db, &["--leader-lease", LEASE]).await
}

#[tokio::test]
async fn a_killed_leader_is_replaced_within_one_lease() {
    let db = TestDb::create().await;
    let a = replica("a", &db).await;
    a.process.wait_for_message("became leader", Duration::from_secs(10)).await;
    let b = replica("b", &db).await;

    a.process.signal(Signal::SIGKILL);
    let killed = Instant::now();
    // One lease, plus the tenth of a lease the others wait between tries.
    b.process.wait_for_message("became leader", Duration::from_millis(2000 + 200 + 500)).await;
    println!("leader replaced after {:?}", killed.elapsed());
}

#[tokio::test]
async fn cancel_reaches_a_worker_connected_to_another_replica() {
    let db = TestDb::create().await;
    let a = replica("a", &db).await;
    let b = replica("b", &db).await;
    let _worker = Worker::start(&a, "w", &[]).await;
    let mut via_a = a.jobs().await;
    let mut via_b = b.jobs().await;
    let job = create(&mut via_a, "sleep", json!({"seconds": 60})).await;
    wait_status(&via_a, job.id, JobStatus::Running, Duration::from_secs(10)).await;
    via_b
        .cancel_job(v1::CancelJobRequest { id: job.id, reason: "from b".into() })
        .await
        .expect("cancel through b");
    let cancelled = wait_status(&via_b, job.id, JobStatus::Cancel, Duration::from_secs(2)).await;
    assert_eq!(cancelled.last_error, "from b");
}

#[tokio::test]
async fn a_cron_every_second_fires_once_per_second_across_two_replicas() {
    let db = TestDb::create().await;
    let a = replica("a", &db).await;
    let b = replica("b", &db).await;
    let mut crons =
        regsweep_proto::v1::cron_service_client::CronServiceClient::new(a.channel().await);
    let cron = v1::Cron {
        name: "tick".into(),
        schedule: "* * * * * *".into(),
        kind: "sleep".into(),
        args: Some(regsweep_proto::json_to_struct(json!({"seconds": 0}))),
        ..Default::default()
    };
    crons.create_cron(v1::CreateCronRequest { cron: Some(cron) }).await.expect("create cron");
    // Fail over half-way: firings continue, still once each.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let leader = if a.process.logs().iter().any(|l| l.contains("became leader")) { &a } else { &b };
    leader.process.signal(Signal::SIGKILL);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let survivor = if std::ptr::eq(leader, &a) { &b } else { &a };
    let mut crons =
        regsweep_proto::v1::cron_service_client::CronServiceClient::new(survivor.channel().await);
    let mut disable = v1::Cron { name: "tick".into(), disabled: true, ..Default::default() };
    disable.name = "tick".into();
    crons
        .update_cron(v1::UpdateCronRequest {
            cron: Some(disable),
            update_mask: vec!["disabled".into()],
        })
        .await
        .expect("disable");

    let pool = db.scheduler_pool().await;
    let keys: Vec<(String,)> = sqlx::query_as(
        "SELECT unique_key FROM jobs WHERE unique_key LIKE 'cron:tick:%' ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .expect("jobs");
    let seconds: Vec<i64> = keys
        .iter()
        .map(|(k,)| {
            k.rsplit(':').next().and_then(|m| m.parse::<i64>().ok()).expect("micros") / 1_000_000
        })
        .collect();
    let distinct: BTreeSet<i64> = seconds.iter().copied().collect();
    assert_eq!(distinct.len(), seconds.len(), "a second fired twice: {seconds:?}");
    // Ten seconds, minus at most the failover gap (one lease).
    assert!((7..=11).contains(&seconds.len()), "{} firings: {seconds:?}", seconds.len());
}

#[tokio::test]
async fn five_thousand_jobs_survive_a_killed_replica_and_a_killed_worker() {
    let db = TestDb::create().await;
    let a = replica("a", &db).await;
    let b = replica("b", &db).await;
    let urls_ab = format!("{},{}", a.url, b.url);
    let urls_ba = format!("{},{}", b.url, a.url);
    let mut workers = Vec::new();
    for (i, urls) in [&urls_ab, &urls_ba, &urls_ab, &urls_ba].into_iter().enumerate() {
        let worker = Worker::spawn(urls, &format!("w{i}"), &["--capacity", "sleep=16"]);
        worker.process.wait_for_message("registered with scheduler", Duration::from_secs(30)).await;
        workers.push(worker);
    }
    let jobs = b.jobs().await;
    let created: Vec<i64> = futures::stream::iter(0..5000)
        .map(|_| {
            let mut jobs = jobs.clone();
            async move { create(&mut jobs, "sleep", json!({"seconds": 0.01})).await.id }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    assert_eq!(created.len(), 5000);

    let pool = db.scheduler_pool().await;
    let count_done = |pool: sqlx::PgPool| async move {
        let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM jobs WHERE status = 'done'")
            .fetch_one(&pool)
            .await
            .expect("count");
        n
    };
    wait_until("a third done", Duration::from_secs(60), || {
        let pool = pool.clone();
        async move { (count_done(pool).await >= 1500).then_some(()) }
    })
    .await;
    a.process.signal(Signal::SIGKILL);
    workers[1].signal(Signal::SIGKILL);

    wait_until("all 5000 done", Duration::from_secs(120), || {
        let pool = pool.clone();
        async move { (count_done(pool).await == 5000).then_some(()) }
    })
    .await;
    // Every earlier attempt of every job is recorded as taken back (lost or
    // given back), so only the last attempt completed it.
    let (inconsistent,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM jobs WHERE jsonb_array_length(errors) + given_back <> attempt - 1",
    )
    .fetch_one(&pool)
    .await
    .expect("count");
    assert_eq!(inconsistent, 0);
    let (rerun,): (i64,) = sqlx::query_as("SELECT count(*) FROM jobs WHERE attempt > 1")
        .fetch_one(&pool)
        .await
        .expect("count");
    println!("{rerun} jobs needed more than one attempt");
    let (total,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM jobs").fetch_one(&pool).await.expect("count");
    assert_eq!(total, 5000);
}
