//! The job queue: claims, fencing, state transitions, crons, leases and
//! retention.

use std::collections::HashSet;
use std::time::Duration;

use chrono::Utc;
use regsweep_common::Shutdown;
use regsweep_integration_tests::wait_until;
use regsweep_proto::v1::JobStatus;
use regsweep_scheduler::schedule::next_after;
use regsweep_scheduler::store::{
    CancelOutcome, ClaimSlot, CreateOutcome, Fence, HeartbeatWrite, JOB_RETRY, JobRecord,
    LogCursor, LogLine, LogWrite, NewCron, RunningJob, SessionRef, StoreEvent, UpdateWrite,
    WorkerHello, WriteBatch,
};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::{Fixture, TTL, new_job};

pub async fn concurrent_claims_never_share_a_job(f: Fixture) {
    for _ in 0..300 {
        f.job("k").await;
    }
    let mut sessions = Vec::new();
    for _ in 0..6 {
        sessions.push(f.worker(&["k"], TTL).await);
    }
    let mut tasks = Vec::new();
    for session in sessions {
        let jobs = f.stores.jobs.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let claimed = jobs
                    .claim("k", &[ClaimSlot { session }; 7], Uuid::new_v4())
                    .await
                    .expect("claim");
                if claimed.is_empty() {
                    return mine;
                }
                assert!(claimed.iter().all(|j| j.worker_id == Some(session.worker_id)));
                mine.extend(claimed.into_iter().map(|j| j.id));
            }
        }));
    }
    let mut seen = HashSet::new();
    for task in tasks {
        for id in task.await.expect("claimer") {
            assert!(seen.insert(id), "job {id} was claimed twice");
        }
    }
    assert_eq!(seen.len(), 300, "every job is claimed");
}

pub async fn claims_follow_priority_and_skip_jobs_not_yet_due(f: Fixture) {
    let low = f.job("k").await;
    let high = f.create(new_job_with_priority(5)).await;
    let mut later = new_job_with_priority(9);
    later.scheduled_at = Some(Utc::now() + chrono::Duration::hours(1));
    let later = f.create(later).await;
    let session = f.worker(&["k"], TTL).await;
    let claimed: Vec<i64> = f.claim("k", session, 3).await.iter().map(|j| j.id).collect();
    assert_eq!(claimed, vec![high.id, low.id], "priority first; the future job waits");
    let job = f.get(later.id).await;
    assert_eq!(job.status, JobStatus::Waiting);
    let running = f.get(high.id).await;
    assert_eq!((running.status, running.attempt), (JobStatus::Running, 1));
}

fn new_job_with_priority(priority: i32) -> regsweep_scheduler::store::NewJob {
    regsweep_scheduler::store::NewJob { priority, ..new_job("k") }
}

/// What a claim took can be read again by its token (what a dispatcher
/// does when the claim's answer was lost): only that claim's jobs, only on
/// the workers named, and only while they run.
pub async fn a_claim_is_read_again_by_its_token_while_its_jobs_run(f: Fixture) {
    let (first, second, other) = (f.job("k").await, f.job("k").await, f.job("k").await);
    let session = f.worker(&["k"], TTL).await;
    let token = Uuid::new_v4();
    let slots = [ClaimSlot { session }; 2];
    let claimed = f.jobs().claim("k", &slots, token).await.expect("claim");
    let ids = |jobs: &[JobRecord]| jobs.iter().map(|j| j.id).collect::<Vec<_>>();
    assert_eq!(ids(&claimed), [first.id, second.id]);
    assert_eq!(f.claim("k", session, 1).await[0].id, other.id, "another claim, another token");
    let again = f.jobs().claimed(token, &[session.worker_id]).await.expect("read");
    assert_eq!(ids(&again), [first.id, second.id]);
    assert_eq!((again[0].attempt, again[0].worker_id), (1, Some(session.worker_id)));
    let elsewhere = f.jobs().claimed(token, &[Uuid::new_v4()]).await.expect("read");
    assert!(elsewhere.is_empty(), "only on the workers named");
    assert!(f.jobs().claimed(Uuid::new_v4(), &[session.worker_id]).await.unwrap().is_empty());
    f.update(session, &claimed[0], JobStatus::Done, None).await;
    let CancelOutcome::Requested(_) = f.jobs().cancel_job(second.id, "stop").await.unwrap() else {
        panic!("a running job's cancel is requested");
    };
    let ended = f.jobs().claimed(token, &[session.worker_id]).await.expect("read");
    assert!(ended.is_empty(), "done and cancel-requested jobs are not handed out: {ended:?}");
}

