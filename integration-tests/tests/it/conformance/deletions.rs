//! The scrubber's deletions: delayed, restorable, leased to one replica
//! at a time, fenced by the lease.

use std::collections::HashSet;
use std::time::Duration;

use regsweep_policy::{Linked, Relation};
use regsweep_proto::v1::DeletionStatus;
use regsweep_scrubber::store::{
    Answer, DeletionFilter, DeletionRecord, Finish, LinkedManifests, NewDeletion, PlanPolicy,
    SentRequest, Submission, TagReason,
};
use uuid::Uuid;

use super::Fixture;

const LEASE: Duration = Duration::from_secs(30);

fn images(n: usize) -> Vec<NewDeletion> {
    (0..n)
        .map(|i| NewDeletion {
            digest: format!("sha256:{i:064x}"),
            tags: vec![format!("v{i}"), format!("latest-{i}")],
            delete_digest: i % 2 == 0,
            linked: linked(i),
            reasons: vec![TagReason { tag: format!("v{i}"), rule: "keep_n".into() }],
        })
        .collect()
}

/// An even image goes with a signature before it and a platform after;
/// an odd one is an artifact attached to the image before it.
fn linked(i: usize) -> LinkedManifests {
    if i % 2 == 1 {
        let subjects = vec![format!("sha256:{:064x}", i - 1)];
        return LinkedManifests { subjects, ..LinkedManifests::default() };
    }
    let link = |n: usize, tags: Vec<String>, relation, subjects| Linked {
        digest: format!("sha256:{:064x}", 1_000_000 + n),
        tags,
        relation,
        subjects,
    };
    let signature = vec![format!("sha256-{i:064x}.sig")];
    // Its subjects are stored with it (the round trip below checks them).
    let subjects = vec![format!("sha256:{i:064x}")];
    LinkedManifests {
        before: vec![link(2 * i, signature, Relation::Attachment, subjects)],
        after: vec![link(2 * i + 1, Vec::new(), Relation::Child, Vec::new())],
        subjects: Vec::new(),
    }
}

async fn submit(f: &Fixture, job_id: i64, n: usize, delay: Duration) -> Vec<DeletionRecord> {
    submit_attempt(f, job_id, 1, n, delay).await
}

async fn submit_attempt(
    f: &Fixture,
    job_id: i64,
    attempt: u32,
    n: usize,
    delay: Duration,
) -> Vec<DeletionRecord> {
    submit_as(f, job_id, attempt, n, delay, None).await
}

fn policy() -> PlanPolicy {
    PlanPolicy { name: "team".into(), id: 7, revision: "0123456789abcdef".into() }
}

async fn submit_as(
    f: &Fixture,
    job_id: i64,
    attempt: u32,
    n: usize,
    delay: Duration,
    hold: Option<&str>,
) -> Vec<DeletionRecord> {
    let images = images(n);
    let policy = policy();
    let plan = Submission {
        job_id,
        attempt,
        registry: "r",
        repository: "team/app",
        images: &images,
        delay,
        trace_context: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        policy: &policy,
        hold,
    };
    let stored = f.deletions.submit(&plan).await.expect("submit");
    assert!(stored.iter().all(|d| d.trace_context.as_deref() == plan.trace_context));
    // The manifests that go with each image come back as submitted.
    for d in &stored {
        let image = images.iter().find(|i| i.digest == d.digest).expect("submitted");
        assert_eq!((&d.before, &d.after), (&image.linked.before, &image.linked.after));
        assert_eq!(d.subjects, image.linked.subjects);
        assert_eq!((&d.reasons, &d.policy), (&image.reasons, &policy));
        assert_eq!(d.hold_reason.as_deref(), hold);
    }
    stored
}

async fn status_of(f: &Fixture, id: i64) -> DeletionStatus {
    let all = f.deletions.list(&DeletionFilter::default(), None, 1000).await.expect("list");
    all.into_iter().find(|d| d.id == id).expect("deletion").status
}

