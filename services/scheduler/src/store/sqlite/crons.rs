//! Crons on SQLite, written once in `cron_sql`; here, SQLite's one writer
//! and its clock.

use crate::store::Fence;

use super::SqliteStore;
use crate::store::cron_sql::sqlite as sql;
use crate::store::{Fired, NextFire, StoreError};

pub use crate::store::cron_ops::sqlite::*;

/// Fires due crons in one write transaction, fenced by the leader's lease
/// (`cron_sql::fire_due`).
pub async fn fire_due(
    store: &SqliteStore,
    next: NextFire,
    fence: Fence,
) -> Result<Vec<Fired>, StoreError> {
    let now = store.now_micros();
    let mut tx = store.begin().await?;
    if !crate::store::lease_sql::sqlite::holds(&mut tx, fence, Some(now)).await? {
        return Ok(Vec::new());
    }
    let fired = sql::fire_due(&mut tx, next, Some(now)).await?;
    tx.commit().await?;
    let (fired, kinds): (Vec<Fired>, Vec<String>) = fired.into_iter().unzip();
    store.announce_kinds(kinds);
    Ok(fired)
}