pub async fn only_current_sessions_get_jobs(f: Fixture) {
    f.job("k").await;
    let first = f.worker(&["k"], TTL).await;
    let hello = WorkerHello {
        name: "w".into(),
        version: "test".into(),
        capacity: [("k".to_string(), serde_json::json!(1))].into_iter().collect(),
        resume_worker_id: Some(first.worker_id),
        running: Vec::new(),
        ending: Vec::new(),
        end_acks: false,
    };
    let again = f.jobs().register_worker(&hello, TTL).await.expect("resume");
    assert!(again.resumed);
    assert_eq!(again.worker_id, first.worker_id);
    assert!(again.epoch > first.epoch);
    assert!(f.claim("k", first, 1).await.is_empty(), "a superseded session gets nothing");
    let current = SessionRef { worker_id: again.worker_id, epoch: again.epoch };
    assert!(f.jobs().set_draining(current).await.expect("drain"));
    assert!(f.claim("k", current, 1).await.is_empty(), "a draining session gets nothing");
    let other = f.worker(&["k"], TTL).await;
    assert_eq!(f.claim("k", other, 1).await.len(), 1);
}

pub async fn updates_are_fenced_by_attempt_and_worker(f: Fixture) {
    f.job("k").await;
    let owner = f.worker(&["k"], TTL).await;
    let intruder = f.worker(&["k"], TTL).await;
    let job = f.claim("k", owner, 1).await.remove(0);

    // Refused either way; only an attempt said to run needs a cancel (one
    // said to have ended stopped already).
    let outcome = f.update(intruder, &job, JobStatus::Running, None).await;
    assert_eq!(outcome.stale.len(), 1, "another worker's update is stale");
    let outcome = f.update(intruder, &job, JobStatus::Done, None).await;
    assert!(outcome.stale.is_empty(), "an ended attempt needs no cancel");
    let mut old = job.clone();
    old.attempt += 1;
    let outcome = f.update(owner, &old, JobStatus::Running, None).await;
    assert_eq!(outcome.stale.len(), 1, "another attempt's update is stale");
    let outcome = f.update(owner, &old, JobStatus::Done, None).await;
    assert!(outcome.stale.is_empty(), "an ended attempt needs no cancel");
    assert_eq!(f.get(job.id).await.status, JobStatus::Running);

    let result = serde_json::json!({"deleted_count": 3});
    let outcome = f.update(owner, &job, JobStatus::Done, Some(result.clone())).await;
    assert!(outcome.stale.is_empty());
    let done = f.get(job.id).await;
    assert_eq!((done.status, done.result, done.progress), (JobStatus::Done, Some(result), 1.0));
    assert!(done.finished_at.is_some());
    let late = f.update(owner, &job, JobStatus::Error, None).await;
    assert!(late.stale.is_empty(), "it ended: no cancel");
    let late = f.update(owner, &job, JobStatus::Running, None).await;
    assert_eq!(late.stale.len(), 1, "a finished attempt takes no more updates");
    assert_eq!(f.get(job.id).await.status, JobStatus::Done);
}

/// Each retry waits its step of `JOB_RETRY` (1 s, then 2 s), jittered
/// to between half the step and the step, on both stores, and is not
/// claimed a moment before it is due.
pub async fn retryable_errors_wait_then_end_when_attempts_run_out(f: Fixture) {
    let created =
        f.create(regsweep_scheduler::store::NewJob { max_attempts: 3, ..new_job("k") }).await;
    let session = f.worker(&["k"], TTL).await;
    for attempt in 1..=3 {
        let job = f.claim("k", session, 1).await.pop().expect("due");
        assert_eq!((job.id, job.attempt), (created.id, attempt));
        let update = UpdateWrite {
            worker_id: session.worker_id,
            job_id: job.id,
            attempt,
            status: JobStatus::Error,
            progress: 0.0,
            result: None,
            error: Some(format!("failure {attempt}")),
            retryable: true,
        };
        f.write(WriteBatch { updates: vec![update], ..Default::default() }).await;
        let job = f.get(job.id).await;
        if attempt < 3 {
            assert_eq!(job.status, JobStatus::Waiting);
            let now = f.clock.now();
            let step = chrono::Duration::from_std(JOB_RETRY.step(attempt - 1)).unwrap();
            let (earliest, latest) = (now + step / 2, now + step);
            assert!(
                earliest <= job.scheduled_at && job.scheduled_at <= latest,
                "retry {attempt} due at {}, not within {earliest}..{latest}",
                job.scheduled_at
            );
            let until_due = (job.scheduled_at - now).to_std().unwrap();
            f.clock.advance(until_due - Duration::from_millis(1));
            assert!(f.claim("k", session, 1).await.is_empty(), "not due yet");
            f.clock.advance(Duration::from_millis(1));
        } else {
            assert_eq!(job.status, JobStatus::Error);
            assert_eq!(job.last_error.as_deref(), Some("failure 3"));
        }
        assert_eq!(job.errors.as_array().map(Vec::len), Some(attempt as usize));
    }
}

