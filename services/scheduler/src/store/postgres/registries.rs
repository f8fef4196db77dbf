//! Registries and policies.

use chrono::{DateTime, Utc};
use sqlx::Postgres;
use sqlx::postgres::PgPool;
use sqlx::types::Json;

use crate::store::StoreError;
use crate::store::catalog::Counted;
use crate::store::catalog::{
    DeleteRegistryOutcome, NewPolicy, NewRegistry, PolicyRecord, RegistryRecord, attachments_name,
};
use crate::store::catalog_sql;
use crate::store::dialect::Dialect;
use crate::store::rows::{self, Credentials, REGISTRY_COLUMNS};

type RegistryRow = rows::RegistryRow<DateTime<Utc>, Vec<String>>;
type PolicyRow = rows::PolicyRow<DateTime<Utc>>;

/// PostgreSQL's `unique_violation`.
const UNIQUE_VIOLATION: &str = "23505";

fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error().and_then(|d| d.code()).as_deref() == Some(UNIQUE_VIOLATION)
}

fn max_parallel(r: &NewRegistry) -> i32 {
    i32::try_from(r.max_parallel_deletions).unwrap_or(i32::MAX)
}

pub async fn create_registry(
    pool: &PgPool,
    r: NewRegistry,
) -> Result<Option<RegistryRecord>, StoreError> {
    let sql = format!(
        "INSERT INTO registries (name, url, credentials, rate_limit, max_parallel_deletions,
                                 realm_allow_list, protection)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {REGISTRY_COLUMNS}"
    );
    let row = sqlx::query_as::<_, RegistryRow>(sqlx::AssertSqlSafe(sql))
        .bind(&r.name)
        .bind(&r.url)
        .bind(Json(Credentials::from(&r.credentials)))
        .bind(r.rate_limit)
        .bind(max_parallel(&r))
        .bind(&r.realm_allow_list)
        .bind(rows::protection_column(&r.protection))
        .fetch_one(pool)
        .await;
    match row {
        Ok(row) => Ok(Some(row.try_into()?)),
        Err(e) if is_unique_violation(&e) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub async fn get_registry(pool: &PgPool, name: &str) -> Result<Option<RegistryRecord>, StoreError> {
    catalog_sql::get_registry::<Postgres, RegistryRow>(pool, name).await
}

pub async fn list_registries(pool: &PgPool) -> Result<Vec<RegistryRecord>, StoreError> {
    catalog_sql::list_registries::<Postgres, RegistryRow>(pool).await
}

/// Records what a registry was found to support (JSON of its capabilities).
pub async fn set_registry_capabilities(
    pool: &PgPool,
    id: i64,
    capabilities: &str,
) -> Result<(), StoreError> {
    let mut conn = pool.acquire().await?;
    catalog_sql::set_registry_capabilities::<Postgres>(&mut conn, id, capabilities).await
}

pub async fn record_pushback(
    pool: &PgPool,
    name: &str,
    pushback: &str,
) -> Result<bool, StoreError> {
    let mut conn = pool.acquire().await?;
    catalog_sql::record_pushback::<Postgres>(&mut conn, name, pushback).await
}

pub async fn update_registry(
    pool: &PgPool,
    r: NewRegistry,
) -> Result<Option<RegistryRecord>, StoreError> {
    let sql = format!(
        "UPDATE registries SET url = $2, credentials = $3, rate_limit = $4,
             max_parallel_deletions = $5, realm_allow_list = $6, protection = $7,
             -- A new version, later than the last whatever the clock says:
             -- the version is the etag (see catalog::etag).
             updated_at = greatest(store_now(), updated_at + interval '1 microsecond')
         WHERE name = $1 AND ($8::timestamptz IS NULL OR updated_at = $8)
         RETURNING {REGISTRY_COLUMNS}"
    );
    let row = sqlx::query_as::<_, RegistryRow>(sqlx::AssertSqlSafe(sql))
        .bind(&r.name)
        .bind(&r.url)
        .bind(Json(Credentials::from(&r.credentials)))
        .bind(r.rate_limit)
        .bind(max_parallel(&r))
        .bind(&r.realm_allow_list)
        .bind(rows::protection_column(&r.protection))
        .bind(r.expected_updated_at)
        .fetch_optional(pool)
        .await?;
    row.map(TryInto::try_into).transpose()
}

pub async fn delete_registry(
    pool: &PgPool,
    name: &str,
) -> Result<DeleteRegistryOutcome, StoreError> {
    let mut tx = pool.begin().await?;
    let outcome =
        catalog_sql::delete_registry::<Postgres>(Dialect::Postgres, &mut tx, name).await?;
    tx.commit().await?;
    Ok(outcome)
}

pub async fn get_policy(
    pool: &PgPool,
    name: &str,
    counted: Counted,
) -> Result<Option<PolicyRecord>, StoreError> {
    catalog_sql::get_policy::<Postgres, PolicyRow>(pool, name, counted).await
}

pub async fn list_policies(
    pool: &PgPool,
    registry_id: Option<i64>,
    counted: Counted,
) -> Result<Vec<PolicyRecord>, StoreError> {
    catalog_sql::list_policies::<Postgres, PolicyRow>(pool, registry_id, counted).await
}

pub async fn create_policy(
    pool: &PgPool,
    p: NewPolicy,
) -> Result<Option<PolicyRecord>, StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO policies (name, registry_id, repository_selector, cadence, keep_n,
             older_than_seconds, name_regex_delete, name_regex_keep, dry_run, enabled, next_run_at,
             attachments, max_delete_fraction, age_source, rules, priority)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
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
    .bind(p.next_run_at)
    .bind(attachments_name(p.attachments))
    .bind(p.max_delete_fraction)
    .bind(p.age_source.name())
    .bind(rows::rules_column(&p.rules))
    .bind(p.priority)
    .execute(pool)
    .await;
    match inserted {
        Ok(_) => get_policy(pool, &p.name, Counted::Yes).await,
        Err(e) if is_unique_violation(&e) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub async fn update_policy(
    pool: &PgPool,
    p: NewPolicy,
) -> Result<Option<PolicyRecord>, StoreError> {
    let mut tx = pool.begin().await?;
    let updated: Option<i64> = sqlx::query_scalar(
        "UPDATE policies SET repository_selector = $2, cadence = $3, keep_n = $4,
             older_than_seconds = $5, name_regex_delete = $6, name_regex_keep = $7,
             dry_run = $8, enabled = $9,
             armed_run_at = CASE WHEN $17 OR next_run_at = $10 THEN armed_run_at END,
             next_run_at = CASE WHEN $17 THEN next_run_at ELSE $10 END,
             attachments = $11, max_delete_fraction = $12,
             age_source = $13, rules = $14, priority = $15,
             updated_at = greatest(store_now(), updated_at + interval '1 microsecond')
         WHERE name = $1 AND ($16::timestamptz IS NULL OR updated_at = $16) RETURNING id",
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
    .bind(p.next_run_at)
    .bind(attachments_name(p.attachments))
    .bind(p.max_delete_fraction)
    .bind(p.age_source.name())
    .bind(rows::rules_column(&p.rules))
    .bind(p.priority)
    .bind(p.expected_updated_at)
    .bind(p.keep_schedule)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(id) = updated else {
        return Ok(None);
    };
    if !p.enabled {
        catalog_sql::release_waiting::<Postgres>(&mut tx, id).await?;
    }
    tx.commit().await?;
    get_policy(pool, &p.name, Counted::Yes).await
}

pub async fn delete_policy(pool: &PgPool, name: &str) -> Result<bool, StoreError> {
    let mut tx = pool.begin().await?;
    let deleted = catalog_sql::delete_policy::<Postgres>(Dialect::Postgres, &mut tx, name).await?;
    tx.commit().await?;
    Ok(deleted)
}

pub async fn run_policy(pool: &PgPool, name: &str) -> Result<Option<PolicyRecord>, StoreError> {
    let mut tx = pool.begin().await?;
    let updated = sqlx::query(
        "UPDATE policies SET next_run_at = store_now(), armed_run_at = NULL,
             updated_at = greatest(store_now(), updated_at + interval '1 microsecond')
         WHERE name = $1",
    )
    .bind(name)
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() == 0 {
        return Ok(None);
    }
    // Wakes the leader's selection, wherever it runs: the run starts now,
    // not at the next tick.
    sqlx::query("SELECT pg_notify('regsweep_cleanups', 'run')").execute(&mut *tx).await?;
    tx.commit().await?;
    get_policy(pool, name, Counted::Yes).await
}
