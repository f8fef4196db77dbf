//! Registries and policies on PostgreSQL: the operations are written once
//! in `catalog_ops`; here, how a policy run wakes the selection.

use sqlx::postgres::PgPool;

use crate::store::StoreError;
use crate::store::catalog::PolicyRecord;
use crate::store::catalog_sql::postgres as sql;

pub use crate::store::catalog_ops::postgres::*;

pub async fn run_policy(pool: &PgPool, name: &str) -> Result<Option<PolicyRecord>, StoreError> {
    let mut tx = pool.begin().await?;
    let Some(policy) = sql::run_policy(&mut tx, name, None).await? else {
        return Ok(None);
    };
    // Wakes the leader's selection, wherever it runs: the run starts now,
    // not at the next tick.
    sqlx::query("SELECT pg_notify('regsweep_cleanups', 'run')").execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(Some(policy))
}
