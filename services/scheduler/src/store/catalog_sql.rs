//! Catalog statements both stores run as written: common SQL with `$n`
//! placeholders, generic over the database, inside the caller's
//! transaction (SQLite's writer, a PostgreSQL transaction). What the
//! engines spell differently comes from [`Dialect`].

use sqlx::{Database, Encode, Executor, IntoArguments, Type};

use crate::store::StoreError;
use crate::store::catalog::DeleteRegistryOutcome;
use crate::store::dialect::Dialect;
use crate::store::sets;

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
    let find = format!("SELECT id FROM registries WHERE name = $1{}", dialect.row_lock());
    let found: Option<(i64,)> =
        sqlx::query_as(sqlx::AssertSqlSafe(find)).bind(name).fetch_optional(&mut *conn).await?;
    let Some((id,)) = found else {
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
    let find = format!("SELECT id FROM policies WHERE name = $1{}", dialect.row_lock());
    let found: Option<(i64,)> =
        sqlx::query_as(sqlx::AssertSqlSafe(find)).bind(name).fetch_optional(&mut *conn).await?;
    let Some((id,)) = found else {
        return Ok(false);
    };
    release_waiting::<DB>(conn, id).await?;
    sqlx::query("DELETE FROM policies WHERE id = $1").bind(id).execute(&mut *conn).await?;
    Ok(true)
}