pub async fn concurrent_claims_lease_each_deletion_once(f: Fixture) {
    submit(&f, 1, 200, Duration::ZERO).await;
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let store = f.deletions.clone();
        tasks.push(tokio::spawn(async move {
            let holder = Uuid::new_v4();
            let mut mine = Vec::new();
            loop {
                let claimed = store.claim(holder, LEASE, 9).await.expect("claim");
                if claimed.is_empty() {
                    return (holder, mine);
                }
                assert!(
                    claimed.iter().all(|d| d.status == DeletionStatus::Deleting && d.attempts == 1)
                );
                mine.extend(claimed.into_iter().map(|d| d.id));
            }
        }));
    }
    let mut seen = HashSet::new();
    let mut holders = Vec::new();
    for task in tasks {
        let (holder, ids) = task.await.expect("claimer");
        for id in &ids {
            assert!(seen.insert(*id), "deletion {id} was leased twice");
        }
        holders.push((holder, ids));
    }
    assert_eq!(seen.len(), 200);
    let (owner, ids) = holders.iter().find(|(_, ids)| !ids.is_empty()).expect("someone claimed");
    let done = Finish::Deleted {
        deleted_tags: vec!["v1".into()],
        skipped_tags: vec!["latest-1".into()],
        digest_deleted: false,
    };
    assert!(!f.deletions.finish(Uuid::new_v4(), ids[0], &done).await.unwrap(), "not the holder");
    assert!(f.deletions.finish(*owner, ids[0], &done).await.unwrap());
    let list = f.deletions.list(&DeletionFilter::default(), None, 1000).await.unwrap();
    let finished = list.iter().find(|d| d.id == ids[0]).expect("listed");
    assert_eq!(
        (finished.status, finished.deleted_tags.clone()),
        (DeletionStatus::Deleted, vec!["v1".to_string()])
    );
    assert_eq!(finished.skipped_tags, vec!["latest-1".to_string()]);
    assert!(finished.finished_at.is_some());
}

pub async fn pending_deletions_restore_until_claimed(f: Fixture) {
    let later = submit(&f, 1, 3, Duration::from_secs(3600)).await;
    let now = submit(&f, 2, 1, Duration::ZERO).await;
    let holder = Uuid::new_v4();
    let claimed = f.deletions.claim(holder, LEASE, 10).await.unwrap();
    assert_eq!(claimed.iter().map(|d| d.id).collect::<Vec<_>>(), vec![now[0].id], "only due ones");
    let ids = vec![later[0].id, later[1].id, now[0].id, i64::MAX];
    let outcomes = f.deletions.restore(&ids).await.unwrap();
    let restored: Vec<bool> = outcomes.iter().map(|(_, r, _)| *r).collect();
    assert_eq!(restored, [true, true, false, false]);
    assert_eq!(outcomes[2].2, "already being deleted");
    assert_eq!(outcomes[3].2, "no such deletion");
    let again = f.deletions.restore(&[later[0].id]).await.unwrap();
    assert_eq!(again[0], (later[0].id, false, "already restored".to_string()));
    assert_eq!(status_of(&f, later[2].id).await, DeletionStatus::PendingDelete);
    let restored = DeletionFilter { status: Some(DeletionStatus::Restored), ..Default::default() };
    assert_eq!(f.deletions.list(&restored, None, 10).await.unwrap().len(), 2);
    let (counts, _) = f.deletions.status().await.unwrap();
    assert!(
        counts.contains(&("restored".to_string(), 2))
            && counts.contains(&("deleting".to_string(), 1))
    );
}

pub async fn retries_end_failed_when_attempts_run_out(f: Fixture) {
    let stored = submit(&f, 1, 1, Duration::ZERO).await;
    let holder = Uuid::new_v4();
    let retry =
        Finish::Retry { error: "registry said 503".into(), after: Duration::ZERO, max_attempts: 2 };
    for attempt in 1..=2 {
        let claimed = f.deletions.claim(holder, LEASE, 10).await.unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].attempts, attempt);
        assert!(f.deletions.finish(holder, stored[0].id, &retry).await.unwrap());
    }
    assert_eq!(status_of(&f, stored[0].id).await, DeletionStatus::Failed);
    assert!(f.deletions.claim(holder, LEASE, 10).await.unwrap().is_empty());
    let backoff = submit(&f, 2, 1, Duration::ZERO).await;
    f.deletions.claim(holder, LEASE, 10).await.unwrap();
    let later =
        Finish::Retry { error: "busy".into(), after: Duration::from_secs(3600), max_attempts: 5 };
    f.deletions.finish(holder, backoff[0].id, &later).await.unwrap();
    assert!(f.deletions.claim(holder, LEASE, 10).await.unwrap().is_empty(), "retries wait");
    let (_, oldest) = f.deletions.status().await.unwrap();
    assert_eq!(oldest, 0.0, "nothing pending is due");
}

