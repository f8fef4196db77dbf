//! An outage is not a death: PostgreSQL taken away (every connection cut,
//! new ones turned away, by a TCP proxy in front of the real server) for
//! longer than the heartbeat TTL and the leader lease, while two workers
//! run long jobs over streams that never drop. No live worker is declared
//! dead, none stops its attempts for want of heartbeat acks (the leader
//! vouches for heartbeats it cannot write), and no attempt is spent; a
//! worker that really died during the outage is still found dead
//! afterwards.

use std::time::Duration;

use nix::sys::signal::Signal;
use regsweep_integration_tests::db::{hold_rows, wait_held};
use regsweep_integration_tests::tcpproxy::TcpProxy;
use regsweep_integration_tests::{Scheduler, TestDb, Worker, wait_until};
use regsweep_proto::v1::{self, JobStatus};
use serde_json::json;

use crate::{create, get, wait_started, wait_status};

/// The outage: longer than the TTL (5 s) and than the lease (5 s), so
/// every heartbeat in it goes unwritten and the leader steps down; shorter
/// than the lease plus the TTL less the workers' margin (about 7.3 s from
/// the outage's start at worst), so the leader vouches for the workers
/// until it leads again and they keep their attempts. (Past that a worker
/// gives its attempts back: `liveness::a_partitioned_worker_...`.)
const OUTAGE: Duration = Duration::from_secs(6);

#[tokio::test(flavor = "multi_thread")]
async fn a_database_outage_longer_than_the_ttl_declares_no_live_worker_dead() {
    let db = TestDb::postgres().await;
    let (proxy, url) = TcpProxy::in_front_of_database(&db.url).await;
    let flags = ["--heartbeat-interval", "1s", "--heartbeat-ttl", "5s", "--leader-lease", "5s"];
    let scheduler = Scheduler::launch("scheduler", &url, &flags, true).await;
    let steady = Worker::start(&scheduler, "steady", &["--capacity", "sleep=2"]).await;
    let doomed = Worker::start(&scheduler, "doomed", &["--capacity", "sleep=2"]).await;
    let mut jobs = scheduler.jobs().await;
    let mut running = Vec::new();
    for _ in 0..4 {
        let job = create(&mut jobs, "sleep", json!({"seconds": 600})).await;
        running.push(wait_started(&jobs, job.id, Duration::from_secs(20)).await);
    }
    let epochs = sessions(&scheduler).await;
    eprintln!("workers before the outage: {epochs:?}");

    proxy.down();
    // The outage is the input: a span of time, not an event to await.
    tokio::time::sleep(OUTAGE).await;
    proxy.up();

    // A death during the outage is still a death: the reaper, held until
    // the database has been steady for a TTL, finds it afterwards.
    doomed.signal(Signal::SIGKILL);
    let doomed_id = epochs.iter().find(|(name, ..)| name == "doomed").expect("doomed").1.clone();
    wait_until("the killed worker to be declared dead", Duration::from_secs(30), || {
        let scheduler = &scheduler;
        let doomed_id = doomed_id.clone();
        async move {
            let workers = list_workers(scheduler).await?;
            let dead = workers.iter().find(|w| w.id == doomed_id)?;
            (dead.status() == v1::WorkerStatus::Dead).then_some(())
        }
    })
    .await;

    // The worker that lived through the outage never died: same session,
    // its jobs on their first attempt with no error.
    let now = sessions(&scheduler).await;
    let steady_before = epochs.iter().find(|(name, ..)| name == "steady").expect("steady");
    let steady_now = now.iter().find(|(name, ..)| name == "steady").expect("steady");
    assert_eq!(steady_now, steady_before, "the live worker kept its session");
    assert_eq!(steady_now.2, v1::WorkerStatus::Alive);
    for job in &running {
        let current = get(&mut jobs, job.id).await;
        if current.worker_id == steady_now.1 {
            assert_eq!(current.status(), JobStatus::Running, "{current:?}");
            assert_eq!(current.attempt, 1, "no attempt spent by the outage: {current:?}");
            assert!(current.errors.is_empty(), "{current:?}");
        }
    }
    let kept = running.iter().filter(|j| j.worker_id == steady_now.1).count();
    assert_eq!(kept, 2, "the steady worker ran two of the jobs");
    // The leader stepped down and led again: its in-process runner resumed
    // its worker id rather than leaving a dead one behind.
    let runners: Vec<_> = now.iter().filter(|(name, ..)| name.starts_with("scheduler-")).collect();
    assert_eq!(runners.len(), 1, "{now:?}");
    assert_eq!(runners[0].2, v1::WorkerStatus::Alive, "{now:?}");
    drop(steady);
}

async fn list_workers(scheduler: &Scheduler) -> Option<Vec<v1::WorkerInfo>> {
    let mut jobs = scheduler.jobs().await;
    let request = v1::ListWorkersRequest { include_gone: true, ..Default::default() };
    let listed = jobs.list_workers(request).await.ok()?;
    Some(listed.into_inner().workers)
}