pub async fn expired_workers_lose_their_attempts_and_cancels_end(f: Fixture) {
    let running = f.job("k").await;
    let cancelled = f.job("k").await;
    let session = f.worker(&["k"], Duration::from_secs(30)).await;
    assert_eq!(f.claim("k", session, 2).await.len(), 2);
    let CancelOutcome::Requested(_) = f.jobs().cancel_job(cancelled.id, "stop").await.unwrap()
    else {
        panic!("a running job's cancel is requested");
    };
    f.clock.advance(Duration::from_secs(29));
    assert!(f.reap().await.workers.is_empty(), "its heartbeat is not due yet");
    f.clock.advance(Duration::from_secs(2));
    // Only the lease's holder reaps: a replica that lost it changes nothing.
    let former = Fence { lease: "leader", holder: Uuid::from_u128(2) };
    let fenced = f.jobs().reap_expired_workers(former).await.expect("fenced reap");
    assert!(fenced.workers.is_empty() && fenced.jobs == 0, "{fenced:?}");
    assert_eq!(f.get(running.id).await.status, JobStatus::Running);
    let reaped = f.reap().await;
    assert_eq!((reaped.workers, reaped.jobs), (vec![session.worker_id], 2));
    let lost = f.get(running.id).await;
    assert_eq!(lost.status, JobStatus::WorkerDead);
    assert_eq!(lost.last_error.as_deref(), Some("worker heartbeat expired"));
    assert_eq!(f.get(cancelled.id).await.status, JobStatus::Cancel);
    let other = f.worker(&["k"], TTL).await;
    let again = f.claim("k", other, 2).await;
    assert_eq!(again.iter().map(|j| (j.id, j.attempt)).collect::<Vec<_>>(), vec![(running.id, 2)]);
    assert_eq!(f.reap().await.jobs, 0, "reaping is done once");
}

pub async fn a_worker_back_from_the_dead_holds_its_job_until_it_cancels(f: Fixture) {
    let created = f.job("k").await;
    let session = f.worker(&["k"], Duration::from_secs(30)).await;
    let job = f.claim("k", session, 1).await.remove(0);
    f.clock.advance(Duration::from_secs(31));
    assert_eq!(f.reap().await.workers, vec![session.worker_id]);
    let hello = WorkerHello {
        name: "w".into(),
        version: "test".into(),
        capacity: [("k".to_string(), serde_json::json!(1))].into_iter().collect(),
        resume_worker_id: Some(session.worker_id),
        running: vec![RunningJob { job_id: job.id, attempt: job.attempt, progress: 0.1 }],
        ending: Vec::new(),
        end_acks: false,
    };
    let back = f.jobs().register_worker(&hello, TTL).await.expect("come back");
    assert!(!back.resumed, "a dead session is not resumed");
    assert_eq!(back.stale.len(), 1, "its old attempt must be cancelled");
    assert_eq!(f.get(created.id).await.status, JobStatus::WorkerResurrection);
    let other = f.worker(&["k"], TTL).await;
    assert!(f.claim("k", other, 1).await.is_empty(), "held back until the cancel is acknowledged");
    let current = SessionRef { worker_id: back.worker_id, epoch: back.epoch };
    f.update(current, &job, JobStatus::Cancel, None).await;
    assert_eq!(f.get(created.id).await.status, JobStatus::WorkerDead);
    assert_eq!(f.claim("k", other, 1).await.len(), 1);
}