pub async fn expired_leases_are_taken_back_and_fence_the_old_holder(f: Fixture) {
    let stored = submit(&f, 1, 2, Duration::ZERO).await;
    let (dead, alive) = (Uuid::new_v4(), Uuid::new_v4());
    let short = Duration::from_secs(20);
    assert_eq!(f.deletions.claim(dead, short, 10).await.unwrap().len(), 2);
    let ids: Vec<i64> = stored.iter().map(|d| d.id).collect();
    f.clock.advance(Duration::from_secs(15));
    assert_eq!(f.deletions.renew(dead, &ids, short).await.unwrap().len(), 2);
    assert!(f.deletions.renew(alive, &ids, LEASE).await.unwrap().is_empty(), "not its leases");
    f.clock.advance(Duration::from_secs(15));
    assert!(f.deletions.claim(alive, LEASE, 10).await.unwrap().is_empty(), "renewed: 5 s left");
    f.clock.advance(Duration::from_secs(6));
    let taken = f.deletions.claim(alive, LEASE, 10).await.unwrap();
    assert_eq!(taken.len(), 2, "expired leases are claimable again");
    assert!(taken.iter().all(|d| d.attempts == 2));
    let failed = Finish::Failed { error: "late".into() };
    assert!(
        !f.deletions.finish(dead, ids[0], &failed).await.unwrap(),
        "a lost lease writes nothing"
    );
    assert!(f.deletions.renew(dead, &ids, LEASE).await.unwrap().is_empty());
    assert!(f.deletions.finish(alive, ids[0], &failed).await.unwrap());
    assert_eq!(status_of(&f, ids[0]).await, DeletionStatus::Failed);
}

