//! Plans that cannot go stale. A scheduler started on an empty queue
//! claims on an empty table. After five executions of a prepared
//! statement PostgreSQL may switch to a generic plan, costed for that
//! empty table (a sequential scan, and a nested loop over it for the
//! update), and keep it for the life of the connection. Found as two
//! benchmark runs in twenty draining at 1% of their ceiling, each claim
//! taking seconds once the backlog arrived. The stores plan every
//! execution for the table as it is.

use std::time::Duration;

use regsweep_integration_tests::TestDb;
use regsweep_scheduler::store::postgres::PgStore;
use regsweep_scheduler::store::{ClaimSlot, JobStore, SessionRef, WorkerHello};

#[tokio::test]
async fn claims_on_an_empty_queue_leave_no_generic_plan_behind() {
    let db = TestDb::postgres().await;
    // One connection, so the prepared statements read below are the ones
    // the claims used.
    let store = PgStore::connect(&db.url, 1, &Default::default()).await.expect("store");
    let hello = WorkerHello {
        name: "plans".into(),
        version: "test".into(),
        capacity: [("sleep".to_string(), 8.into())].into_iter().collect(),
        resume_worker_id: None,
        running: Vec::new(),
        ending: Vec::new(),
        end_acks: true,
    };
    let registration =
        store.register_worker(&hello, Duration::from_secs(60)).await.expect("register");
    let session = SessionRef { worker_id: registration.worker_id, epoch: registration.epoch };
    let slots = vec![ClaimSlot { session }; 8];
    for _ in 0..12 {
        assert!(
            store.claim("sleep", &slots, uuid::Uuid::new_v4()).await.expect("claim").is_empty()
        );
    }
    let plans: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements
         WHERE statement LIKE '%FOR UPDATE SKIP LOCKED%'",
    )
    .fetch_all(store.pool())
    .await
    .expect("prepared statements");
    let claims: Vec<_> = plans.iter().filter(|(text, ..)| text.contains("candidates")).collect();
    assert_eq!(claims.len(), 1, "one claim statement: {plans:?}");
    let (_, generic, custom) = claims[0];
    assert!(*custom >= 12, "{custom} claims planned for their parameters");
    assert_eq!(*generic, 0, "a claim ran on a generic plan");
}
