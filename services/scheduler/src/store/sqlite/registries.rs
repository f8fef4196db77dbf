//! Registries and policies on SQLite.

use sqlx::types::Json;
use sqlx::{AssertSqlSafe, Sqlite, SqliteConnection};

use super::rows::{PolicyRow, REGISTRY_COLUMNS, RegistryRow};
use super::{SqliteStore, micros};
use crate::store::StoreError;
use crate::store::catalog::Counted;
use crate::store::catalog::{
    DeleteRegistryOutcome, NewPolicy, NewRegistry, PolicyRecord, RegistryRecord, attachments_name,
};
use crate::store::catalog_sql;
use crate::store::dialect::Dialect;
use crate::store::rows::Credentials;

fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error().map(|d| d.kind()) == Some(sqlx::error::ErrorKind::UniqueViolation)
}

fn max_parallel(r: &NewRegistry) -> i32 {
    i32::try_from(r.max_parallel_deletions).unwrap_or(i32::MAX)
}

pub async fn create_registry(
    store: &SqliteStore,
    r: NewRegistry,
) -> Result<Option<RegistryRecord>, StoreError> {
    let mut tx = store.begin().await?;
    let sql = format!(
        "INSERT INTO registries (name, url, credentials, rate_limit, max_parallel_deletions,
                                 created_at, updated_at, realm_allow_list, protection)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7, ?8) RETURNING {REGISTRY_COLUMNS}"
    );
    let row = sqlx::query_as::<_, RegistryRow>(AssertSqlSafe(sql))
        .bind(&r.name)
        .bind(&r.url)
        .bind(Json(Credentials::from(&r.credentials)))
        .bind(r.rate_limit)
        .bind(max_parallel(&r))
        .bind(store.now_micros())
        .bind(Json(&r.realm_allow_list))
        .bind(crate::store::rows::protection_column(&r.protection))
        .fetch_one(&mut *tx)
        .await;
    let row = match row {
        Ok(row) => row,
        Err(e) if is_unique_violation(&e) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    tx.commit().await?;
    Ok(Some(row.try_into()?))
}

pub async fn get_registry(
    store: &SqliteStore,
    name: &str,
) -> Result<Option<RegistryRecord>, StoreError> {
    catalog_sql::get_registry::<Sqlite, RegistryRow>(store.reader(), name).await
}

pub async fn list_registries(store: &SqliteStore) -> Result<Vec<RegistryRecord>, StoreError> {
    catalog_sql::list_registries::<Sqlite, RegistryRow>(store.reader()).await
}

pub async fn update_registry(
    store: &SqliteStore,
    r: NewRegistry,
) -> Result<Option<RegistryRecord>, StoreError> {
    let mut tx = store.begin().await?;
    let sql = format!(
        "UPDATE registries SET url = ?2, credentials = ?3, rate_limit = ?4,
             max_parallel_deletions = ?5, updated_at = max(?6, updated_at + 1),
             realm_allow_list = ?7,
             protection = ?8
         WHERE name = ?1 AND (?9 IS NULL OR updated_at = ?9) RETURNING {REGISTRY_COLUMNS}"
    );
    let row = sqlx::query_as::<_, RegistryRow>(AssertSqlSafe(sql))
        .bind(&r.name)
        .bind(&r.url)
        .bind(Json(Credentials::from(&r.credentials)))
        .bind(r.rate_limit)
        .bind(max_parallel(&r))
        .bind(store.now_micros())
        .bind(Json(&r.realm_allow_list))
        .bind(crate::store::rows::protection_column(&r.protection))
        .bind(r.expected_updated_at.map(micros))
        .fetch_optional(&mut *tx)
        .await?;
    tx.commit().await?;
    row.map(TryInto::try_into).transpose()
}

pub async fn delete_registry(
    store: &SqliteStore,
    name: &str,
) -> Result<DeleteRegistryOutcome, StoreError> {
    let mut tx = store.begin().await?;
    let outcome = catalog_sql::delete_registry::<Sqlite>(Dialect::Sqlite, &mut tx, name).await?;
    tx.commit().await?;
    Ok(outcome)
}

async fn policy_in(
    conn: &mut SqliteConnection,
    name: &str,
    counted: Counted,
) -> Result<Option<PolicyRecord>, StoreError> {
    catalog_sql::get_policy::<Sqlite, PolicyRow>(conn, name, counted).await
}

pub async fn get_policy(
    store: &SqliteStore,
    name: &str,
    counted: Counted,
) -> Result<Option<PolicyRecord>, StoreError> {
    catalog_sql::get_policy::<Sqlite, PolicyRow>(store.reader(), name, counted).await
}

pub async fn list_policies(
    store: &SqliteStore,
    registry_id: Option<i64>,
    counted: Counted,
) -> Result<Vec<PolicyRecord>, StoreError> {
    catalog_sql::list_policies::<Sqlite, PolicyRow>(store.reader(), registry_id, counted).await
}

