//! Opening a service's database: PostgreSQL (a schema of its own per
//! service) or a SQLite file, chosen by the URL's scheme, migrated before
//! anything runs.

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Executor as _};

use crate::clock::Clock;

/// Which store a database URL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    /// Reads the scheme of `url`; never echoes the URL (it may hold a
    /// password).
    pub fn of(url: &str) -> Result<Self, OpenError> {
        let scheme = url.split_once(':').map(|(s, _)| s).unwrap_or_default();
        match scheme.to_ascii_lowercase().as_str() {
            "postgres" | "postgresql" => Ok(Self::Postgres),
            "sqlite" => Ok(Self::Sqlite),
            _ => Err(OpenError::UnknownScheme(scheme.chars().take(32).collect())),
        }
    }
}

/// Why a database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("unsupported database url scheme {0:?}: use postgres://USER@HOST/DB or sqlite://PATH")]
    UnknownScheme(String),
    #[error("invalid database url: {0}")]
    Url(#[source] sqlx::Error),
    #[error(
        "sqlite database {path} is in use by another process (it holds {path}.lock): a SQLite \
         store serves one process; use PostgreSQL for replicas"
    )]
    InUse { path: String },
    #[error("cannot open sqlite database {path}: {source}")]
    Sqlite {
        path: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot connect to postgresql: {0}")]
    Postgres(#[source] sqlx::Error),
    #[error(
        "the database schema is newer than this regsweep (it has migration {0}, unknown to this \
         version): run the newer version, or restore a backup taken before it ran"
    )]
    NewerSchema(i64),
    #[error("cannot migrate schema: {0}")]
    Migrate(#[source] MigrateError),
}

fn migrate_error(e: MigrateError) -> OpenError {
    match e {
        MigrateError::VersionMissing(version) => OpenError::NewerSchema(version),
        other => OpenError::Migrate(other),
    }
}

/// A PostgreSQL pool whose connections live in `schema` (created if
/// needed, under an advisory lock so replicas starting together do not
/// race), migrated by `migrator`.
pub async fn open_postgres(
    url: &str,
    schema: &'static str,
    application: &'static str,
    max_connections: u32,
    migrator: &Migrator,
    clock: &Clock,
) -> Result<PgPool, OpenError> {
    let options = PgConnectOptions::from_str(url).map_err(OpenError::Url)?.options([
        ("search_path", schema),
        // One stuck transaction holding a snapshot ruins queue throughput
        // for everyone (dead tuples pile up): cap it.
        ("idle_in_transaction_session_timeout", "10s"),
        ("application_name", application),
        // Plan every execution of a prepared statement for the tables as
        // they are. A generic plan, which PostgreSQL may adopt after five
        // executions and keeps for the life of the connection, is costed
        // on whatever the tables held then: a service started on an empty
        // queue kept a sequential scan for its claims and, once a backlog
        // arrived, drained it at 1% of the database's speed. The statements
        // here work in batches, so planning each costs little.
        ("plan_cache_mode", "force_custom_plan"),
    ]);
    let mut pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(10));
    if let Clock::Manual(_) = clock {
        // A new connection, and each one leaving the pool, is told the time.
        let (connected, acquired) = (clock.clone(), clock.clone());
        pool = pool.after_connect(move |conn, _| tell_time(conn, &connected)).before_acquire(
            move |conn, _| {
                let told = tell_time(conn, &acquired);
                Box::pin(async move { told.await.map(|()| true) })
            },
        );
    }
    let pool = pool.connect_with(options).await.map_err(OpenError::Postgres)?;
    let create = async {
        let mut tx = pool.begin().await?;
        let lock = format!("SELECT pg_advisory_xact_lock(hashtext('regsweep.{schema}.schema'))");
        tx.execute(AssertSqlSafe(lock)).await?;
        tx.execute(AssertSqlSafe(format!("CREATE SCHEMA IF NOT EXISTS {schema}"))).await?;
        tx.commit().await
    };
    create.await.map_err(OpenError::Postgres)?;
    migrator.run(&pool).await.map_err(migrate_error)?;
    Ok(pool)
}

/// Tells a connection the time of `clock`, which `store_now()` then reads
/// (see [`crate::clock`]).
fn tell_time<'c>(
    conn: &'c mut sqlx::PgConnection,
    clock: &Clock,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), sqlx::Error>> + Send + 'c>> {
    let now = clock.set_time().map(|t| t.to_rfc3339()).unwrap_or_default();
    Box::pin(async move {
        sqlx::query("SELECT set_config($1, $2, false)")
            .bind(crate::clock::SETTING)
            .bind(now)
            .execute(conn)
            .await
            .map(drop)
    })
}

