//! Registries and policies on SQLite: the statements are written once in
//! `catalog_sql`; here, SQLite's one writer and its clock.

use super::SqliteStore;
use crate::store::StoreError;
use crate::store::catalog::{
    Counted, DeleteRegistryOutcome, NewPolicy, NewRegistry, PolicyRecord, RegistryRecord,
};
use crate::store::catalog_sql::sqlite as sql;

pub async fn create_registry(
    store: &SqliteStore,
    r: NewRegistry,
) -> Result<Option<RegistryRecord>, StoreError> {
    let mut tx = store.begin().await?;
    let created = sql::create_registry(&mut tx, &r, Some(store.now_micros())).await?;
    tx.commit().await?;
    Ok(created)
}

pub async fn get_registry(
    store: &SqliteStore,
    name: &str,
) -> Result<Option<RegistryRecord>, StoreError> {
    sql::get_registry(store.reader(), name).await
}

pub async fn list_registries(store: &SqliteStore) -> Result<Vec<RegistryRecord>, StoreError> {
    sql::list_registries(store.reader()).await
}

pub async fn update_registry(
    store: &SqliteStore,
    r: NewRegistry,
) -> Result<Option<RegistryRecord>, StoreError> {
    let mut tx = store.begin().await?;
    let updated = sql::update_registry(&mut tx, &r, Some(store.now_micros())).await?;
    tx.commit().await?;
    Ok(updated)
}

pub async fn delete_registry(
    store: &SqliteStore,
    name: &str,
) -> Result<DeleteRegistryOutcome, StoreError> {
    let mut tx = store.begin().await?;
    let outcome = sql::delete_registry(&mut tx, name).await?;
    tx.commit().await?;
    Ok(outcome)
}

pub async fn get_policy(
    store: &SqliteStore,
    name: &str,
    counted: Counted,
) -> Result<Option<PolicyRecord>, StoreError> {
    sql::get_policy(store.reader(), name, counted).await
}

pub async fn list_policies(
    store: &SqliteStore,
    registry_id: Option<i64>,
    counted: Counted,
) -> Result<Vec<PolicyRecord>, StoreError> {
    sql::list_policies(store.reader(), registry_id, counted).await
}

pub async fn create_policy(
    store: &SqliteStore,
    p: NewPolicy,
) -> Result<Option<PolicyRecord>, StoreError> {
    let mut tx = store.begin().await?;
    let created = sql::create_policy(&mut tx, &p, Some(store.now_micros())).await?;
    tx.commit().await?;
    Ok(created)
}

pub async fn update_policy(
    store: &SqliteStore,
    p: NewPolicy,
) -> Result<Option<PolicyRecord>, StoreError> {
    let mut tx = store.begin().await?;
    let updated = sql::update_policy(&mut tx, &p, Some(store.now_micros())).await?;
    tx.commit().await?;
    Ok(updated)
}

pub async fn delete_policy(store: &SqliteStore, name: &str) -> Result<bool, StoreError> {
    let mut tx = store.begin().await?;
    let deleted = sql::delete_policy(&mut tx, name).await?;
    tx.commit().await?;
    Ok(deleted)
}

pub async fn run_policy(
    store: &SqliteStore,
    name: &str,
) -> Result<Option<PolicyRecord>, StoreError> {
    let mut tx = store.begin().await?;
    let policy = sql::run_policy(&mut tx, name, Some(store.now_micros())).await?;
    tx.commit().await?;
    if policy.is_some() {
        // Wakes the selection: the run starts now, not at the next tick.
        store.announce(crate::store::StoreEvent::CleanupEnded);
    }
    Ok(policy)
}

pub async fn record_pushback(
    store: &SqliteStore,
    name: &str,
    pushback: &str,
) -> Result<bool, StoreError> {
    let mut tx = store.begin().await?;
    let recorded = sql::record_pushback(&mut tx, name, pushback).await?;
    tx.commit().await?;
    Ok(recorded)
}

pub async fn set_registry_capabilities(
    store: &SqliteStore,
    id: i64,
    capabilities: &str,
) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    sql::set_registry_capabilities(&mut tx, id, capabilities).await?;
    tx.commit().await?;
    Ok(())
}
