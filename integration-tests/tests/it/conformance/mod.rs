//! The store conformance suite: every behaviour of the scheduler's and the
//! scrubber's store traits, run once on PostgreSQL and once on SQLite
//! (`conformance::postgres::*` and `conformance::sqlite::*`), through the
//! traits alone so that both implementations answer the same questions.

mod catalog;
mod deletions;
mod queue;

use std::sync::Arc;
use std::time::Duration;

use regsweep_common::clock::{Clock, ManualClock};
use regsweep_integration_tests::TestDb;
use regsweep_proto::v1::JobStatus;
use regsweep_scheduler::store::catalog::CatalogStore;
use regsweep_scheduler::store::{
    ClaimSlot, CreateOutcome, Fence, JobRecord, JobStore, NewJob, SessionRef, Stores, UpdateWrite,
    WorkerHello, WriteBatch, WriteOutcome,
};
use regsweep_scrubber::store::DeletionStore;

/// The stores of one test, on one backend.
pub struct Fixture {
    /// Kept for the test's length: dropping it drops the database.
    _db: TestDb,
    pub stores: Stores,
    pub deletions: Arc<dyn DeletionStore>,
    /// The stores' clock: it moves only when a test moves it, so leases
    /// expire and retries fall due without waiting for them.
    pub clock: Arc<ManualClock>,
}

/// A long heartbeat TTL: sessions stay current unless a test says not.
pub const TTL: Duration = Duration::from_secs(60);

impl Fixture {
    pub async fn open(db: TestDb) -> Self {
        let (clock, hand) = Clock::manual();
        let stores =
            Stores::open_with_clock(&db.url, 8, clock.clone()).await.expect("open scheduler store");
        let deletions = regsweep_scrubber::store::open_with_clock(&db.scrubber_url, 8, clock)
            .await
            .expect("open scrubber store");
        Self { _db: db, stores, deletions, clock: hand }
    }

    pub fn jobs(&self) -> &dyn JobStore {
        self.stores.jobs.as_ref()
    }

    pub fn catalog(&self) -> &dyn CatalogStore {
        self.stores.catalog.as_ref()
    }

    /// Takes the leader lease: leader-only work runs under its fence.
    pub async fn lead(&self) -> Fence {
        let fence = Fence { lease: "leader", holder: uuid::Uuid::from_u128(1) };
        let lease = Duration::from_secs(3600);
        assert!(self.jobs().try_lease(fence.lease, fence.holder, lease).await.unwrap());
        fence
    }

    /// Reaps expired workers as the leader does: holding the lease.
    pub async fn reap(&self) -> regsweep_scheduler::store::Reaped {
        let fence = self.lead().await;
        self.jobs().reap_expired_workers(fence).await.expect("reap")
    }

    /// Registers a new worker running `kinds` with a heartbeat TTL of `ttl`.
    pub async fn worker(&self, kinds: &[&str], ttl: Duration) -> SessionRef {
        let hello = WorkerHello {
            name: "w".into(),
            version: "test".into(),
            capacity: kinds.iter().map(|k| (k.to_string(), serde_json::json!(100))).collect(),
            resume_worker_id: None,
            running: Vec::new(),
            ending: Vec::new(),
            end_acks: false,
        };
        let r = self.jobs().register_worker(&hello, ttl).await.expect("register worker");
        SessionRef { worker_id: r.worker_id, epoch: r.epoch }
    }

    pub async fn create(&self, job: NewJob) -> JobRecord {
        match self.jobs().create_job(job).await.expect("create job") {
            CreateOutcome::Created(job) => job,
            other => panic!("expected a new job, got {other:?}"),
        }
    }

    /// A job of `kind` due now.
    pub async fn job(&self, kind: &str) -> JobRecord {
        self.create(new_job(kind)).await
    }

    pub async fn get(&self, id: i64) -> JobRecord {
        self.jobs().get_job(id).await.expect("get job").expect("job exists")
    }

    /// Claims up to `n` jobs of `kind` for `session`.
    pub async fn claim(&self, kind: &str, session: SessionRef, n: usize) -> Vec<JobRecord> {
        let slots = vec![ClaimSlot { session }; n];
        self.jobs().claim(kind, &slots, uuid::Uuid::new_v4()).await.expect("claim")
    }

