//! Workers that crash, freeze, come back, or lose their scheduler.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use regsweep_integration_tests::raw::{credit, update};
use regsweep_integration_tests::tcpproxy::TcpProxy;
use regsweep_integration_tests::{RawWorker, Scheduler, TestDb, Worker, wait_until};
use regsweep_proto::v1::{self, JobStatus, WorkerStatus, connect_response::Message as In};
use serde_json::json;

use crate::{create, get, wait_status};

/// Heartbeat TTL the test schedulers use (`Scheduler::start`).
const TTL: Duration = Duration::from_secs(3);

/// A worker (one `sleep` slot) that reaches `scheduler` through a proxy
/// the test can stall or cut; registered.
async fn behind_a_proxy(scheduler: &Scheduler, name: &str) -> (TcpProxy, Worker) {
    let proxy = TcpProxy::start(scheduler.url.trim_start_matches("http://")).await;
    let worker =
        Worker::spawn(&format!("http://{}", proxy.addr()), name, &["--capacity", "sleep=1"]);
    worker.process.wait_for_message("registered with scheduler", Duration::from_secs(20)).await;
    (proxy, worker)
}

fn attempt_errors(job: &v1::Job) -> Vec<(u32, &str)> {
    job.errors.iter().map(|e| (e.attempt, e.error.as_str())).collect()
}

#[tokio::test]
async fn a_killed_workers_job_is_reclaimed_within_ttl_plus_two_seconds() {
    let db = TestDb::create().await;
    let scheduler = Scheduler::start(&db, &[]).await;
    let mut jobs = scheduler.jobs().await;
    let first = Worker::start(&scheduler, "first", &["--capacity", "sleep=1"]).await;
    let job = create(&mut jobs, "sleep", json!({"seconds": 2})).await;
    let running = wait_status(&jobs, job.id, JobStatus::Running, Duration::from_secs(10)).await;
    let second = Worker::start(&scheduler, "second", &["--capacity", "sleep=1"]).await;

    first.signal(Signal::SIGKILL);
    let killed = Instant::now();
    let reclaimed = wait_until("the job to be claimed again", TTL + Duration::from_secs(2), || {
        let mut jobs = jobs.clone();
        async move {
            let job = get(&mut jobs, job.id).await;
            (job.attempt == 2).then_some(job)
        }
    })
    .await;
    println!("kill to re-claim: {:?}", killed.elapsed());
    assert_ne!(reclaimed.worker_id, running.worker_id);
    // It went through worker_dead: the first attempt is recorded as lost.
    assert_eq!(attempt_errors(&reclaimed), [(1, "worker heartbeat expired")]);

    let done = wait_status(&jobs, job.id, JobStatus::Done, Duration::from_secs(10)).await;
    assert_eq!(done.attempt, 2);
    let workers = jobs
        .list_workers(v1::ListWorkersRequest { include_gone: true, ..Default::default() })
        .await
        .expect("workers")
        .into_inner()
        .workers;
    let dead = workers.iter().find(|w| w.id == running.worker_id).expect("first worker listed");
    assert_eq!(dead.status(), WorkerStatus::Dead);
    drop(second);
}

#[tokio::test]
async fn a_frozen_worker_that_thaws_has_its_late_report_rejected() {
    let db = TestDb::create().await;
    let scheduler = Scheduler::start(&db, &[]).await;
    let mut jobs = scheduler.jobs().await;
    let stale = Worker::start(&scheduler, "stale", &["--capacity", "sleep=1"]).await;
    let job = create(&mut jobs, "sleep", json!({"seconds": 2})).await;
    let first = wait_status(&jobs, job.id, JobStatus::Running, Duration::from_secs(10)).await;

    stale.signal(Signal::SIGSTOP);
    let fresh = Worker::start(&scheduler, "fresh", &["--capacity", "sleep=1"]).await;
    let second = wait_until("the job to run again", TTL + Duration::from_secs(5), || {
        let mut jobs = jobs.clone();
        async move {
            let job = get(&mut jobs, job.id).await;
            (job.attempt == 2 && job.status() == JobStatus::Running).then_some(job)
        }
    })
    .await;
    assert_ne!(second.worker_id, first.worker_id);

    // Thawed, the stale worker ends attempt 1 (its sleep is long over, or
    // the scheduler cancels it if a heartbeat showing it running gets there
    // first) and reports that end: refused, since attempt 2 holds the job.
    stale.signal(Signal::SIGCONT);
    stale
        .process
        .wait_for_log("the stale attempt to end", Duration::from_secs(10), |line| {
            line["message"] == "attempt ended"
        })
        .await;

    let done = wait_status(&jobs, job.id, JobStatus::Done, Duration::from_secs(10)).await;
    assert_eq!((done.attempt, done.worker_id.as_str()), (2, second.worker_id.as_str()));
    assert_eq!(attempt_errors(&done), [(1, "worker heartbeat expired")]);
    // Had the late report been taken, the job would have ended when the
    // stale worker thawed, right after attempt 2 began, not once attempt 2
    // slept its two seconds. (The two times are the flushes of attempt 2's
    // `running` and `done`, each a batch late by a few milliseconds, so
    // exactly 2 s is no bound: a run measured 1.999 s.)
    let ran = seconds(done.finished_at.as_ref()) - seconds(done.started_at.as_ref());
    assert!(ran >= 1.5, "the job ended {ran:.3}s into attempt 2, not after its sleep");
    drop(fresh);
}