/// (name, id, status, session epoch) of every worker.
async fn sessions(scheduler: &Scheduler) -> Vec<(String, String, v1::WorkerStatus, u64)> {
    let workers = list_workers(scheduler).await.expect("list workers");
    workers
        .into_iter()
        .map(|w| (w.name.clone(), w.id.clone(), w.status(), w.session_epoch))
        .collect()
}

/// A leader whose database hangs (its renewal neither fails nor answers)
/// stops leading at its local deadline, before another replica can take
/// the lease; the other takes it once the lease ran out; and when the hung
/// connections wake, the old leader does not lead again.
#[tokio::test(flavor = "multi_thread")]
async fn a_leader_whose_renewal_hangs_steps_down_before_another_leads() {
    let db = TestDb::postgres().await;
    let (proxy, hung_url) = TcpProxy::in_front_of_database(&db.url).await;
    let flags = ["--heartbeat-interval", "1s", "--heartbeat-ttl", "3s", "--leader-lease", "3s"];
    let first = Scheduler::launch("first", &hung_url, &flags, true).await;
    first.process.wait_for_message("became leader", Duration::from_secs(10)).await;
    let second = Scheduler::launch("second", &db.url, &flags, true).await;

    proxy.stall();
    let stalled = std::time::Instant::now();
    let stepped_down = first
        .process
        .wait_for_message("stepping down: lease not renewed in time", Duration::from_secs(10))
        .await;
    let gave_up_after = stalled.elapsed();
    let took_over = second.process.wait_for_message("became leader", Duration::from_secs(15)).await;
    let at = |line: &serde_json::Value| {
        chrono::DateTime::parse_from_rfc3339(line["timestamp"].as_str().expect("timestamp"))
            .expect("rfc3339 timestamp")
    };
    // What matters is the order, read from the processes' own clocks: a
    // wall-clock bound here would measure this test's load, not the leader.
    eprintln!("stalled to stepping down: {gave_up_after:?}");
    assert!(
        at(&stepped_down) < at(&took_over),
        "the hung leader stepped down at {} after the other took over at {}",
        at(&stepped_down),
        at(&took_over)
    );

    // Woken, its queued calls answer; the lease is the other's now, and
    // the old leader, trying again every tenth of a lease, stays out.
    proxy.resume();
    second.process.wait_for_message("reaping resumed", Duration::from_secs(15)).await;
    let led = first.process.logs().iter().filter(|l| l.contains("\"became leader\"")).count();
    assert_eq!(led, 1, "the old leader led again");
}

/// A claim that committed but whose answer was lost (its connection cut
/// while the server ran it) is read again by its token and handed out at
/// once: the job runs on the attempt the claim took, nothing given back.
/// Without the reread the job would wait for its worker's heartbeats to
/// omit it for a whole TTL, then be given back and run as attempt 2.
#[tokio::test(flavor = "multi_thread")]
async fn a_claim_whose_answer_is_lost_is_handed_out_on_its_first_attempt() {
    let db = TestDb::postgres().await;
    let direct = db.scheduler_pool().await;
    let (proxy, url) = TcpProxy::in_front_of_database(&db.url).await;
    let flags =
        ["--heartbeat-interval", "1s", "--heartbeat-ttl", "15s", "--poll-interval", "200ms"];
    let scheduler = Scheduler::launch("scheduler", &url, &flags, true).await;
    // Claims of `sleep` jobs take a second in the database, long enough to
    // cut their connection while they run.
    let when = "NEW.status = 'running' AND NEW.kind = 'sleep'";
    hold_rows(&direct, "slow_claim", "UPDATE OF status ON jobs", when, 1.0).await;
    let _worker = Worker::start(&scheduler, "w", &["--capacity", "sleep=1"]).await;
    let mut jobs = scheduler.jobs().await;
    let id = create(&mut jobs, "sleep", json!({"seconds": 0.2})).await.id;
    wait_held(&direct, "the claim to run").await;
    // The dispatcher's connection dies; the claim runs on and commits.
    proxy.sever();

    let done = wait_status(&jobs, id, JobStatus::Done, Duration::from_secs(60)).await;
    assert_eq!(done.attempt, 1, "handed out on the attempt its claim took: {done:?}");
    assert!(done.errors.is_empty(), "{done:?}");
    let given_back: i32 = sqlx::query_scalar("SELECT given_back FROM jobs WHERE id = $1")
        .bind(id)
        .fetch_one(&direct)
        .await
        .expect("given_back");
    assert_eq!(given_back, 0, "nothing given back");
    assert_eq!(get(&mut jobs, id).await.status(), JobStatus::Done);
    scheduler
        .process
        .wait_for_message("a failed claim had committed", Duration::from_secs(5))
        .await;
}