/// A worker back from the dead may stop its stale attempts without the
/// cancel it was sent: it fenced itself and gave them back, finished one
/// meanwhile, or simply no longer runs one. Each releases the job as the
/// cancel would (claimable again, nothing of the stale run kept), so no
/// job waits in `worker_resurrection` for an acknowledgement that never
/// comes.
pub async fn a_resurrected_attempt_is_released_by_any_end_or_by_omission(f: Fixture) {
    let twice = || f.create(regsweep_scheduler::store::NewJob { max_attempts: 2, ..new_job("k") });
    let jobs = [twice().await, twice().await, twice().await];
    let session = f.worker(&["k"], Duration::from_secs(30)).await;
    let claimed = f.claim("k", session, 3).await;
    assert_eq!(claimed.len(), 3);
    f.clock.advance(Duration::from_secs(31));
    assert_eq!(f.reap().await.workers, vec![session.worker_id]);
    let hello = WorkerHello {
        running: claimed
            .iter()
            .map(|j| RunningJob { job_id: j.id, attempt: j.attempt, progress: 0.1 })
            .collect(),
        ..resumed(session)
    };
    let back = f.jobs().register_worker(&hello, TTL).await.expect("come back");
    assert_eq!(back.stale.len(), 3);
    let current = SessionRef { worker_id: back.worker_id, epoch: back.epoch };
    let [shut, finished, omitted] = &jobs;
    let attempt = |id| claimed.iter().find(|j| j.id == id).expect("claimed").clone();
    f.update(current, &attempt(shut.id), JobStatus::WorkerShutdown, None).await;
    f.update(current, &attempt(finished.id), JobStatus::Done, Some(serde_json::json!({"n": 1})))
        .await;
    for released in [shut.id, finished.id] {
        let job = f.get(released).await;
        assert_eq!(
            (job.status, job.result, job.last_error, job.finished_at),
            (JobStatus::WorkerDead, None, Some("worker heartbeat expired".to_string()), None),
            "job {released}: released, the stale run's end not kept"
        );
    }
    assert_eq!(f.get(omitted.id).await.status, JobStatus::WorkerResurrection);
    let batch = WriteBatch {
        heartbeats: vec![HeartbeatWrite { session: current, running: vec![], end_acks: true }],
        ..Default::default()
    };
    f.write(batch).await;
    let job = f.get(omitted.id).await;
    assert_eq!((job.status, job.errors.as_array().map(Vec::len)), (JobStatus::WorkerDead, Some(1)));
    // Released attempts are claimed again as their next, last attempt: the
    // stale one was spent when its worker was declared dead, and a give-back
    // from the stale run refunds nothing, so losing this one ends each job.
    let other = f.worker(&["k"], Duration::from_secs(30)).await;
    let mut again: Vec<(i64, u32)> =
        f.claim("k", other, 3).await.iter().map(|j| (j.id, j.attempt)).collect();
    again.sort();
    assert_eq!(again, jobs.iter().map(|j| (j.id, 2)).collect::<Vec<_>>());
    f.clock.advance(Duration::from_secs(31));
    assert_eq!(f.reap().await.jobs, 3);
    for job in &jobs {
        assert_eq!(f.get(job.id).await.status, JobStatus::Error, "job {}: out of attempts", job.id);
    }
}

/// A worker that resumes keeps the attempts it lists as running and those
/// it lists as ending (their final update follows the Hello: a stream that
/// broke with it unwritten costs the attempt nothing). The rest never
/// reached it when it keeps its ends until recorded: given back, not
/// spent, even on a job's last attempt.
pub async fn a_resumed_worker_keeps_what_it_runs_or_ends_and_gets_back_the_rest(f: Fixture) {
    let last_try = |n| regsweep_scheduler::store::NewJob { max_attempts: n, ..new_job("k") };
    let (running, ending) = (f.job("k").await, f.job("k").await);
    let undelivered = f.create(last_try(1)).await;
    let session = f.worker(&["k"], TTL).await;
    assert_eq!(f.claim("k", session, 3).await.len(), 3);
    let hello = WorkerHello {
        running: vec![RunningJob { job_id: running.id, attempt: 1, progress: 0.1 }],
        ending: vec![(ending.id, 1)],
        end_acks: true,
        ..resumed(session)
    };
    let back = f.jobs().register_worker(&hello, TTL).await.expect("resume");
    assert!(back.resumed);
    assert_eq!((back.lost, back.stale.as_slice()), (1, &[][..]), "only the undelivered one");
    assert_eq!(f.get(running.id).await.status, JobStatus::Running);
    assert_eq!(f.get(ending.id).await.status, JobStatus::Running);
    let given_back = f.get(undelivered.id).await;
    assert_eq!(
        (given_back.status, given_back.last_error, given_back.errors),
        (JobStatus::WorkerDead, None, serde_json::json!([])),
        "given back, no error recorded"
    );
    let current = SessionRef { worker_id: back.worker_id, epoch: back.epoch };
    let again = f.claim("k", current, 1).await;
    assert_eq!(again.iter().map(|j| (j.id, j.attempt)).collect::<Vec<_>>(), [(undelivered.id, 2)]);
    let ended = f.get(ending.id).await;
    f.update(current, &ended, JobStatus::Done, Some(serde_json::json!({}))).await;
    let done = f.get(ending.id).await;
    assert_eq!((done.status, done.attempt, done.last_error), (JobStatus::Done, 1, None));
}

