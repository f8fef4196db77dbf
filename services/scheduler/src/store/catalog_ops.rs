//! The registry and policy operations of both stores, written once (see
//! `engines`): each runs `catalog_sql`'s statements in a transaction of the
//! engine's writer, stamped with its time. Only what the engines announce
//! differently stays in their `registries` (a policy run wakes the
//! selection: a PostgreSQL notification, an in-process event on SQLite).

use crate::store::StoreError;
use crate::store::catalog::{
    Counted, DeleteRegistryOutcome, NewPolicy, NewRegistry, PolicyRecord, RegistryRecord,
};
use crate::store::engines::per_engine;

per_engine! {
    use engine::catalog_sql as sql;

    pub async fn create_registry(
        store: &Store,
        r: NewRegistry,
    ) -> Result<Option<RegistryRecord>, StoreError> {
        let mut tx = begin_write(writer(store)).await?;
        let created = sql::create_registry(&mut tx, &r, stamp(store)).await?;
        tx.commit().await?;
        Ok(created)
    }

    pub async fn get_registry(
        store: &Store,
        name: &str,
    ) -> Result<Option<RegistryRecord>, StoreError> {
        sql::get_registry(reader(store), name).await
    }

    pub async fn list_registries(store: &Store) -> Result<Vec<RegistryRecord>, StoreError> {
        sql::list_registries(reader(store)).await
    }

    pub async fn update_registry(
        store: &Store,
        r: NewRegistry,
    ) -> Result<Option<RegistryRecord>, StoreError> {
        let mut tx = begin_write(writer(store)).await?;
        let updated = sql::update_registry(&mut tx, &r, stamp(store)).await?;
        tx.commit().await?;
        Ok(updated)
    }

    pub async fn delete_registry(
        store: &Store,
        name: &str,
    ) -> Result<DeleteRegistryOutcome, StoreError> {
        let mut tx = begin_write(writer(store)).await?;
        let outcome = sql::delete_registry(&mut tx, name).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// Records what a registry was found to support (JSON of its
    /// capabilities).
    pub async fn set_registry_capabilities(
        store: &Store,
        id: i64,
        capabilities: &str,
    ) -> Result<(), StoreError> {
        let mut tx = begin_write(writer(store)).await?;
        sql::set_registry_capabilities(&mut tx, id, capabilities).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn record_pushback(
        store: &Store,
        name: &str,
        pushback: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = begin_write(writer(store)).await?;
        let recorded = sql::record_pushback(&mut tx, name, pushback).await?;
        tx.commit().await?;
        Ok(recorded)
    }

    pub async fn get_policy(
        store: &Store,
        name: &str,
        counted: Counted,
    ) -> Result<Option<PolicyRecord>, StoreError> {
        sql::get_policy(reader(store), name, counted).await
    }

    pub async fn list_policies(
        store: &Store,
        registry_id: Option<i64>,
        counted: Counted,
    ) -> Result<Vec<PolicyRecord>, StoreError> {
        sql::list_policies(reader(store), registry_id, counted).await
    }

    pub async fn create_policy(
        store: &Store,
        p: NewPolicy,
    ) -> Result<Option<PolicyRecord>, StoreError> {
        let mut tx = begin_write(writer(store)).await?;
        let created = sql::create_policy(&mut tx, &p, stamp(store)).await?;
        tx.commit().await?;
        Ok(created)
    }

    pub async fn update_policy(
        store: &Store,
        p: NewPolicy,
    ) -> Result<Option<PolicyRecord>, StoreError> {
        let mut tx = begin_write(writer(store)).await?;
        let updated = sql::update_policy(&mut tx, &p, stamp(store)).await?;
        tx.commit().await?;
        Ok(updated)
    }

    pub async fn delete_policy(store: &Store, name: &str) -> Result<bool, StoreError> {
        let mut tx = begin_write(writer(store)).await?;
        let deleted = sql::delete_policy(&mut tx, name).await?;
        tx.commit().await?;
        Ok(deleted)
    }
}