#[tokio::test]
async fn a_dead_worker_coming_back_holds_its_job_until_it_acknowledges_the_cancel() {
    let db = TestDb::create().await;
    let scheduler = Scheduler::start(&db, &[]).await;
    let mut jobs = scheduler.jobs().await;
    let mut stale = RawWorker::connect(&scheduler, "stale", &[("sleep", 1)]).await;
    let job = create(&mut jobs, "sleep", json!({"seconds": 60})).await;
    stale.send(credit("sleep", 1)).await;
    let In::Assign(_) = stale.next().await else { panic!("expected assign") };
    stale.send(update(job.id, 1, JobStatus::Running)).await;

    // No heartbeat: declared dead after the TTL, its job waits.
    wait_status(&jobs, job.id, JobStatus::WorkerDead, TTL + Duration::from_secs(5)).await;
    drop(stale.rx);

    // It comes back still running attempt 1: the job is held back and the
    // run is cancelled.
    let hello = v1::Hello {
        name: "stale".into(),
        capacity: [("sleep".to_string(), 1)].into_iter().collect(),
        resume_worker_id: stale.id.clone(),
        running: vec![v1::RunningJob { job_id: job.id, attempt: 1, progress: 0.5 }],
        ..Default::default()
    };
    let mut back = RawWorker::hello(&scheduler, hello).await;
    assert_eq!(back.id, stale.id, "same worker id");
    let In::Cancel(cancel) = back.next().await else { panic!("expected cancel") };
    assert_eq!((cancel.job_id, cancel.attempt), (job.id, 1));
    assert_eq!(cancel.reason, "worker was declared dead");
    assert_eq!(get(&mut jobs, job.id).await.status(), JobStatus::WorkerResurrection);

    // A healthy worker does not take it while the cancel is unanswered...
    let _fresh = Worker::start(&scheduler, "fresh", &["--capacity", "sleep=1"]).await;
    let probe = create(&mut jobs, "sleep", json!({"seconds": 0})).await;
    wait_status(&jobs, probe.id, JobStatus::Done, Duration::from_secs(10)).await;
    assert_eq!(get(&mut jobs, job.id).await.status(), JobStatus::WorkerResurrection);

    // ...and does once the stale run acknowledged its cancel.
    back.send(update(job.id, 1, JobStatus::Cancel)).await;
    let rerun = wait_until("attempt 2", Duration::from_secs(10), || {
        let mut jobs = jobs.clone();
        async move {
            let job = get(&mut jobs, job.id).await;
            (job.attempt == 2 && job.status() == JobStatus::Running).then_some(job)
        }
    })
    .await;
    assert_ne!(rerun.worker_id, stale.id);
    assert_eq!(attempt_errors(&rerun), [(1, "worker heartbeat expired")]);
}

#[tokio::test]
async fn a_worker_keeps_its_job_across_a_scheduler_restart() {
    let db = TestDb::create().await;
    let scheduler = Scheduler::start(&db, &[]).await;
    let addr = scheduler.addr().to_string();
    let mut jobs = scheduler.jobs().await;
    let worker = Worker::start(&scheduler, "w", &["--capacity", "sleep=1"]).await;
    let job = create(&mut jobs, "sleep", json!({"seconds": 3})).await;
    let running = wait_status(&jobs, job.id, JobStatus::Running, Duration::from_secs(10)).await;

    let mut scheduler = scheduler;
    scheduler.process.signal(Signal::SIGTERM);
    assert!(scheduler.process.wait_exit(Duration::from_secs(15)).await.success());
    let restarted = Scheduler::start_on("restarted", &db, &addr, &[]).await;
    let mut jobs = restarted.jobs().await;

    // Resumed before its heartbeat expired: same worker, same attempt.
    let done = wait_status(&jobs, job.id, JobStatus::Done, Duration::from_secs(15)).await;
    assert_eq!((done.attempt, done.worker_id.as_str()), (1, running.worker_id.as_str()));
    assert!(done.errors.is_empty());
    let job = get(&mut jobs, job.id).await;
    assert_eq!(job.attempt, 1);
    drop(worker);
}

fn seconds(at: Option<&regsweep_proto::pbjson_types::Timestamp>) -> f64 {
    let at = at.expect("timestamp set");
    at.seconds as f64 + f64::from(at.nanos) / 1e9
}