pub async fn submissions_are_idempotent_per_attempt_and_digest(f: Fixture) {
    let first = submit(&f, 1, 3, Duration::from_secs(60)).await;
    let again = submit(&f, 1, 3, Duration::from_secs(60)).await;
    assert_eq!(first, again, "a repeated submission stores nothing new");
    assert_eq!(first[0].tags, vec!["v0".to_string(), "latest-0".to_string()]);
    assert!(first[0].delete_digest && !first[1].delete_digest);
    assert!(first[0].delete_after > first[0].submitted_at + chrono::Duration::seconds(59));
    let other_attempt = submit_attempt(&f, 1, 2, 3, Duration::ZERO).await;
    assert!(other_attempt.iter().all(|d| !first.iter().any(|o| o.id == d.id)));
    let by_job = DeletionFilter { job_id: Some(1), ..Default::default() };
    let page = f.deletions.list(&by_job, None, 4).await.unwrap();
    assert_eq!(page.len(), 4, "a page holds at most its limit");
    assert!(page.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    let rest = f.deletions.list(&by_job, Some(page[3].id), 10).await.unwrap();
    assert_eq!(rest.len(), 2);
}

pub async fn held_plans_wait_for_approval_and_can_be_restored(f: Fixture) {
    let held = submit_as(&f, 1, 1, 3, Duration::ZERO, Some("deletes 3 of 4 tags")).await;
    assert!(held.iter().all(|d| d.status == DeletionStatus::AwaitingApproval));
    let holder = Uuid::new_v4();
    assert!(f.deletions.claim(holder, LEASE, 10).await.unwrap().is_empty(), "held, though due");
    let ids: Vec<i64> = held.iter().map(|d| d.id).collect();
    let restored = f.deletions.restore(&ids[..1]).await.unwrap();
    assert_eq!(restored, [(ids[0], true, String::new())], "a held deletion can be restored");
    let approved = f.deletions.approve(&ids).await.unwrap();
    let verdicts: Vec<(bool, &str)> = approved.iter().map(|(_, a, r)| (*a, r.as_str())).collect();
    assert_eq!(verdicts, [(false, "already restored"), (true, ""), (true, "")]);
    let again = f.deletions.approve(&ids[1..2]).await.unwrap();
    assert_eq!(again[0].2, "not awaiting approval");
    let claimed = f.deletions.claim(holder, LEASE, 10).await.unwrap();
    assert_eq!(claimed.iter().map(|d| d.id).collect::<Vec<_>>(), ids[1..].to_vec());
}

pub async fn cancelled_deletions_end_and_postponed_ones_keep_their_attempts(f: Fixture) {
    let stored = submit(&f, 1, 2, Duration::ZERO).await;
    let holder = Uuid::new_v4();
    assert_eq!(f.deletions.claim(holder, LEASE, 10).await.unwrap().len(), 2);
    let cancel = Finish::Cancelled { reason: "policy \"team\" is now a dry run".into() };
    assert!(f.deletions.finish(holder, stored[0].id, &cancel).await.unwrap());
    let postpone = Finish::Postpone { error: "scheduler away".into(), after: Duration::ZERO };
    assert!(f.deletions.finish(holder, stored[1].id, &postpone).await.unwrap());
    let all = f.deletions.list(&DeletionFilter::default(), None, 10).await.unwrap();
    let cancelled = all.iter().find(|d| d.id == stored[0].id).expect("cancelled");
    assert_eq!(cancelled.status, DeletionStatus::Cancelled);
    assert_eq!(cancelled.error.as_deref(), Some("policy \"team\" is now a dry run"));
    assert!(cancelled.finished_at.is_some());
    assert!(f.deletions.restore(&[stored[0].id]).await.unwrap()[0].2.contains("cancelled"));
    let again = f.deletions.claim(holder, LEASE, 10).await.unwrap();
    assert_eq!(again.len(), 1, "postponed is due again; cancelled never is");
    assert_eq!(again[0].attempts, 1, "a postponed try is not counted");
}

pub async fn the_audit_records_requests_then_their_answers_and_prunes_old_ones(f: Fixture) {
    let stored = submit(&f, 1, 2, Duration::ZERO).await;
    let sent =
        |deletion_id, path| SentRequest { deletion_id, registry: "r", method: "DELETE", path };
    let first = f.deletions.request_sent(&sent(stored[0].id, "/v2/a/manifests/x")).await.unwrap();
    let second = f.deletions.request_sent(&sent(stored[1].id, "/v2/a/manifests/y")).await.unwrap();
    let third = f.deletions.request_sent(&sent(stored[0].id, "/v2/a/manifests/z")).await.unwrap();
    let at = f.clock.now();
    let answers = [Answer { id: first, status: 202, at }, Answer { id: second, status: 0, at }];
    f.deletions.requests_answered(&answers).await.unwrap();
    let record = f.deletions.requests(&[stored[0].id, stored[1].id]).await.unwrap();
    let seen: Vec<(i64, i64, Option<i32>, bool)> =
        record.iter().map(|r| (r.id, r.deletion_id, r.status, r.answered_at.is_some())).collect();
    assert_eq!(
        seen,
        [
            (first, stored[0].id, Some(202), true),
            (second, stored[1].id, Some(0), true),
            (third, stored[0].id, None, false),
        ],
        "in the order sent; the third was never answered"
    );
    let only_first = f.deletions.requests(&[stored[0].id]).await.unwrap();
    assert_eq!(only_first.len(), 2);
    assert_eq!(f.deletions.prune_requests(at - chrono::Duration::hours(1)).await.unwrap(), 0);
    let later = f.clock.now() + chrono::Duration::seconds(1);
    assert_eq!(f.deletions.prune_requests(later).await.unwrap(), 3);
    assert!(f.deletions.requests(&[stored[0].id]).await.unwrap().is_empty());
}

pub async fn finished_deletions_are_counted_per_hour(f: Fixture) {
    let before = f.clock.now() - chrono::Duration::seconds(1);
    let stored = submit(&f, 1, 5, Duration::ZERO).await;
    let holder = Uuid::new_v4();
    assert_eq!(f.deletions.claim(holder, LEASE, 10).await.unwrap().len(), 5);
    let deleted = Finish::Deleted {
        deleted_tags: vec!["v0".into()],
        skipped_tags: vec![],
        digest_deleted: true,
    };
    let failed = Finish::Failed { error: "registry said 405".into() };
    let cancelled = Finish::Cancelled { reason: "policy changed".into() };
    for (d, finish) in stored.iter().zip([&deleted, &deleted, &deleted, &failed, &cancelled]) {
        assert!(f.deletions.finish(holder, d.id, finish).await.unwrap());
    }
    let hours = f.deletions.finished_per_hour(before).await.unwrap();
    // This hour, or this one and the next when the test ran across the
    // turn of an hour; cancelled ones are not counted.
    assert!(!hours.is_empty() && hours.len() <= 2, "{hours:?}");
    let (deleted, failed) = hours.iter().fold((0, 0), |(d, x), h| (d + h.deleted, x + h.failed));
    assert_eq!((deleted, failed), (3, 1));
    for h in &hours {
        assert_eq!(h.hour.timestamp() % 3600, 0, "an hour's start: {h:?}");
        assert!(h.hour <= f.clock.now() && h.hour > before - chrono::Duration::hours(1));
    }
    let later = f.clock.now() + chrono::Duration::minutes(1);
    assert!(f.deletions.finished_per_hour(later).await.unwrap().is_empty(), "only since");
}