/// A worker that does not keep its ends may have run what it omits and
/// lost the end: the attempt is spent.
pub async fn a_resumed_worker_without_end_acks_spends_what_it_omits(f: Fixture) {
    let omitted =
        f.create(regsweep_scheduler::store::NewJob { max_attempts: 1, ..new_job("k") }).await;
    let session = f.worker(&["k"], TTL).await;
    assert_eq!(f.claim("k", session, 1).await.len(), 1);
    let back = f.jobs().register_worker(&resumed(session), TTL).await.expect("resume");
    assert_eq!(back.lost, 1);
    let spent = f.get(omitted.id).await;
    assert_eq!(
        (spent.status, spent.last_error.as_deref()),
        (JobStatus::Error, Some("worker reconnected without this attempt")),
        "its only attempt is spent"
    );
}

/// The Hello of `session`'s worker coming back, running nothing.
fn resumed(session: SessionRef) -> WorkerHello {
    WorkerHello {
        name: "w".into(),
        version: "test".into(),
        capacity: [("k".to_string(), serde_json::json!(3))].into_iter().collect(),
        resume_worker_id: Some(session.worker_id),
        running: Vec::new(),
        ending: Vec::new(),
        end_acks: false,
    }
}

pub async fn heartbeats_take_back_attempts_no_longer_reported(f: Fixture) {
    let kept = f.job("k").await;
    let dropped = f.job("k").await;
    let session = f.worker(&["k"], TTL).await;
    assert_eq!(f.claim("k", session, 2).await.len(), 2);
    let heartbeat = |running: Vec<RunningJob>, ttl: Duration| {
        let batch = WriteBatch {
            heartbeats: vec![HeartbeatWrite { session, running, end_acks: false }],
            ..Default::default()
        };
        let jobs = f.stores.jobs.clone();
        async move { jobs.write_batch(&batch, ttl).await.expect("heartbeat") }
    };
    let both = vec![
        RunningJob { job_id: kept.id, attempt: 1, progress: 0.5 },
        RunningJob { job_id: dropped.id, attempt: 1, progress: 0.5 },
    ];
    let outcome = heartbeat(both, TTL).await;
    assert!(outcome.stale.is_empty() && outcome.superseded.is_empty());
    assert_eq!(f.get(kept.id).await.progress, 0.5);
    // Claimed longer ago than the TTL and not reported: lost. Within the
    // TTL it may still be on its way to the worker.
    let only = vec![RunningJob { job_id: kept.id, attempt: 1, progress: 0.7 }];
    f.clock.advance(Duration::from_secs(9));
    heartbeat(only.clone(), Duration::from_secs(10)).await;
    assert_eq!(f.get(dropped.id).await.status, JobStatus::Running, "claimed within the TTL");
    f.clock.advance(Duration::from_secs(2));
    heartbeat(only, Duration::from_secs(10)).await;
    assert_eq!(f.get(kept.id).await.status, JobStatus::Running);
    let lost = f.get(dropped.id).await;
    assert_eq!(lost.status, JobStatus::WorkerDead);
    assert_eq!(lost.last_error.as_deref(), Some("worker no longer reports this attempt"));
    let bogus = vec![RunningJob { job_id: dropped.id, attempt: 1, progress: 0.0 }];
    let outcome = heartbeat(bogus, TTL).await;
    assert_eq!(outcome.stale.len(), 1, "a lost attempt is reported stale to its worker");
}

/// A worker that keeps its ends until recorded and omits an attempt from
/// its heartbeats never got it (a claim whose commit the dispatcher never
/// heard of, an assignment lost with a stream): given back, not spent.
pub async fn heartbeats_give_back_what_a_worker_keeping_its_ends_never_got(f: Fixture) {
    let never_got =
        f.create(regsweep_scheduler::store::NewJob { max_attempts: 1, ..new_job("k") }).await;
    let session = f.worker(&["k"], TTL).await;
    assert_eq!(f.claim("k", session, 1).await.len(), 1);
    f.clock.advance(Duration::from_secs(11));
    let batch = WriteBatch {
        heartbeats: vec![HeartbeatWrite { session, running: Vec::new(), end_acks: true }],
        ..Default::default()
    };
    f.jobs().write_batch(&batch, Duration::from_secs(10)).await.expect("heartbeat");
    let job = f.get(never_got.id).await;
    assert_eq!(
        (job.status, job.last_error, job.errors),
        (JobStatus::WorkerDead, None, serde_json::json!([]))
    );
    let again = f.claim("k", session, 1).await;
    assert_eq!(again.iter().map(|j| (j.id, j.attempt)).collect::<Vec<_>>(), [(never_got.id, 2)]);
}

