//! Leases: one replica holds a named lease (leadership) until it expires.

use crate::store::Fence;
use std::time::Duration;

use sqlx::postgres::PgPool;
use uuid::Uuid;

use crate::store::StoreError;

pub async fn try_lease(
    pool: &PgPool,
    name: &str,
    holder: Uuid,
    lease: Duration,
) -> Result<bool, StoreError> {
    let held: Option<(Uuid,)> = sqlx::query_as(
        "INSERT INTO leases (name, holder, expires_at)
         VALUES ($1, $2, store_now() + make_interval(secs => $3))
         ON CONFLICT (name) DO UPDATE SET
             holder = EXCLUDED.holder,
             expires_at = EXCLUDED.expires_at,
             acquired_at = CASE WHEN leases.holder = EXCLUDED.holder
                                THEN leases.acquired_at ELSE store_now() END
         WHERE leases.holder = EXCLUDED.holder OR leases.expires_at < store_now()
         RETURNING holder",
    )
    .bind(name)
    .bind(holder)
    .bind(lease.as_secs_f64())
    .fetch_optional(pool)
    .await?;
    Ok(held.is_some())
}

pub async fn release_lease(pool: &PgPool, name: &str, holder: Uuid) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
        .bind(name)
        .bind(holder)
        .execute(pool)
        .await?;
    Ok(())
}

/// Whether `fence.holder` holds `fence.lease` now; the lease row is then
/// locked (`FOR SHARE`) until `conn`'s transaction ends, so it cannot
/// change hands while the leader-only work in it commits.
pub async fn holds(conn: &mut sqlx::PgConnection, fence: Fence) -> Result<bool, StoreError> {
    let held: Option<(i32,)> = sqlx::query_as(
        "SELECT 1 FROM leases WHERE name = $1 AND holder = $2 AND expires_at > store_now() FOR SHARE",
    )
    .bind(fence.lease)
    .bind(fence.holder)
    .fetch_optional(conn)
    .await?;
    Ok(held.is_some())
}
