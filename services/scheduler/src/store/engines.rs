//! Statements written once and compiled for each engine. `per_engine!`
//! expands its items twice, into a `postgres` and a `sqlite` module, where
//! `DB` is that engine, `DIALECT` what it spells differently, and `Time`
//! and `time` how it stores a time (`timestamptz`; integer microseconds).
//! Lists bind as `column` (an array; JSON), the operations of a store act
//! on its `Store` through `writer`, `reader`, `begin_write` and `stamp`
//! (the time writes bind: none on PostgreSQL, whose statements read its
//! clock; the store's clock on SQLite), and `engine::...` names the other
//! shared modules of the same engine. Concrete engines keep the items free
//! of sqlx's trait bounds, which a function generic over the database must
//! repeat in full at every use (Rust does not imply them).

macro_rules! per_engine {
    ($($item:item)*) => {
        /// On PostgreSQL: times are `timestamptz`, the statement's time is
        /// the database's (`store_now()`), lists of strings are `text[]`.
        #[allow(dead_code, unused_imports)]
        pub(crate) mod postgres {
            use super::*;
            use $crate::store::engines::postgres as engine;
            type DB = sqlx::Postgres;
            type Connection = sqlx::PgConnection;
            const DIALECT: $crate::store::dialect::Dialect =
                $crate::store::dialect::Dialect::Postgres;
            type Time = chrono::DateTime<chrono::Utc>;
            fn time(t: chrono::DateTime<chrono::Utc>) -> Time {
                t
            }
            fn read_time(t: Time) -> chrono::DateTime<chrono::Utc> {
                t
            }
            /// A span of time as bound: seconds (`make_interval`).
            type Span = f64;
            fn span(d: std::time::Duration) -> Span {
                d.as_secs_f64()
            }
            type StringsColumn = Vec<String>;
            fn strings(list: &[String]) -> &[String] {
                list
            }
            /// A list of ids as bound (see `Dialect::in_list`).
            fn ids_column(ids: &[i64]) -> &[i64] {
                ids
            }
            /// A list bound as one column of `Dialect::zipped`: an array.
            fn column<T>(values: Vec<T>) -> Vec<T> {
                values
            }
            /// What operations act on: the pool (both reads and writes).
            type Store = sqlx::PgPool;
            fn writer(store: &Store) -> &sqlx::PgPool {
                store
            }
            fn reader(store: &Store) -> &sqlx::PgPool {
                store
            }
            /// The time writes are stamped with when bound: none, the
            /// statements take the database's (`Dialect::now`).
            fn stamp(_: &Store) -> Option<Time> {
                None
            }
            /// A transaction that writes.
            async fn begin_write(
                pool: &sqlx::PgPool,
            ) -> Result<sqlx::Transaction<'static, DB>, sqlx::Error> {
                pool.begin().await
            }
            /// The `at` of an attempt error at `t`, as `Dialect::error_time`
            /// writes it.
            fn error_time(t: Time) -> String {
                t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
            }
            $($item)*
        }

        /// On SQLite: times are integer microseconds, the statement's time
        /// is the store's clock (a parameter), lists of strings are JSON.
        #[allow(dead_code, unused_imports)]
        pub(crate) mod sqlite {
            use super::*;
            use $crate::store::engines::sqlite as engine;
            type DB = sqlx::Sqlite;
            type Connection = sqlx::SqliteConnection;
            const DIALECT: $crate::store::dialect::Dialect =
                $crate::store::dialect::Dialect::Sqlite;
            type Time = i64;
            fn time(t: chrono::DateTime<chrono::Utc>) -> Time {
                regsweep_common::db::micros::of(t)
            }
            fn read_time(t: Time) -> chrono::DateTime<chrono::Utc> {
                regsweep_common::db::micros::time(t)
            }
            /// A span of time as bound: microseconds.
            type Span = i64;
            fn span(d: std::time::Duration) -> Span {
                regsweep_common::db::micros::span(d)
            }
            type StringsColumn = sqlx::types::Json<Vec<String>>;
            fn strings(list: &[String]) -> sqlx::types::Json<&[String]> {
                sqlx::types::Json(list)
            }
            /// A list of ids as bound (see `Dialect::in_list`).
            fn ids_column(ids: &[i64]) -> sqlx::types::Json<&[i64]> {
                sqlx::types::Json(ids)
            }
            /// A list bound as one column of `Dialect::zipped`: JSON.
            fn column<T>(values: Vec<T>) -> sqlx::types::Json<Vec<T>> {
                sqlx::types::Json(values)
            }
            /// What operations act on: the store, with its one writer and
            /// its readers.
            type Store = $crate::store::sqlite::SqliteStore;
            fn writer(store: &Store) -> &sqlx::SqlitePool {
                store.writer()
            }
            fn reader(store: &Store) -> &sqlx::SqlitePool {
                store.reader()
            }
            /// The time writes are stamped with: the store's clock.
            fn stamp(store: &Store) -> Option<Time> {
                Some(store.now_micros())
            }
            /// A transaction that writes: it takes the one writer's lock at
            /// once (see `regsweep_common::db::BEGIN_WRITE`).
            async fn begin_write(
                pool: &sqlx::SqlitePool,
            ) -> Result<sqlx::Transaction<'static, DB>, sqlx::Error> {
                pool.begin_with(sqlx::AssertSqlSafe(regsweep_common::db::BEGIN_WRITE)).await
            }
            /// The `at` of an attempt error at `t`, as PostgreSQL writes it.
            fn error_time(t: Time) -> String {
                $crate::store::sqlite::error_time(t)
            }
            $($item)*
        }
    };
}

pub(crate) use per_engine;

/// Each engine's shared statements that others use, as `engine::...`
/// inside `per_engine!`.
pub(crate) mod postgres {
    pub(crate) use crate::store::catalog_sql::postgres as catalog_sql;
    pub(crate) use crate::store::cron_sql::postgres as cron_sql;
    pub(crate) use crate::store::job_sql::postgres as job_sql;
}

/// See `postgres`.
pub(crate) mod sqlite {
    pub(crate) use crate::store::catalog_sql::sqlite as catalog_sql;
    pub(crate) use crate::store::cron_sql::sqlite as cron_sql;
    pub(crate) use crate::store::job_sql::sqlite as job_sql;
}
