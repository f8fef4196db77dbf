//! Catalog statements both stores run as written: common SQL with `$n`
//! placeholders, generic over the database, inside the caller's
//! transaction (SQLite's writer, a PostgreSQL transaction). What the
//! engines spell differently comes from [`Dialect`].

use sqlx::{Database, Encode, Executor, IntoArguments, Type};

use crate::store::StoreError;
use crate::store::catalog::{Counted, DeleteRegistryOutcome, PolicyRecord, RegistryRecord};
use crate::store::dialect::Dialect;
use crate::store::rows::{REGISTRY_COLUMNS, policy_select};
use crate::store::sets;

/// The registry named, read as the store's row type `R`.
pub async fn get_registry<'e, DB, R>(
    exec: impl Executor<'e, Database = DB>,
    name: &'e str,
) -> Result<Option<RegistryRecord>, StoreError>
where
    DB: Database,
    DB::Arguments: IntoArguments<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    R: for<'r> sqlx::FromRow<'r, DB::Row> + TryInto<RegistryRecord, Error = StoreError>,
    R: Send + Unpin,
{
    let sql = format!("SELECT {REGISTRY_COLUMNS} FROM registries WHERE name = $1");
    let row: Option<R> =
        sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(name).fetch_optional(exec).await?;
    row.map(TryInto::try_into).transpose()
}

/// Every registry, by name.
pub async fn list_registries<'e, DB, R>(
    exec: impl Executor<'e, Database = DB>,
) -> Result<Vec<RegistryRecord>, StoreError>
where
    DB: Database,
    DB::Arguments: IntoArguments<DB>,
    R: for<'r> sqlx::FromRow<'r, DB::Row> + TryInto<RegistryRecord, Error = StoreError>,
    R: Send + Unpin,
{
    let sql = format!("SELECT {REGISTRY_COLUMNS} FROM registries ORDER BY name");
    let rows: Vec<R> = sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(exec).await?;
    rows.into_iter().map(TryInto::try_into).collect()
}

/// The policy named, read as the store's row type `R`.
pub async fn get_policy<'e, DB, R>(
    exec: impl Executor<'e, Database = DB>,
    name: &'e str,
    counted: Counted,
) -> Result<Option<PolicyRecord>, StoreError>
where
    DB: Database,
    DB::Arguments: IntoArguments<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    R: for<'r> sqlx::FromRow<'r, DB::Row> + TryInto<PolicyRecord, Error = StoreError>,
    R: Send + Unpin,
{
    let sql = format!("{} WHERE p.name = $1", policy_select(counted));
    let row: Option<R> =
        sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(name).fetch_optional(exec).await?;
    row.map(TryInto::try_into).transpose()
}

/// The policies of one registry, or of all, by name.
pub async fn list_policies<'e, DB, R>(
    exec: impl Executor<'e, Database = DB>,
    registry_id: Option<i64>,
    counted: Counted,
) -> Result<Vec<PolicyRecord>, StoreError>
where
    DB: Database,
    DB::Arguments: IntoArguments<DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Type<DB>,
    R: for<'r> sqlx::FromRow<'r, DB::Row> + TryInto<PolicyRecord, Error = StoreError>,
    R: Send + Unpin,
{
    let sql = format!(
        "{} WHERE CAST($1 AS bigint) IS NULL OR p.registry_id = $1 ORDER BY p.name",
        policy_select(counted)
    );
    let rows: Vec<R> =
        sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(registry_id).fetch_all(exec).await?;
    rows.into_iter().map(TryInto::try_into).collect()
}

/// Stores the last pushback of the registry named; false when there is
/// no such registry. Not an edit: the registry's version stays.
pub async fn record_pushback<DB>(
    conn: &mut DB::Connection,
    name: &str,
    pushback: &str,
) -> Result<bool, StoreError>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    (i64,): for<'r> sqlx::FromRow<'r, DB::Row>,
{
    let updated: Option<(i64,)> =
        sqlx::query_as("UPDATE registries SET pushback = $2 WHERE name = $1 RETURNING id")
            .bind(name)
            .bind(pushback)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(updated.is_some())
}

/// Records what registry `id` was found to allow (its capabilities as
/// JSON). Not an edit either.
pub async fn set_registry_capabilities<DB>(
    conn: &mut DB::Connection,
    id: i64,
    capabilities: &str,
) -> Result<(), StoreError>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
{
    sqlx::query("UPDATE registries SET capabilities = $2 WHERE id = $1")
        .bind(id)
        .bind(capabilities)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// What is looked up by name.
#[derive(Clone, Copy)]
enum Named {
    Registry,
    Policy,
}

/// The id of the registry or policy named, its row locked for the rest of
/// the transaction.
async fn locked_id<DB>(
    dialect: Dialect,
    conn: &mut DB::Connection,
    named: Named,
    name: &str,
) -> Result<Option<i64>, StoreError>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    (i64,): for<'r> sqlx::FromRow<'r, DB::Row>,
{
    let table = match named {
        Named::Registry => "registries",
        Named::Policy => "policies",
    };
    let find = format!("SELECT id FROM {table} WHERE name = $1{}", dialect.row_lock());
    let found: Option<(i64,)> =
        sqlx::query_as(sqlx::AssertSqlSafe(find)).bind(name).fetch_optional(&mut *conn).await?;
    Ok(found.map(|(id,)| id))
}

/// Deletes the registry named unless policies use it (then their names).
pub async fn delete_registry<DB>(
    dialect: Dialect,
    conn: &mut DB::Connection,
    name: &str,
) -> Result<DeleteRegistryOutcome, StoreError>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    (i64,): for<'r> sqlx::FromRow<'r, DB::Row>,
    (String,): for<'r> sqlx::FromRow<'r, DB::Row>,
{
    let Some(id) = locked_id::<DB>(dialect, conn, Named::Registry, name).await? else {
        return Ok(DeleteRegistryOutcome::NotFound);
    };
    let policies: Vec<(String,)> =
        sqlx::query_as("SELECT name FROM policies WHERE registry_id = $1 ORDER BY name")
            .bind(id)
            .fetch_all(&mut *conn)
            .await?;
    if !policies.is_empty() {
        return Ok(DeleteRegistryOutcome::InUse(policies.into_iter().map(|(n,)| n).collect()));
    }
    sqlx::query("DELETE FROM registries WHERE id = $1").bind(id).execute(&mut *conn).await?;
    Ok(DeleteRegistryOutcome::Deleted)
}

/// Gives a policy's waiting repositories back: they are not picked while
/// the policy is disabled or gone. Running cleanups finish.
pub async fn release_waiting<DB>(
    conn: &mut DB::Connection,
    policy_id: i64,
) -> Result<(), StoreError>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
{
    sqlx::query(concat!(
        "UPDATE repositories SET cleanup_status = 'unscheduled'
         WHERE policy_id = $1 AND cleanup_status IN ",
        sets::cleanup_waiting!()
    ))
    .bind(policy_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Deletes the policy named, its waiting repositories released; false
/// when there is none.
pub async fn delete_policy<DB>(
    dialect: Dialect,
    conn: &mut DB::Connection,
    name: &str,
) -> Result<bool, StoreError>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    (i64,): for<'r> sqlx::FromRow<'r, DB::Row>,
{
    let Some(id) = locked_id::<DB>(dialect, conn, Named::Policy, name).await? else {
        return Ok(false);
    };
    release_waiting::<DB>(conn, id).await?;
    sqlx::query("DELETE FROM policies WHERE id = $1").bind(id).execute(&mut *conn).await?;
    Ok(true)
}