pub async fn create_policy(
    store: &SqliteStore,
    p: NewPolicy,
) -> Result<Option<PolicyRecord>, StoreError> {
    let mut tx = store.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO policies (name, registry_id, repository_selector, cadence, keep_n,
             older_than_seconds, name_regex_delete, name_regex_keep, dry_run, enabled, next_run_at,
             created_at, updated_at, attachments, max_delete_fraction, age_source, rules, priority)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12, ?13, ?14, ?15, ?16, ?17)",
    )
    .bind(&p.name)
    .bind(p.registry_id)
    .bind(&p.repository_selector)
    .bind(&p.cadence)
    .bind(p.keep_n)
    .bind(p.older_than_seconds)
    .bind(&p.name_regex_delete)
    .bind(&p.name_regex_keep)
    .bind(p.dry_run)
    .bind(p.enabled)
    .bind(micros(p.next_run_at))
    .bind(store.now_micros())
    .bind(attachments_name(p.attachments))
    .bind(p.max_delete_fraction)
    .bind(p.age_source.name())
    .bind(crate::store::rows::rules_column(&p.rules))
    .bind(p.priority)
    .execute(&mut *tx)
    .await;
    match inserted {
        Ok(_) => {}
        Err(e) if is_unique_violation(&e) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let policy = policy_in(&mut tx, &p.name, Counted::Yes).await?;
    tx.commit().await?;
    Ok(policy)
}

pub async fn update_policy(
    store: &SqliteStore,
    p: NewPolicy,
) -> Result<Option<PolicyRecord>, StoreError> {
    let mut tx = store.begin().await?;
    let updated: Option<i64> = sqlx::query_scalar(
        "UPDATE policies SET repository_selector = ?2, cadence = ?3, keep_n = ?4,
             older_than_seconds = ?5, name_regex_delete = ?6, name_regex_keep = ?7,
             dry_run = ?8, enabled = ?9,
             armed_run_at = CASE WHEN ?18 OR next_run_at = ?10 THEN armed_run_at END,
             next_run_at = CASE WHEN ?18 THEN next_run_at ELSE ?10 END,
             updated_at = max(?11, updated_at + 1), attachments = ?12,
             max_delete_fraction = ?13, age_source = ?14, rules = ?15, priority = ?16
         WHERE name = ?1 AND (?17 IS NULL OR updated_at = ?17) RETURNING id",
    )
    .bind(&p.name)
    .bind(&p.repository_selector)
    .bind(&p.cadence)
    .bind(p.keep_n)
    .bind(p.older_than_seconds)
    .bind(&p.name_regex_delete)
    .bind(&p.name_regex_keep)
    .bind(p.dry_run)
    .bind(p.enabled)
    .bind(micros(p.next_run_at))
    .bind(store.now_micros())
    .bind(attachments_name(p.attachments))
    .bind(p.max_delete_fraction)
    .bind(p.age_source.name())
    .bind(crate::store::rows::rules_column(&p.rules))
    .bind(p.priority)
    .bind(p.expected_updated_at.map(micros))
    .bind(p.keep_schedule)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(id) = updated else {
        return Ok(None);
    };
    if !p.enabled {
        catalog_sql::release_waiting::<Sqlite>(&mut tx, id).await?;
    }
    let policy = policy_in(&mut tx, &p.name, Counted::Yes).await?;
    tx.commit().await?;
    Ok(policy)
}

pub async fn delete_policy(store: &SqliteStore, name: &str) -> Result<bool, StoreError> {
    let mut tx = store.begin().await?;
    let deleted = catalog_sql::delete_policy::<Sqlite>(Dialect::Sqlite, &mut tx, name).await?;
    tx.commit().await?;
    Ok(deleted)
}

pub async fn run_policy(
    store: &SqliteStore,
    name: &str,
) -> Result<Option<PolicyRecord>, StoreError> {
    let mut tx = store.begin().await?;
    let now = store.now_micros();
    let updated = sqlx::query(
        "UPDATE policies SET next_run_at = ?2, armed_run_at = NULL,
             updated_at = max(?2, updated_at + 1)
         WHERE name = ?1",
    )
    .bind(name)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() == 0 {
        return Ok(None);
    }
    let policy = policy_in(&mut tx, name, Counted::Yes).await?;
    tx.commit().await?;
    // Wakes the selection: the run starts now, not at the next tick.
    store.announce(crate::store::StoreEvent::CleanupEnded);
    Ok(policy)
}

pub async fn record_pushback(
    store: &SqliteStore,
    name: &str,
    pushback: &str,
) -> Result<bool, StoreError> {
    let mut tx = store.begin().await?;
    let recorded = catalog_sql::record_pushback::<Sqlite>(&mut tx, name, pushback).await?;
    tx.commit().await?;
    Ok(recorded)
}

pub async fn set_registry_capabilities(
    store: &SqliteStore,
    id: i64,
    capabilities: &str,
) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    catalog_sql::set_registry_capabilities::<Sqlite>(&mut tx, id, capabilities).await?;
    tx.commit().await?;
    Ok(())
}
