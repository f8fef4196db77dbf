//! Registries and policies on PostgreSQL: the statements are written once
//! in `catalog_sql`; here, PostgreSQL's transactions and notifications.

use sqlx::postgres::PgPool;

use crate::store::StoreError;
use crate::store::catalog::{
    Counted, DeleteRegistryOutcome, NewPolicy, NewRegistry, PolicyRecord, RegistryRecord,
};
use crate::store::catalog_sql::postgres as sql;

pub async fn create_registry(
    pool: &PgPool,
    r: NewRegistry,
) -> Result<Option<RegistryRecord>, StoreError> {
    sql::create_registry(&mut *pool.acquire().await?, &r, None).await
}

pub async fn get_registry(pool: &PgPool, name: &str) -> Result<Option<RegistryRecord>, StoreError> {
    sql::get_registry(pool, name).await
}

pub async fn list_registries(pool: &PgPool) -> Result<Vec<RegistryRecord>, StoreError> {
    sql::list_registries(pool).await
}

/// Records what a registry was found to support (JSON of its capabilities).
pub async fn set_registry_capabilities(
    pool: &PgPool,
    id: i64,
    capabilities: &str,
) -> Result<(), StoreError> {
    sql::set_registry_capabilities(&mut *pool.acquire().await?, id, capabilities).await
}

pub async fn record_pushback(
    pool: &PgPool,
    name: &str,
    pushback: &str,
) -> Result<bool, StoreError> {
    sql::record_pushback(&mut *pool.acquire().await?, name, pushback).await
}

pub async fn update_registry(
    pool: &PgPool,
    r: NewRegistry,
) -> Result<Option<RegistryRecord>, StoreError> {
    sql::update_registry(&mut *pool.acquire().await?, &r, None).await
}

pub async fn delete_registry(
    pool: &PgPool,
    name: &str,
) -> Result<DeleteRegistryOutcome, StoreError> {
    let mut tx = pool.begin().await?;
    let outcome = sql::delete_registry(&mut tx, name).await?;
    tx.commit().await?;
    Ok(outcome)
}

pub async fn get_policy(
    pool: &PgPool,
    name: &str,
    counted: Counted,
) -> Result<Option<PolicyRecord>, StoreError> {
    sql::get_policy(pool, name, counted).await
}

pub async fn list_policies(
    pool: &PgPool,
    registry_id: Option<i64>,
    counted: Counted,
) -> Result<Vec<PolicyRecord>, StoreError> {
    sql::list_policies(pool, registry_id, counted).await
}

pub async fn create_policy(
    pool: &PgPool,
    p: NewPolicy,
) -> Result<Option<PolicyRecord>, StoreError> {
    sql::create_policy(&mut *pool.acquire().await?, &p, None).await
}

pub async fn update_policy(
    pool: &PgPool,
    p: NewPolicy,
) -> Result<Option<PolicyRecord>, StoreError> {
    let mut tx = pool.begin().await?;
    let updated = sql::update_policy(&mut tx, &p, None).await?;
    tx.commit().await?;
    Ok(updated)
}

pub async fn delete_policy(pool: &PgPool, name: &str) -> Result<bool, StoreError> {
    let mut tx = pool.begin().await?;
    let deleted = sql::delete_policy(&mut tx, name).await?;
    tx.commit().await?;
    Ok(deleted)
}

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