pub async fn drained_sessions_give_their_jobs_back(f: Fixture) {
    let created =
        f.create(regsweep_scheduler::store::NewJob { max_attempts: 1, ..new_job("k") }).await;
    let session = f.worker(&["k"], TTL).await;
    f.claim("k", session, 1).await;
    f.write(WriteBatch { offline: vec![session], ..Default::default() }).await;
    let job = f.get(created.id).await;
    assert_eq!(job.status, JobStatus::WorkerShutdown);
    let other = f.worker(&["k"], TTL).await;
    let again = f.claim("k", other, 1).await;
    assert_eq!(again.len(), 1, "a given-back attempt does not count against max_attempts");
    let workers = f.jobs().list_workers(true, 0, 10).await.expect("workers");
    let gone = workers.iter().find(|w| w.id == session.worker_id).expect("listed");
    assert_eq!(gone.status, regsweep_proto::v1::WorkerStatus::Offline);
    let live = workers.iter().find(|w| w.id == other.worker_id).expect("listed");
    assert_eq!(live.running.get("k"), Some(&1));
}

pub async fn cancel_ends_waiting_jobs_and_asks_for_running_ones(f: Fixture) {
    let (events_tx, mut events) = mpsc::channel(64);
    let shutdown = Shutdown::new();
    let listener = tokio::spawn({
        let jobs = f.stores.jobs.clone();
        let shutdown = shutdown.clone();
        async move { jobs.listen(events_tx, shutdown).await }
    });
    assert_eq!(events.recv().await, Some(StoreEvent::Resync), "listening starts with a resync");
    let waiting = f.job("other").await;
    let running = f.job("k").await;
    let session = f.worker(&["k"], TTL).await;
    f.claim("k", session, 1).await;
    let CancelOutcome::Cancelled(job) =
        f.jobs().cancel_job(waiting.id, "not needed").await.unwrap()
    else {
        panic!("a waiting job is cancelled at once");
    };
    assert_eq!((job.status, job.last_error.as_deref()), (JobStatus::Cancel, Some("not needed")));
    let CancelOutcome::Requested(job) = f.jobs().cancel_job(running.id, "stop").await.unwrap()
    else {
        panic!("a running job's cancel is requested");
    };
    assert_eq!(job.status, JobStatus::CancelRequest);
    let expected = StoreEvent::CancelRequested {
        worker_id: session.worker_id,
        job_id: running.id,
        attempt: 1,
        reason: "stop".into(),
    };
    wait_until("the cancel to be announced", Duration::from_secs(10), || {
        let event = events.try_recv().ok();
        let expected = expected.clone();
        async move { (event == Some(expected)).then_some(()) }
    })
    .await;
    f.update(session, &job, JobStatus::Done, None).await;
    assert_eq!(f.get(running.id).await.status, JobStatus::Done, "a late done wins over the cancel");
    assert!(matches!(
        f.jobs().cancel_job(running.id, "x").await.unwrap(),
        CancelOutcome::Terminal(_)
    ));
    assert!(matches!(f.jobs().cancel_job(i64::MAX, "x").await.unwrap(), CancelOutcome::NotFound));
    shutdown.trigger();
    listener.await.expect("listener");
}

pub async fn unique_keys_hold_while_a_job_is_active(f: Fixture) {
    let keyed =
        || regsweep_scheduler::store::NewJob { unique_key: Some("key".into()), ..new_job("k") };
    let first = f.create(keyed()).await;
    let CreateOutcome::Duplicate(holder) = f.jobs().create_job(keyed()).await.unwrap() else {
        panic!("the key is held");
    };
    assert_eq!(holder.id, first.id);
    let session = f.worker(&["k"], TTL).await;
    let job = f.claim("k", session, 1).await.remove(0);
    f.update(session, &job, JobStatus::Done, None).await;
    let second = f.create(keyed()).await;
    assert_ne!(second.id, first.id, "a finished job frees its key");
    let orphan = regsweep_scheduler::store::NewJob { parent_id: Some(i64::MAX), ..new_job("k") };
    assert!(matches!(f.jobs().create_job(orphan).await.unwrap(), CreateOutcome::ParentNotFound));
}

