//! The limited-capacity selection on SQLite (README, "How cleanups are selected"; the
//! PostgreSQL module documents the steps). One write transaction: with
//! one writer, no other tick or job end can change `ongoing` meanwhile.

use crate::store::Fence;
use regsweep_policy::{AgeSource, RuleSpec, TagCleanupArgs};
use sqlx::SqliteConnection;

use super::SqliteStore;
use super::rows::ACTIVE;
use crate::store::StoreError;
use crate::store::catalog::{AdvanceRun, Selection, SelectionConfig, attachments_parse};
use crate::store::cleanup_end;
use crate::store::job_sql::{KeyedJob, sqlite::insert_keyed};
use crate::store::selection_sql::sqlite as sql;
use crate::store::sets;

pub async fn select(
    store: &SqliteStore,
    config: &SelectionConfig,
    advance: AdvanceRun,
    fence: Fence,
) -> Result<Selection, StoreError> {
    let now = store.now_micros();
    let mut selection = Selection::default();
    let mut tx = store.begin().await?;
    if !crate::store::lease_sql::sqlite::holds(&mut tx, fence, Some(now)).await? {
        return Ok(selection);
    }
    selection.ended = cleanup_end::sqlite::close_ended(&mut tx, Some(now)).await?;
    let free = sql::before_pick(&mut tx, config, Some(now), &mut selection).await?;
    let mut inserted = false;
    if free > 0 {
        (selection.started, inserted) = pick(&mut tx, free, config, now).await?;
    }
    selection.advanced = sql::advance_completed(&mut tx, advance, Some(now)).await?;
    tx.commit().await?;
    if inserted {
        store.announce_kinds(["tag_cleanup".to_string()]);
    }
    Ok(selection)
}

/// What a picked repository's cleanup job carries.
#[derive(sqlx::FromRow)]
struct Picked {
    id: i64,
    registry: String,
    repository: String,
    policy: String,
    keep_n: i32,
    older_than_seconds: i64,
    name_regex_delete: String,
    name_regex_keep: String,
    attachments: String,
    age_source: String,
    rules: String,
    dry_run: bool,
    trace_context: Option<String>,
}

/// Picks up to `free` repositories in the selection's order and starts a
/// cleanup job for each (or adopts the job still active for it); true
/// when a job was inserted.
async fn pick(
    tx: &mut SqliteConnection,
    free: i64,
    config: &SelectionConfig,
    now: i64,
) -> Result<(Vec<(i64, i64)>, bool), StoreError> {
    let picked: Vec<Picked> = sqlx::query_as(concat!(
        "SELECT r.id, g.name AS registry, r.name AS repository, p.name AS policy, p.keep_n,
                p.older_than_seconds, p.name_regex_delete, p.name_regex_keep, p.attachments,
                p.age_source, p.rules, p.dry_run, r.trace_context
         FROM (SELECT id, registry_id, name, policy_id, trace_context FROM repositories
               WHERE cleanup_status IN ",
        sets::cleanup_waiting!(),
        " AND policy_id IS NOT NULL
               ORDER BY (cleanup_status = 'unfinished'), cleanup_started_at, id
               LIMIT ?) r
         JOIN registries g ON g.id = r.registry_id
         JOIN policies p ON p.id = r.policy_id"
    ))
    .bind(free)
    .fetch_all(&mut *tx)
    .await?;
    let budget = i64::try_from(config.time_budget.as_secs()).unwrap_or(i64::MAX);
    let max_attempts = i32::try_from(config.max_attempts).unwrap_or(i32::MAX);
    let mut started = Vec::with_capacity(picked.len());
    let mut inserted = false;
    for p in picked {
        let key = format!("tag_cleanup:{}", p.id);
        let (repository_id, trace_context) = (p.id, p.trace_context.clone());
        let args = cleanup_args(p, budget)?;
        let keyed = KeyedJob {
            kind: "tag_cleanup",
            args: &args,
            priority: 0,
            max_attempts,
            key: &key,
            trace_context: trace_context.as_deref(),
        };
        let job_id = match insert_keyed(tx, keyed, Some(now)).await? {
            Some(id) => {
                inserted = true;
                id
            }
            None => {
                let sql =
                    format!("SELECT id FROM jobs WHERE unique_key = ? AND status IN {ACTIVE}");
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(&key).fetch_one(&mut *tx).await?
            }
        };
        sqlx::query(
            "UPDATE repositories SET cleanup_status = 'ongoing', cleanup_started_at = ?2,
                 cleanup_job_id = ?3, last_error = NULL, last_deleted_count = 0
             WHERE id = ?1",
        )
        .bind(repository_id)
        .bind(now)
        .bind(job_id)
        .execute(&mut *tx)
        .await?;
        started.push((repository_id, job_id));
    }
    Ok((started, inserted))
}

/// The arguments of the cleanup job of a picked repository.
fn cleanup_args(p: Picked, budget: i64) -> Result<serde_json::Value, StoreError> {
    let listed = serde_json::from_str(&p.rules).map_err(|e| {
        StoreError::Corrupt(format!("policy {} has unreadable rules: {e}", p.policy))
    })?;
    let args = TagCleanupArgs {
        registry: p.registry,
        repository: p.repository,
        repository_id: u64::try_from(p.id).unwrap_or_default(),
        policy: p.policy,
        rules: RuleSpec {
            keep_n: i64::from(p.keep_n),
            older_than_seconds: p.older_than_seconds,
            name_regex_delete: p.name_regex_delete,
            name_regex_keep: p.name_regex_keep,
            attachments: attachments_parse(&p.attachments),
            age_source: AgeSource::parse(&p.age_source).unwrap_or_default(),
            rules: listed,
        },
        dry_run: p.dry_run,
        preview: false,
        time_budget_seconds: u64::try_from(budget).unwrap_or_default(),
    };
    // Plain data: serializing it cannot fail.
    Ok(serde_json::to_value(&args).unwrap_or_default())
}