    /// Sends one update for `job`'s current attempt from `session`.
    pub async fn update(
        &self,
        session: SessionRef,
        job: &JobRecord,
        status: JobStatus,
        result: Option<serde_json::Value>,
    ) -> WriteOutcome {
        let update = UpdateWrite {
            worker_id: session.worker_id,
            job_id: job.id,
            attempt: job.attempt,
            status,
            progress: 0.5,
            result,
            error: (status == JobStatus::Error).then(|| "it broke".to_string()),
            retryable: false,
        };
        self.write(WriteBatch { updates: vec![update], ..Default::default() }).await
    }

    pub async fn write(&self, batch: WriteBatch) -> WriteOutcome {
        self.jobs().write_batch(&batch, TTL).await.expect("write batch")
    }
}

pub fn new_job(kind: &str) -> NewJob {
    NewJob {
        kind: kind.into(),
        args: serde_json::json!({}),
        priority: 0,
        scheduled_at: None,
        max_attempts: 3,
        unique_key: None,
        parent_id: None,
        trace_context: None,
    }
}

/// Instantiates each named behaviour (an `async fn(Fixture)`) once per
/// store.
macro_rules! conformance {
    ($($module:ident :: $name:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $name() {
                    let db = regsweep_integration_tests::TestDb::postgres().await;
                    super::$module::$name(super::Fixture::open(db).await).await
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $name() {
                    let db = regsweep_integration_tests::TestDb::sqlite();
                    super::$module::$name(super::Fixture::open(db).await).await
                }
            )*
        }
    };
}

conformance!(
    queue::concurrent_claims_never_share_a_job,
    queue::a_batch_answers_each_job_in_order,
    queue::claims_follow_priority_and_skip_jobs_not_yet_due,
    queue::a_claim_is_read_again_by_its_token_while_its_jobs_run,
    queue::only_current_sessions_get_jobs,
    queue::updates_are_fenced_by_attempt_and_worker,
    queue::retryable_errors_wait_then_end_when_attempts_run_out,
    queue::expired_workers_lose_their_attempts_and_cancels_end,
    queue::a_worker_back_from_the_dead_holds_its_job_until_it_cancels,
    queue::a_resurrected_attempt_is_released_by_any_end_or_by_omission,
    queue::a_resumed_worker_keeps_what_it_runs_or_ends_and_gets_back_the_rest,
    queue::a_resumed_worker_without_end_acks_spends_what_it_omits,
    queue::heartbeats_take_back_attempts_no_longer_reported,
    queue::heartbeats_give_back_what_a_worker_keeping_its_ends_never_got,
    queue::drained_sessions_give_their_jobs_back,
    queue::cancel_ends_waiting_jobs_and_asks_for_running_ones,
    queue::unique_keys_hold_while_a_job_is_active,
    queue::logs_of_stale_attempts_are_dropped_and_pages_resume,
    queue::due_crons_fire_once_and_move_on,
    queue::leases_have_one_holder_until_released_or_expired,
    queue::retention_keeps_the_newest_finished_jobs_and_drops_their_logs,
    catalog::selection_starts_at_most_capacity_and_advances_a_completed_run,
    catalog::unfinished_cleanups_come_after_due_ones,
    catalog::cleanup_ends_record_errors_and_deleted_counts,
    catalog::a_cleanup_ended_by_any_path_is_closed_by_the_next_tick,
    catalog::a_registry_is_deleted_only_when_no_policy_uses_it,
    catalog::catalog_reports_are_fenced_and_complete_ones_prune,
    catalog::stale_cleanups_become_unfinished,
    catalog::disabling_a_policy_releases_its_waiting_repositories,
    catalog::first_sightings_last_per_digest_and_are_forgotten_with_their_tag,
    catalog::protection_lists_are_stored_and_in_use_marks_lapse_or_are_replaced,
    catalog::listed_rules_are_stored_and_travel_to_the_job,
    catalog::policy_priority_is_stored_updated_and_not_part_of_the_revision,
    catalog::updates_are_made_only_from_the_version_read,
    catalog::an_edit_keeping_the_cadence_keeps_the_schedule_as_written,
    catalog::stats_count_by_the_store_clock,
    deletions::concurrent_claims_lease_each_deletion_once,
    deletions::pending_deletions_restore_until_claimed,
    deletions::retries_end_failed_when_attempts_run_out,
    deletions::finished_deletions_are_counted_per_hour,
    deletions::expired_leases_are_taken_back_and_fence_the_old_holder,
    deletions::submissions_are_idempotent_per_attempt_and_digest,
    deletions::held_plans_wait_for_approval_and_can_be_restored,
    deletions::cancelled_deletions_end_and_postponed_ones_keep_their_attempts,
    deletions::the_audit_records_requests_then_their_answers_and_prunes_old_ones,
);
