//! A fresh database per test: on the local PostgreSQL server (dropped
//! after), or SQLite files in a temporary directory when
//! `REGSWEEP_TEST_STORE=sqlite` (the conformance run of the same tests).

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions as _, Connection, PgConnection};

/// Where the tests find PostgreSQL; any database the user may connect to.
pub fn admin_url() -> String {
    std::env::var("REGSWEEP_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// Which store the tests run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Store {
    Postgres,
    Sqlite,
}

impl Store {
    /// From `REGSWEEP_TEST_STORE` (`postgres`, the default, or `sqlite`);
    /// anything else fails the test rather than silently picking one.
    pub fn from_env() -> Self {
        match std::env::var("REGSWEEP_TEST_STORE").as_deref() {
            Err(_) | Ok("") | Ok("postgres") => Self::Postgres,
            Ok("sqlite") => Self::Sqlite,
            Ok(other) => panic!("REGSWEEP_TEST_STORE={other:?}: use postgres or sqlite"),
        }
    }
}

/// A database that exists for one test.
pub struct TestDb {
    pub name: String,
    /// The scheduler's database URL.
    pub url: String,
    /// The scrubber's database URL (the same PostgreSQL database, another
    /// schema; or a SQLite file of its own).
    pub scrubber_url: String,
    pub store: Store,
    admin_url: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// A database on the store `REGSWEEP_TEST_STORE` names.
    pub async fn create() -> Self {
        match Store::from_env() {
            Store::Postgres => Self::postgres().await,
            Store::Sqlite => Self::sqlite(),
        }
    }

    /// SQLite files in a fresh temporary directory.
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = |file: &str| format!("sqlite://{}", dir.path().join(file).display());
        Self {
            name: dir.path().display().to_string(),
            url: url("scheduler.db"),
            scrubber_url: url("scrubber.db"),
            store: Store::Sqlite,
            admin_url: String::new(),
            _dir: Some(dir),
        }
    }

    /// Creates `regsweep_it_<random>`. Panics with a clear message when
    /// PostgreSQL cannot be reached: the tests never skip silently.
    pub async fn postgres() -> Self {
        let admin_url = admin_url();
        let mut admin = PgConnection::connect(&admin_url).await.unwrap_or_else(|e| {
            panic!(
                "cannot connect to PostgreSQL at {admin_url} ({e}); start it (see README, \
                 `make deps`) or set REGSWEEP_TEST_DATABASE_URL"
            )
        });
        let name = format!("regsweep_it_{:016x}", rand::random::<u64>());
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create test database");
        let options =
            PgConnectOptions::from_str(&admin_url).expect("valid admin url").database(&name);
        let url = options.to_url_lossy().to_string();
        Self { name, scrubber_url: url.clone(), url, store: Store::Postgres, admin_url, _dir: None }
    }

    /// A pool on the scheduler's schema, for assertions on stored state
    /// (tests that read PostgreSQL directly run on PostgreSQL only).
    pub async fn scheduler_pool(&self) -> PgPool {
        assert_eq!(self.store, Store::Postgres, "this test reads PostgreSQL directly");
        let options = PgConnectOptions::from_str(&self.url)
            .expect("valid url")
            .options([("search_path", "scheduler")]);
        PgPoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .expect("connect test db")
    }
}

/// Holds statements mid-way, so a test can act while one runs: each row
/// of `event` (`UPDATE OF status ON jobs`) whose new version matches `when`
/// (a condition on `NEW`) sleeps `seconds` in the database first. Named
/// `name` (the trigger and its function); the test database only.
pub async fn hold_rows(pool: &PgPool, name: &str, event: &str, when: &str, seconds: f64) {
    let sql = format!(
        "CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN PERFORM pg_sleep({seconds}); RETURN NEW; END $$;
         CREATE TRIGGER {name} BEFORE {event} FOR EACH ROW WHEN ({when})
             EXECUTE FUNCTION {name}();"
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(pool).await.expect("a holding trigger");
}

/// Waits until a statement is held by a `hold_rows` trigger.
pub async fn wait_held(pool: &PgPool, what: &str) {
    crate::wait_until(what, std::time::Duration::from_secs(20), || async move {
        let held: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event = 'PgSleep'",
        )
        .fetch_one(pool)
        .await
        .ok()?;
        (held > 0).then_some(())
    })
    .await;
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if self.store == Store::Sqlite {
            return;
        }
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop runs outside any runtime we may block: use a thread of its own.
        let dropper = std::thread::spawn(move || {
            let runtime =
                tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&admin_url).await.ok()?;
                sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                    .execute(&mut admin)
                    .await
                    .ok()
            })
        });
        let _ = dropper.join();
    }
}
