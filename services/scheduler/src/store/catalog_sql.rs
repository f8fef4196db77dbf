//! Catalog statements written once for both stores (see `engines`): common
//! SQL with `$n` placeholders, which both drivers bind by number, run on
//! the caller's connection, inside its transaction where it has one
//! (SQLite's writer, a PostgreSQL transaction). What the engines spell
//! differently comes from `Dialect`.
//!
//! A write that stamps a time takes `now`: the store's clock on SQLite,
//! `None` on PostgreSQL, whose statements read the database's own clock
//! (`store_now()`) so that every replica stamps by one clock.

use sqlx::Executor;
use sqlx::types::Json;

use crate::store::StoreError;
use crate::store::catalog::{
    Counted, DeleteRegistryOutcome, NewPolicy, NewRegistry, PolicyRecord, RegistryRecord,
    RepositoryFilter, RepositoryRecord, attachments_name, cleanup_status_name,
};
use crate::store::dialect::is_unique_violation;
use crate::store::engines::per_engine;
use crate::store::rows::{
    self, Credentials, REGISTRY_COLUMNS, REPOSITORY_SELECT, policy_select, protection_column,
    rules_column,
};
use crate::store::sets;

fn max_parallel(r: &NewRegistry) -> i32 {
    i32::try_from(r.max_parallel_deletions).unwrap_or(i32::MAX)
}

/// What is looked up by name.
#[derive(Clone, Copy)]
enum Named {
    Registry,
    Policy,
}

impl Named {
    fn table(self) -> &'static str {
        match self {
            Named::Registry => "registries",
            Named::Policy => "policies",
        }
    }
}

/// The columns a registry's definition writes, after its name ($1), as
/// parameters $2 to $7.
const REGISTRY_DEFINITION: [&str; 6] = [
    "url",
    "credentials",
    "rate_limit",
    "max_parallel_deletions",
    "realm_allow_list",
    "protection",
];

/// The columns a policy's definition writes, after its name ($1), as
/// parameters $2 to $15, in the order `bind_policy` binds them. Its
/// registry is not among them: it is set once, when the policy is created.
const POLICY_DEFINITION: [&str; 14] = [
    "repository_selector",
    "cadence",
    "keep_n",
    "older_than_seconds",
    "name_regex_delete",
    "name_regex_keep",
    "dry_run",
    "enabled",
    "next_run_at",
    "attachments",
    "max_delete_fraction",
    "age_source",
    "rules",
    "priority",
];

/// `column = $n, ...` for `columns` from parameter `first`, but for the
/// columns `except` (their parameters are bound all the same).
fn assignments(columns: &[&str], first: usize, except: &[&str]) -> String {
    let set: Vec<String> = (first..)
        .zip(columns)
        .filter(|(_, c)| !except.contains(c))
        .map(|(n, c)| format!("{c} = ${n}"))
        .collect();
    set.join(", ")
}

/// `$first, ..., $(first + n - 1)`.
fn parameters(first: usize, n: usize) -> String {
    let list: Vec<String> = (first..first + n).map(|i| format!("${i}")).collect();
    list.join(", ")
}