pub async fn a_batch_answers_each_job_in_order(f: Fixture) {
    use regsweep_scheduler::store::NewJob;
    let keyed = |key: &str| NewJob { unique_key: Some(key.into()), ..new_job("k") };
    let held = f.create(keyed("held")).await;
    let parent = f.job("k").await;
    let batch = vec![
        new_job("k"),
        keyed("fresh"),
        keyed("held"),
        NewJob { parent_id: Some(i64::MAX), ..new_job("k") },
        keyed("fresh"),
        NewJob { parent_id: Some(parent.id), priority: 7, ..new_job("k") },
        // A key held before or earlier in the batch wins over a missing
        // parent, as for one create after another.
        NewJob { parent_id: Some(i64::MAX), ..keyed("held") },
        NewJob { parent_id: Some(i64::MAX), ..keyed("fresh") },
        NewJob { parent_id: Some(i64::MAX), ..keyed("orphan") },
        keyed("orphan"),
    ];
    let outcomes = f.jobs().create_jobs(batch).await.unwrap();
    let [
        CreateOutcome::Created(plain),
        CreateOutcome::Created(fresh),
        CreateOutcome::Duplicate(holder),
        CreateOutcome::ParentNotFound,
        CreateOutcome::Duplicate(repeat),
        CreateOutcome::Created(child),
        CreateOutcome::Duplicate(held_orphan),
        CreateOutcome::Duplicate(fresh_orphan),
        CreateOutcome::ParentNotFound,
        CreateOutcome::Created(_),
    ] = outcomes.as_slice()
    else {
        panic!("outcomes out of order or wrong: {outcomes:?}");
    };
    assert_eq!(holder.id, held.id, "a key held before the batch");
    assert_eq!(repeat.id, fresh.id, "a key repeated within the batch creates one job");
    assert_eq!((held_orphan.id, fresh_orphan.id), (held.id, fresh.id));
    assert_eq!((child.parent_id, child.priority), (Some(parent.id), 7));
    // Every created job is stored, waiting, as created.
    for job in [plain, fresh, child] {
        let stored = f.get(job.id).await;
        assert_eq!(&stored, job);
        assert_eq!(stored.status, JobStatus::Waiting);
    }
    let ids = [plain.id, fresh.id, child.id];
    assert!(ids.windows(2).all(|w| w[0] != w[1]), "distinct ids: {ids:?}");
}

