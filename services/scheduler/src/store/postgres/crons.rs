//! Crons on PostgreSQL, written once in `cron_sql`.

use crate::store::Fence;
use sqlx::postgres::PgPool;

use crate::store::cron_sql::postgres as sql;
use crate::store::{Fired, NextFire, StoreError};

pub use crate::store::cron_ops::postgres::*;

/// Fires due crons in one transaction fenced by the leader's lease
/// (`cron_sql::fire_due`).
pub async fn fire_due(
    pool: &PgPool,
    next: NextFire,
    fence: Fence,
) -> Result<Vec<Fired>, StoreError> {
    let mut tx = pool.begin().await?;
    if !crate::store::lease_sql::postgres::holds(&mut tx, fence, None).await? {
        return Ok(Vec::new());
    }
    let fired = sql::fire_due(&mut tx, next, None).await?;
    tx.commit().await?;
    Ok(fired.into_iter().map(|(fired, _)| fired).collect())
}
