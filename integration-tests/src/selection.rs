//! Measuring the cleanup selection on a large catalog: repositories
//! inserted directly (no registry behind them), one due policy, ticks
//! timed one by one through the store the scheduler uses.

use std::time::{Duration, Instant};

use regsweep_scheduler::cleanup::advance;
use regsweep_scheduler::store::catalog::{CatalogStore, Selection, SelectionConfig};
use regsweep_scheduler::store::postgres::PgStore;
use regsweep_scheduler::store::{Fence, JobStore};
use sqlx::PgPool;

use crate::TestDb;

/// A scheduler store holding `repositories` repositories of one policy.
pub struct SelectionProbe {
    pub store: PgStore,
    pub pool: PgPool,
    pub config: SelectionConfig,
}

impl SelectionProbe {
    /// Migrates `db`, inserts a registry, a policy covering every
    /// repository, and `repositories` repositories.
    pub async fn populate(db: &TestDb, repositories: u64, capacity: u32) -> Self {
        let store =
            PgStore::connect(&db.url, 4, &Default::default()).await.expect("connect and migrate");
        let pool = db.scheduler_pool().await;
        sqlx::query("INSERT INTO registries (name, url) VALUES ('bench', 'http://127.0.0.1:9')")
            .execute(&pool)
            .await
            .expect("insert registry");
        sqlx::query(
            "INSERT INTO policies (name, registry_id, repository_selector, cadence, next_run_at, dry_run)
             SELECT 'all', id, '**', '1d', now() + interval '1 day', true FROM registries",
        )
        .execute(&pool)
        .await
        .expect("insert policy");
        sqlx::query(
            "INSERT INTO repositories (registry_id, name, policy_id)
             SELECT g.id, 'repo/' || n, p.id
             FROM registries g, policies p, generate_series(1, $1) AS n",
        )
        .bind(i64::try_from(repositories).expect("count fits"))
        .execute(&pool)
        .await
        .expect("insert repositories");
        sqlx::query("ANALYZE repositories").execute(&pool).await.expect("analyze");
        let config = SelectionConfig {
            capacity,
            stale_after: Duration::from_secs(3600),
            time_budget: Duration::from_secs(300),
            max_attempts: 3,
            arm_limit: 50_000,
        };
        Self { store, pool, config }
    }

    /// Makes the policy due and runs ticks until every repository is
    /// marked; returns how long marking took in all.
    pub async fn arm(&self) -> Duration {
        sqlx::query(
            "UPDATE policies SET next_run_at = now() - interval '1 second', armed_run_at = NULL",
        )
        .execute(&self.pool)
        .await
        .expect("make policy due");
        let started = Instant::now();
        loop {
            let s = self.tick().await;
            // Give the slots back so marking, not capacity, is measured.
            self.release_ongoing().await;
            if !s.arming_incomplete {
                return started.elapsed();
            }
        }
    }

    /// One selection tick.
    pub async fn tick(&self) -> Selection {
        // Selection is leader-only work: the probe leads.
        let fence = Fence { lease: "leader", holder: uuid::Uuid::from_u128(1) };
        let lease = std::time::Duration::from_secs(3600);
        assert!(self.store.try_lease(fence.lease, fence.holder, lease).await.expect("lease"));
        self.store.select_cleanups(&self.config, advance, fence).await.expect("selection tick")
    }

    /// Ends every `ongoing` cleanup as the trigger would (untimed).
    pub async fn release_ongoing(&self) {
        sqlx::query("UPDATE jobs SET status = 'done', finished_at = now() WHERE kind = 'tag_cleanup' AND status = 'waiting'")
            .execute(&self.pool)
            .await
            .expect("finish cleanup jobs");
    }

    /// Times `ticks` ticks that each fill every slot; the slots are freed
    /// between ticks, untimed.
    pub async fn time_picks(&self, ticks: usize) -> Vec<(Duration, usize)> {
        let mut samples = Vec::with_capacity(ticks);
        for _ in 0..ticks {
            let started = Instant::now();
            let s = self.tick().await;
            samples.push((started.elapsed(), s.started.len()));
            self.release_ongoing().await;
        }
        samples
    }
}