pub async fn logs_of_stale_attempts_are_dropped_and_pages_resume(f: Fixture) {
    let created = f.job("k").await;
    let session = f.worker(&["k"], TTL).await;
    f.claim("k", session, 1).await;
    let line = |text: &str| LogLine { attempt: 1, time: Utc::now(), text: text.into() };
    let chunk = |attempt: u32, seq: u32, texts: &[&str]| LogWrite {
        worker_id: session.worker_id,
        job_id: created.id,
        attempt,
        seq,
        lines: texts.iter().map(|t| line(t)).collect(),
    };
    let batch = WriteBatch {
        logs: vec![chunk(1, 0, &["a", "b", "c"]), chunk(1, 1, &["d"]), chunk(7, 0, &["stale"])],
        ..Default::default()
    };
    f.write(batch).await;
    let jobs = f.stores.jobs.clone();
    let read = |cursor: Option<LogCursor>, limit: u32| {
        let jobs = jobs.clone();
        async move {
            jobs.job_logs(created.id, None, cursor, limit).await.expect("logs").expect("job exists")
        }
    };
    let (page, cursor) = read(None, 2).await;
    assert_eq!(page.iter().map(|l| l.text.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    let (page, cursor) = read(Some(cursor), 10).await;
    assert_eq!(page.iter().map(|l| l.text.as_str()).collect::<Vec<_>>(), ["c", "d"]);
    let (page, _) = read(Some(cursor), 10).await;
    assert!(page.is_empty(), "the stale attempt's chunk was not stored");
    assert!(f.jobs().job_logs(i64::MAX, None, None, 10).await.unwrap().is_none());
}

pub async fn due_crons_fire_once_and_move_on(f: Fixture) {
    let cron = NewCron {
        name: "every-minute".into(),
        schedule: "* * * * *".into(),
        kind: "k".into(),
        args: serde_json::json!({"n": 1}),
        enabled: true,
        priority: 3,
        next_fire_at: Utc::now() - chrono::Duration::seconds(1),
    };
    assert!(f.jobs().create_cron(cron.clone()).await.unwrap().is_some());
    assert!(f.jobs().create_cron(cron).await.unwrap().is_none(), "names are unique");
    // Only the lease's holder fires.
    let former = Fence { lease: "leader", holder: Uuid::from_u128(2) };
    assert!(f.jobs().fire_due_crons(next_after, former).await.unwrap().is_empty());
    let fence = f.lead().await;
    assert!(f.jobs().fire_due_crons(next_after, former).await.unwrap().is_empty());
    let (a, b) = tokio::join!(
        f.jobs().fire_due_crons(next_after, fence),
        f.jobs().fire_due_crons(next_after, fence)
    );
    let fired: Vec<_> = a.unwrap().into_iter().chain(b.unwrap()).collect();
    assert_eq!(fired.len(), 1, "a firing is enqueued once");
    let job = f.get(fired[0].job_id).await;
    assert_eq!((job.kind.as_str(), job.priority), ("k", 3));
    let stored = f.jobs().get_cron("every-minute").await.unwrap().expect("cron");
    assert!(stored.next_fire_at > f.clock.now());
    assert_eq!(stored.last_job_id, Some(job.id));
    assert_eq!(f.jobs().next_cron_due().await.unwrap(), Some(stored.next_fire_at));
    assert!(f.jobs().fire_due_crons(next_after, fence).await.unwrap().is_empty());
    assert!(f.jobs().delete_cron("every-minute").await.unwrap());
    assert_eq!(f.jobs().next_cron_due().await.unwrap(), None);
}

pub async fn leases_have_one_holder_until_released_or_expired(f: Fixture) {
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let jobs = f.jobs();
    let lease = Duration::from_secs(10);
    assert!(jobs.try_lease("leader", a, lease).await.unwrap());
    assert!(!jobs.try_lease("leader", b, TTL).await.unwrap());
    f.clock.advance(Duration::from_secs(8));
    assert!(jobs.try_lease("leader", a, lease).await.unwrap(), "renewal");
    f.clock.advance(Duration::from_secs(8));
    assert!(!jobs.try_lease("leader", b, TTL).await.unwrap(), "renewed: 2 s left");
    f.clock.advance(Duration::from_secs(3));
    assert!(jobs.try_lease("leader", b, TTL).await.unwrap(), "an expired lease is taken over");
    assert!(!jobs.try_lease("leader", a, TTL).await.unwrap());
    jobs.release_lease("leader", a).await.unwrap();
    assert!(!jobs.try_lease("leader", a, TTL).await.unwrap(), "only the holder releases");
    jobs.release_lease("leader", b).await.unwrap();
    assert!(jobs.try_lease("leader", a, TTL).await.unwrap());
}

pub async fn retention_keeps_the_newest_finished_jobs_and_drops_their_logs(f: Fixture) {
    let session = f.worker(&["k"], TTL).await;
    let mut ids = Vec::new();
    for _ in 0..8 {
        let created = f.job("k").await;
        let job = f.claim("k", session, 1).await.remove(0);
        let log = LogWrite {
            worker_id: session.worker_id,
            job_id: job.id,
            attempt: 1,
            seq: 0,
            lines: vec![LogLine { attempt: 1, time: Utc::now(), text: "x".into() }],
        };
        f.write(WriteBatch { logs: vec![log], ..Default::default() }).await;
        f.update(session, &job, JobStatus::Done, None).await;
        ids.push(created.id);
    }
    let unfinished = f.job("k").await;
    let purged = f.jobs().purge_jobs(Duration::from_secs(3600), 3).await.expect("purge");
    assert_eq!((purged.jobs, purged.log_chunks), (5, 5));
    for (i, id) in ids.iter().enumerate() {
        let exists = f.jobs().get_job(*id).await.unwrap().is_some();
        assert_eq!(exists, i >= 5, "job {id}: only the newest three finished jobs stay");
    }
    assert!(f.jobs().get_job(unfinished.id).await.unwrap().is_some(), "waiting jobs stay");
    let purged = f.jobs().purge_jobs(Duration::from_secs(3600), 0).await.expect("purge by age");
    assert_eq!(purged.jobs, 0, "finished 0 s ago, kept for an hour");
    f.clock.advance(Duration::from_secs(3601));
    let purged = f.jobs().purge_jobs(Duration::from_secs(3600), 0).await.expect("purge by age");
    assert_eq!(purged.jobs, 3);
}
