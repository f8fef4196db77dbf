//! Leases on PostgreSQL (written once in `lease_sql`).

use std::time::Duration;

use sqlx::postgres::PgPool;
use uuid::Uuid;

use crate::store::StoreError;
use crate::store::lease_sql::postgres as sql;

pub async fn try_lease(
    pool: &PgPool,
    name: &str,
    holder: Uuid,
    lease: Duration,
) -> Result<bool, StoreError> {
    sql::try_lease(&mut *pool.acquire().await?, name, holder, lease, None).await
}

pub async fn release_lease(pool: &PgPool, name: &str, holder: Uuid) -> Result<(), StoreError> {
    sql::release_lease(&mut *pool.acquire().await?, name, holder).await
}