/// The pools of a SQLite database: one writer connection (SQLite has one
/// writer at a time; queueing writers in the pool beats spinning on
/// `SQLITE_BUSY`) and `readers` read-only connections, which WAL lets read
/// while the writer writes. The database belongs to this process while the
/// pools live: its announcements (what PostgreSQL sends with NOTIFY) stay
/// in-process, so a second process would miss them.
#[derive(Clone, Debug)]
pub struct SqlitePools {
    pub writer: SqlitePool,
    pub reader: SqlitePool,
    /// An exclusive lock on `PATH.lock`, released when the last clone is
    /// dropped or the process ends (however it ends).
    _lock: Option<std::sync::Arc<std::fs::File>>,
}

/// Takes `PATH.lock` for this process, or says who holds it.
fn lock(path: &str) -> Result<std::fs::File, OpenError> {
    let lock_path = format!("{path}.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| OpenError::Sqlite { path: path.to_string(), source: sqlx::Error::Io(e) })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(OpenError::InUse { path: path.to_string() }),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(OpenError::Sqlite { path: path.to_string(), source: sqlx::Error::Io(e) })
        }
    }
}

impl SqlitePools {
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}

/// Opens (creating it if missing, not its directory) and migrates the
/// SQLite database of `url`.
pub async fn open_sqlite(
    url: &str,
    readers: u32,
    migrator: &Migrator,
) -> Result<SqlitePools, OpenError> {
    let options = SqliteConnectOptions::from_str(url)
        .map_err(OpenError::Url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // With WAL, NORMAL loses no committed transaction on a process
        // crash, only on power loss: the usual trade for a local store.
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true);
    let path = options.get_filename().display().to_string();
    let in_memory = path == ":memory:" || url.contains("mode=memory");
    let held = if in_memory { None } else { Some(std::sync::Arc::new(lock(&path)?)) };
    let open_error = |source| OpenError::Sqlite { path: path.clone(), source };
    let writer = SqlitePoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(30))
        // The one connection is never recycled mid-run, nor pinged before
        // each use: it is local, and every write waits for it.
        .test_before_acquire(false)
        .max_lifetime(None)
        .idle_timeout(None)
        .connect_with(options.clone())
        .await
        .map_err(open_error)?;
    // Opening succeeds on a read-only file; writing is what fails.
    writer.execute("PRAGMA user_version = 0").await.map_err(open_error)?;
    migrator.run(&writer).await.map_err(migrate_error)?;
    let reader = if in_memory {
        writer.clone()
    } else {
        SqlitePoolOptions::new()
            .max_connections(readers.max(1))
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.read_only(true))
            .await
            .map_err(open_error)?
    };
    Ok(SqlitePools { writer, reader, _lock: held })
}

/// The statement that starts a write transaction: it takes SQLite's write
/// lock at once, so another process writing the same file makes it wait
/// (`busy_timeout`) instead of failing when a read turns into a write.
pub const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

/// A stored time, as either store keeps it: PostgreSQL's `timestamptz`
/// or SQLite's integer microseconds.
pub trait StoredTime {
    fn into_time(self) -> chrono::DateTime<chrono::Utc>;
}

impl StoredTime for chrono::DateTime<chrono::Utc> {
    fn into_time(self) -> chrono::DateTime<chrono::Utc> {
        self
    }
}

impl StoredTime for i64 {
    fn into_time(self) -> chrono::DateTime<chrono::Utc> {
        micros::time(self)
    }
}

/// A stored list of strings: a PostgreSQL array or SQLite JSON text.
pub trait StoredList {
    fn into_vec(self) -> Vec<String>;
}

impl StoredList for Vec<String> {
    fn into_vec(self) -> Vec<String> {
        self
    }
}

impl StoredList for sqlx::types::Json<Vec<String>> {
    fn into_vec(self) -> Vec<String> {
        self.0
    }
}

/// Times in SQLite are integer microseconds since the Unix epoch: they
/// compare and add exactly, unlike text.
pub mod micros {
    use std::time::Duration;

    use chrono::{DateTime, Utc};

    pub fn of(t: DateTime<Utc>) -> i64 {
        t.timestamp_micros()
    }

    pub fn now() -> i64 {
        of(Utc::now())
    }

    /// A stored time; out-of-range values (never written) read as the epoch.
    pub fn time(us: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(us).unwrap_or_default()
    }

    pub fn span(d: Duration) -> i64 {
        i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes() {
        assert_eq!(Backend::of("postgres://u@h/db").unwrap(), Backend::Postgres);
        assert_eq!(Backend::of("postgresql://u@h/db").unwrap(), Backend::Postgres);
        assert_eq!(Backend::of("sqlite://data/x.db").unwrap(), Backend::Sqlite);
        assert_eq!(Backend::of("sqlite:x.db").unwrap(), Backend::Sqlite);
        let e = Backend::of("mysql://root:secret@h/db").unwrap_err().to_string();
        assert!(e.contains("\"mysql\"") && !e.contains("secret"), "{e}");
        assert!(Backend::of("no scheme here").is_err());
    }
}
