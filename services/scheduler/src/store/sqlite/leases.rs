//! Leases on SQLite: the leader's and those fencing leader-only writes.

use std::time::Duration;

use uuid::Uuid;

use super::{SqliteStore, span_micros};
use crate::store::{Fence, StoreError};

pub async fn try_lease(
    store: &SqliteStore,
    name: &str,
    holder: Uuid,
    lease: Duration,
) -> Result<bool, StoreError> {
    let now = store.now_micros();
    let mut tx = store.begin().await?;
    let held: Option<Uuid> = sqlx::query_scalar(
        "INSERT INTO leases (name, holder, acquired_at, expires_at) VALUES (?1, ?2, ?3, ?3 + ?4)
         ON CONFLICT (name) DO UPDATE SET
             holder = excluded.holder,
             expires_at = excluded.expires_at,
             acquired_at = CASE WHEN leases.holder = excluded.holder
                                THEN leases.acquired_at ELSE excluded.acquired_at END
         WHERE leases.holder = excluded.holder OR leases.expires_at < ?3
         RETURNING holder",
    )
    .bind(name)
    .bind(holder)
    .bind(now)
    .bind(span_micros(lease))
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(held.is_some())
}

pub async fn release_lease(
    store: &SqliteStore,
    name: &str,
    holder: Uuid,
) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    sqlx::query("DELETE FROM leases WHERE name = ? AND holder = ?")
        .bind(name)
        .bind(holder)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Whether `fence.holder` holds `fence.lease` at `now`. The writer runs one
/// transaction at a time, so the lease cannot change hands before the
/// caller's transaction ends.
pub async fn holds(
    conn: &mut sqlx::SqliteConnection,
    fence: Fence,
    now: i64,
) -> Result<bool, StoreError> {
    let held: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM leases WHERE name = $1 AND holder = $2 AND expires_at > $3",
    )
    .bind(fence.lease)
    .bind(fence.holder)
    .bind(now)
    .fetch_optional(conn)
    .await?;
    Ok(held.is_some())
}
