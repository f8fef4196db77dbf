//! A fresh database per test on the local PostgreSQL server, dropped after.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions as _, Connection, PgConnection};

/// Where the tests find PostgreSQL; any database the user may connect to.
pub fn admin_url() -> String {
    std::env::var("REGSWEEP_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// A database that exists for one test.
pub struct TestDb {
    pub name: String,
    pub url: String,
    admin_url: String,
}

impl TestDb {
    /// Creates `regsweep_it_<random>`. Panics with a clear message when
    /// PostgreSQL cannot be reached: the tests never skip silently.
    pub async fn create() -> Self {
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
        Self { name, url, admin_url }
    }

    /// A pool on the scheduler's schema, for assertions on stored state.
    pub async fn scheduler_pool(&self) -> PgPool {
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

impl Drop for TestDb {
    fn drop(&mut self) {
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