per_engine! {
    type RegistryRow = rows::RegistryRow<Time, StringsColumn>;
    type PolicyRow = rows::PolicyRow<Time>;
    type RepositoryRow = rows::RepositoryRow<Time>;

    /// The registry named.
    pub async fn get_registry<'e>(
        exec: impl Executor<'e, Database = DB>,
        name: &'e str,
    ) -> Result<Option<RegistryRecord>, StoreError> {
        let sql = format!("SELECT {REGISTRY_COLUMNS} FROM registries WHERE name = $1");
        let row: Option<RegistryRow> =
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(name).fetch_optional(exec).await?;
        row.map(TryInto::try_into).transpose()
    }

    /// Every registry, by name.
    pub async fn list_registries<'e>(
        exec: impl Executor<'e, Database = DB>,
    ) -> Result<Vec<RegistryRecord>, StoreError> {
        let sql = format!("SELECT {REGISTRY_COLUMNS} FROM registries ORDER BY name");
        let rows: Vec<RegistryRow> =
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(exec).await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// A statement returning a registry.
    type RegistryQuery<'q> =
        sqlx::query::QueryAs<'q, DB, RegistryRow, <DB as sqlx::Database>::Arguments>;

    /// Binds `r`'s name and definition as $1 to $7 (`REGISTRY_DEFINITION`).
    fn bind_registry<'q>(query: RegistryQuery<'q>, r: &'q NewRegistry) -> RegistryQuery<'q> {
        query
            .bind(&r.name)
            .bind(&r.url)
            .bind(Json(Credentials::from(&r.credentials)))
            .bind(r.rate_limit)
            .bind(max_parallel(r))
            .bind(strings(&r.realm_allow_list))
            .bind(protection_column(&r.protection))
    }

    /// Inserts a registry; `None` when the name is taken.
    pub async fn create_registry(
        conn: &mut Connection,
        r: &NewRegistry,
        now: Option<Time>,
    ) -> Result<Option<RegistryRecord>, StoreError> {
        let now_sql = DIALECT.now(8);
        let sql = format!(
            "INSERT INTO registries (name, {}, created_at, updated_at)
             VALUES ($1, {}, {now_sql}, {now_sql}) RETURNING {REGISTRY_COLUMNS}",
            REGISTRY_DEFINITION.join(", "),
            parameters(2, REGISTRY_DEFINITION.len()),
        );
        let mut query = bind_registry(sqlx::query_as(sqlx::AssertSqlSafe(sql)), r);
        if let Some(now) = now {
            query = query.bind(now);
        }
        match query.fetch_one(&mut *conn).await {
            Ok(row) => Ok(Some(row.try_into()?)),
            Err(e) if is_unique_violation(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces a registry's definition; `None` when there is none by its
    /// name, or it was written since `expected_updated_at`.
    pub async fn update_registry(
        conn: &mut Connection,
        r: &NewRegistry,
        now: Option<Time>,
    ) -> Result<Option<RegistryRecord>, StoreError> {
        let sql = format!(
            "UPDATE registries SET {}, updated_at = {}
             WHERE name = $1 AND ({} IS NULL OR updated_at = $8) RETURNING {REGISTRY_COLUMNS}",
            assignments(&REGISTRY_DEFINITION, 2, &[]),
            DIALECT.next_version(&DIALECT.now(9)),
            DIALECT.time_parameter(8),
        );
        let query = bind_registry(sqlx::query_as(sqlx::AssertSqlSafe(sql)), r);
        let mut query = query.bind(r.expected_updated_at.map(time));
        if let Some(now) = now {
            query = query.bind(now);
        }
        let row = query.fetch_optional(&mut *conn).await?;
        row.map(TryInto::try_into).transpose()
    }

    /// Stores the last pushback of the registry named; false when there is
    /// no such registry. Not an edit: the registry's version stays.
    pub async fn record_pushback(
        conn: &mut Connection,
        name: &str,
        pushback: &str,
    ) -> Result<bool, StoreError> {
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
    pub async fn set_registry_capabilities(
        conn: &mut Connection,
        id: i64,
        capabilities: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE registries SET capabilities = $2 WHERE id = $1")
            .bind(id)
            .bind(capabilities)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// The id of the registry or policy named, its row locked for the rest
    /// of the transaction.
    async fn locked_id(
        conn: &mut Connection,
        named: Named,
        name: &str,
    ) -> Result<Option<i64>, StoreError> {
        let find =
            format!("SELECT id FROM {} WHERE name = $1{}", named.table(), DIALECT.row_lock());
        let found: Option<(i64,)> =
            sqlx::query_as(sqlx::AssertSqlSafe(find)).bind(name).fetch_optional(&mut *conn).await?;
        Ok(found.map(|(id,)| id))
    }

    /// Deletes the registry named unless policies use it (then their names).
    pub async fn delete_registry(
        conn: &mut Connection,
        name: &str,
    ) -> Result<DeleteRegistryOutcome, StoreError> {
        let Some(id) = locked_id(conn, Named::Registry, name).await? else {
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

    /// The policy named.
    pub async fn get_policy<'e>(
        exec: impl Executor<'e, Database = DB>,
        name: &'e str,
        counted: Counted,
    ) -> Result<Option<PolicyRecord>, StoreError> {
        let sql = format!("{} WHERE p.name = $1", policy_select(counted));
        let row: Option<PolicyRow> =
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(name).fetch_optional(exec).await?;
        row.map(TryInto::try_into).transpose()
    }

    /// The policies of one registry, or of all, by name.
    pub async fn list_policies<'e>(
        exec: impl Executor<'e, Database = DB>,
        registry_id: Option<i64>,
        counted: Counted,
    ) -> Result<Vec<PolicyRecord>, StoreError> {
        let sql = format!(
            "{} WHERE CAST($1 AS bigint) IS NULL OR p.registry_id = $1 ORDER BY p.name",
            policy_select(counted)
        );
        let rows: Vec<PolicyRow> =
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(registry_id).fetch_all(exec).await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// Inserts a policy; `None` when the name is taken.
    pub async fn create_policy(
        conn: &mut Connection,
        p: &NewPolicy,
        now: Option<Time>,
    ) -> Result<Option<PolicyRecord>, StoreError> {
        let now_sql = DIALECT.now(17);
        let sql = format!(
            "INSERT INTO policies (name, {}, registry_id, created_at, updated_at)
             VALUES ($1, {}, $16, {now_sql}, {now_sql}) RETURNING id",
            POLICY_DEFINITION.join(", "),
            parameters(2, POLICY_DEFINITION.len()),
        );
        let query = bind_policy(sqlx::query_as(sqlx::AssertSqlSafe(sql)), p);
        let mut query = query.bind(p.registry_id);
        if let Some(now) = now {
            query = query.bind(now);
        }
        match query.fetch_one(&mut *conn).await {
            Ok(_) => get_policy(&mut *conn, &p.name, Counted::Yes).await,
            Err(e) if is_unique_violation(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces a policy's definition (not its registry); `None` when there
    /// is none by its name, or it was written since `expected_updated_at`.
    /// A disabled policy's waiting repositories are released.
    pub async fn update_policy(
        conn: &mut Connection,
        p: &NewPolicy,
        now: Option<Time>,
    ) -> Result<Option<PolicyRecord>, StoreError> {
        let sql = format!(
            "UPDATE policies SET {},
                 -- The schedule ($10) is kept when asked ($17); a run armed
                 -- for it stays armed while it stands.
                 armed_run_at = CASE WHEN $17 OR next_run_at = $10 THEN armed_run_at END,
                 next_run_at = CASE WHEN $17 THEN next_run_at ELSE $10 END,
                 updated_at = {}
             WHERE name = $1 AND ({} IS NULL OR updated_at = $16)
             RETURNING id",
            assignments(&POLICY_DEFINITION, 2, &["next_run_at"]),
            DIALECT.next_version(&DIALECT.now(18)),
            DIALECT.time_parameter(16),
        );
        let query = bind_policy(sqlx::query_as(sqlx::AssertSqlSafe(sql)), p);
        let mut query = query.bind(p.expected_updated_at.map(time)).bind(p.keep_schedule);
        if let Some(now) = now {
            query = query.bind(now);
        }
        let Some((id,)) = query.fetch_optional(&mut *conn).await? else {
            return Ok(None);
        };
        if !p.enabled {
            release_waiting(conn, id).await?;
        }
        get_policy(&mut *conn, &p.name, Counted::Yes).await
    }

    /// Makes the policy named due now, disarming an armed run; `None` when
    /// there is none.
    pub async fn run_policy(
        conn: &mut Connection,
        name: &str,
        now: Option<Time>,
    ) -> Result<Option<PolicyRecord>, StoreError> {
        let now_sql = DIALECT.now(2);
        let sql = format!(
            "UPDATE policies SET next_run_at = {now_sql}, armed_run_at = NULL,
                 updated_at = {}
             WHERE name = $1",
            DIALECT.next_version(&now_sql),
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(name);
        if let Some(now) = now {
            query = query.bind(now);
        }
        if query.execute(&mut *conn).await?.rows_affected() == 0 {
            return Ok(None);
        }
        get_policy(&mut *conn, name, Counted::Yes).await
    }

    /// Gives a policy's waiting repositories back: they are not picked while
    /// the policy is disabled or gone. Running cleanups finish.
    pub async fn release_waiting(conn: &mut Connection, policy_id: i64) -> Result<(), StoreError> {
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
    pub async fn delete_policy(conn: &mut Connection, name: &str) -> Result<bool, StoreError> {
        let Some(id) = locked_id(conn, Named::Policy, name).await? else {
            return Ok(false);
        };
        release_waiting(conn, id).await?;
        sqlx::query("DELETE FROM policies WHERE id = $1").bind(id).execute(&mut *conn).await?;
        Ok(true)
    }

    /// A statement returning a policy's id.
    type IdQuery<'q> = sqlx::query::QueryAs<'q, DB, (i64,), <DB as sqlx::Database>::Arguments>;

    /// Binds `p`'s name and definition as $1 to $15 (`POLICY_DEFINITION`).
    fn bind_policy<'q>(query: IdQuery<'q>, p: &'q NewPolicy) -> IdQuery<'q> {
        query
            .bind(&p.name)
            .bind(&p.repository_selector)
            .bind(&p.cadence)
            .bind(p.keep_n)
            .bind(p.older_than_seconds)
            .bind(&p.name_regex_delete)
            .bind(&p.name_regex_keep)
            .bind(p.dry_run)
            .bind(p.enabled)
            .bind(time(p.next_run_at))
            .bind(attachments_name(p.attachments))
            .bind(p.max_delete_fraction)
            .bind(p.age_source.name())
            .bind(rules_column(&p.rules))
            .bind(p.priority)
    }

    /// Repositories matching `filter`, by id, after `after`.
    pub async fn list_repositories<'e>(
        exec: impl Executor<'e, Database = DB>,
        filter: &RepositoryFilter,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<RepositoryRecord>, StoreError> {
        let sql = format!(
            "{REPOSITORY_SELECT}
             WHERE (CAST($1 AS bigint) IS NULL OR r.registry_id = $1)
               AND (CAST($2 AS text) IS NULL OR r.cleanup_status = $2)
               AND (CAST($3 AS bigint) IS NULL OR r.policy_id = $3)
               AND r.id > $4
             ORDER BY r.id
             LIMIT $5"
        );
        let rows: Vec<RepositoryRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(filter.registry_id)
            .bind(filter.status.map(cleanup_status_name))
            .bind(filter.policy_id)
            .bind(after.unwrap_or(0))
            .bind(i64::from(limit))
            .fetch_all(exec)
            .await?;
        rows.into_iter().map(TryFrom::try_from).collect()
    }

    /// Adds `deleted_tags` to the count of the repository whose cleanup is
    /// `job_id`; false when no repository's cleanup is that job.
    pub async fn record_deletions(
        conn: &mut Connection,
        job_id: i64,
        deleted_tags: u32,
    ) -> Result<bool, StoreError> {
        let updated = sqlx::query(
            "UPDATE repositories SET last_deleted_count = last_deleted_count + $2
             WHERE cleanup_job_id = $1",
        )
        .bind(job_id)
        .bind(i64::from(deleted_tags))
        .execute(&mut *conn)
        .await?;
        Ok(updated.rows_affected() > 0)
    }
}