/// A worker cut off from its scheduler gets no heartbeat acked: it gives
/// its attempt back before the scheduler could declare it dead, so the
/// attempt that replaces it never runs beside it; its late report, once
/// the partition heals, changes nothing.
#[tokio::test]
async fn a_partitioned_worker_gives_its_attempt_back_before_it_runs_elsewhere() {
    let db = TestDb::create().await;
    let scheduler = Scheduler::start(&db, &[]).await;
    let mut jobs = scheduler.jobs().await;
    let (proxy, cut_off) = behind_a_proxy(&scheduler, "cut-off").await;
    let job = create(&mut jobs, "sleep", json!({"seconds": 600})).await;
    let first = wait_status(&jobs, job.id, JobStatus::Running, Duration::from_secs(10)).await;

    proxy.down();
    let gave_back = cut_off
        .process
        .wait_for_log("the attempt given back", TTL + Duration::from_secs(5), |line| {
            line["message"] == "no heartbeat acknowledged in time: giving the attempt back"
        })
        .await;
    let fresh = Worker::start(&scheduler, "fresh", &["--capacity", "sleep=1"]).await;
    let second = wait_until("the job to run again", TTL + Duration::from_secs(10), || {
        let mut jobs = jobs.clone();
        async move {
            let job = get(&mut jobs, job.id).await;
            (job.attempt == 2 && job.status() == JobStatus::Running).then_some(job)
        }
    })
    .await;
    assert_ne!(second.worker_id, first.worker_id);
    let stopped_at =
        chrono::DateTime::parse_from_rfc3339(gave_back["timestamp"].as_str().expect("timestamp"))
            .expect("rfc3339 timestamp");
    let claimed = second.claimed_at.as_ref().expect("claimed_at");
    let claimed = chrono::DateTime::from_timestamp(
        claimed.seconds,
        u32::try_from(claimed.nanos).unwrap_or(0),
    )
    .expect("claimed_at in range");
    assert!(
        stopped_at < claimed,
        "the cut-off worker stopped at {stopped_at}, after attempt 2 was claimed at {claimed}"
    );

    // Healed, it reports attempt 1 given back: refused, attempt 2 runs on.
    proxy.up();
    // Back in a new session, its replayed report flushed: a heartbeat of
    // that session, sent after the report, was written.
    wait_until("the cut-off worker to heartbeat again", Duration::from_secs(30), || {
        let mut jobs = jobs.clone();
        let id = first.worker_id.clone();
        async move {
            let request = v1::ListWorkersRequest { include_gone: true, ..Default::default() };
            let workers = jobs.list_workers(request).await.ok()?.into_inner().workers;
            let w = workers.into_iter().find(|w| w.id == id)?;
            let seconds = |t: Option<&regsweep_proto::pbjson_types::Timestamp>| {
                t.map(|t| (t.seconds, t.nanos))
            };
            (w.session_epoch >= 2
                && seconds(w.last_heartbeat.as_ref()) > seconds(w.connected_at.as_ref()))
            .then_some(())
        }
    })
    .await;
    let now = get(&mut jobs, job.id).await;
    assert_eq!(
        (now.status(), now.attempt, now.worker_id.as_str()),
        (JobStatus::Running, 2, second.worker_id.as_str())
    );
    assert_eq!(attempt_errors(&now), [(1, "worker heartbeat expired")]);
    drop(fresh);
}

/// The end of an attempt handed to a stream that breaks before the
/// scheduler got it is not lost with the stream: the worker sends it again
/// on its next one, announced in its Hello, so the attempt is not taken as
/// lost and run again; it ends `done` once.
#[tokio::test]
async fn an_end_cut_off_with_its_stream_is_sent_again_and_costs_no_attempt() {
    let db = TestDb::create().await;
    // A TTL that the stall and the reconnection stay well inside.
    let flags = ["--heartbeat-ttl", "10s"];
    let scheduler = Scheduler::start(&db, &flags).await;
    let mut jobs = scheduler.jobs().await;
    let (proxy, worker) = behind_a_proxy(&scheduler, "cut").await;
    let job = create(&mut jobs, "sleep", json!({"seconds": 1})).await;
    // Running (the assignment arrived), not just claimed.
    worker.process.wait_for_message("assigned", Duration::from_secs(10)).await;

    // Its end goes into a connection that holds every byte, then breaks.
    proxy.stall();
    worker.process.wait_for_message("end of attempt sent", Duration::from_secs(20)).await;
    proxy.down();
    // Gone with the connection (the worker saw it close), not let through.
    worker.process.wait_for_message("scheduler stream lost", Duration::from_secs(20)).await;
    proxy.resume();
    proxy.up();

    let done = wait_status(&jobs, job.id, JobStatus::Done, Duration::from_secs(30)).await;
    assert_eq!((done.attempt, attempt_errors(&done)), (1, vec![]), "the attempt ran once");
    // It came on the new stream, announced.
    scheduler
        .process
        .wait_for_log("the end announced on reconnection", Duration::from_secs(10), |line| {
            line["message"] == "worker connected" && line["ending"] == 1 && line["resumed"] == true
        })
        .await;
    // And was recorded: the worker, drained, leaves at once.
    worker.signal(Signal::SIGTERM);
    worker.process.wait_for_message("drained, exiting", Duration::from_secs(10)).await;
}
