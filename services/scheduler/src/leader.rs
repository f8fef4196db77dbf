//! Leadership: one replica at a time holds the `leader` lease and runs the
//! loops that must not run twice: the reaper of dead workers, the crons,
//! the cleanup selection, and the scheduler's own job kinds (retention). Losing the lease, or
//! failing to renew it in time, stops those loops before another replica
//! can take over.

use std::sync::Arc;
use std::time::{Duration, Instant};

use regsweep_common::{Shutdown, Supervisor};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::acks::LeaseClock;
use crate::cleanup::CleanupLoop;
use crate::health::DbHealth;
use crate::internal::{InternalRunner, RunnerIdentity};
use crate::store::{Fence, JobStore, StoreError};
use crate::{gauges, schedule};

const LEASE: &str = "leader";

#[derive(Clone, Debug)]
pub struct LeaderConfig {
    pub lease: Duration,
    pub reap_interval: Duration,
    pub heartbeat_ttl: Duration,
    /// How often the database gauges are refreshed (with metrics on).
    pub metrics_interval: Duration,
    /// Whether this replica reaches the database; the reaper waits for it.
    pub health: Arc<DbHealth>,
    /// Told when this replica's lease is won, renewed and given up
    /// (heartbeat acks vouch by it during outages).
    pub lease_clock: Arc<LeaseClock>,
    /// Watches the leader loops: one that dies while leading stops the
    /// process rather than leave a leader that no longer reaps or fires.
    pub supervisor: Supervisor,
}

/// The loops of one term of leadership, and what stops them (also when
/// the leader loop itself dies: none outlives it).
type Term = (Shutdown, Vec<JoinHandle<()>>, tokio_util::sync::DropGuard);

/// Competes for the lease until `shutdown`, running the leader loops while
/// it holds it; gives the lease up on the way out.
pub async fn run(
    store: Arc<dyn JobStore>,
    replica: Uuid,
    config: LeaderConfig,
    cleanup: CleanupLoop,
    shutdown: Shutdown,
) {
    let mut leading: Option<Term> = None;
    let identity = RunnerIdentity::default();
    let mut renewed = Instant::now();
    // Stop leading well before the lease could have expired unrenewed.
    let give_up_after = config.lease.mul_f64(2.0 / 3.0);
    loop {
        // A renewal blocked (waiting for a connection, a lock) must not
        // keep the leader loops running past the point where another
        // replica may lead: it is given up at the local deadline.
        let wait = if leading.is_some() {
            give_up_after.saturating_sub(renewed.elapsed())
        } else {
            config.lease
        };
        let started = Instant::now();
        let renewal = tokio::time::timeout(wait, store.try_lease(LEASE, replica, config.lease));
        // Timed out is unavailable, as a pool's own timeout is.
        let renewal = renewal
            .await
            .unwrap_or_else(|_| Err(StoreError::Unavailable(sqlx::Error::PoolTimedOut)));
        if renewal.is_err() {
            config.health.trouble();
        }
        match renewal {
            Ok(true) => {
                renewed = Instant::now();
                config.lease_clock.held(started, config.lease);
                if leading.is_none() {
                    tracing::info!(%replica, lease = ?config.lease, "became leader");
                    leading = Some(start(&store, &config, &cleanup, replica, &identity));
                }
            }
            Ok(false) => {
                config.lease_clock.released();
                if let Some(tasks) = leading.take() {
                    tracing::warn!(%replica, "lost leadership to another replica");
                    stop(tasks).await;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot renew the leader lease");
                if renewed.elapsed() >= give_up_after
                    && let Some(tasks) = leading.take()
                {
                    // The clock keeps the lease's end: no other replica
                    // can lead before it, whether or not this one does.
                    tracing::warn!(%replica, "stepping down: lease not renewed in time");
                    stop(tasks).await;
                }
            }
        }
        // The leader renews at a third of the lease; the others look ten
        // times per lease, so a dead leader is replaced soon after expiry.
        let pause = if leading.is_some() { config.lease / 3 } else { config.lease / 10 };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = shutdown.cancelled() => break,
        }
    }
    config.lease_clock.released();
    if let Some(tasks) = leading.take() {
        stop(tasks).await;
        if let Err(e) = store.release_lease(LEASE, replica).await {
            tracing::warn!(error = %e, "cannot release the leader lease");
        } else {
            tracing::info!(%replica, "released leadership");
        }
    }
}

/// The fence of this replica's leader-only writes.
fn fence(replica: Uuid) -> Fence {
    Fence { lease: LEASE, holder: replica }
}

fn start(
    store: &Arc<dyn JobStore>,
    config: &LeaderConfig,
    cleanup: &CleanupLoop,
    replica: Uuid,
    identity: &RunnerIdentity,
) -> Term {
    let stop = Shutdown::new();
    let supervisor = &config.supervisor;
    let reaper = reaper(store.clone(), config.clone(), replica, stop.clone());
    let runner =
        InternalRunner::new(store.clone(), replica, config.heartbeat_ttl, identity.clone());
    let mut tasks = vec![
        supervisor.spawn("reaper", &stop, reaper),
        supervisor.spawn("crons", &stop, crons(store.clone(), replica, stop.clone())),
        supervisor.spawn("cleanup", &stop, cleanup.clone().run(stop.clone(), fence(replica))),
        supervisor.spawn("internal runner", &stop, runner.run(stop.clone())),
    ];
    if regsweep_common::prometheus::enabled() {
        let gauges = gauges::refresh(
            store.clone(),
            cleanup.catalog.clone(),
            cleanup.selection.capacity,
            config.metrics_interval,
            stop.clone(),
        );
        tasks.push(supervisor.spawn("gauges", &stop, gauges));
    }
    let guard = stop.trigger_on_drop();
    (stop, tasks, guard)
}

async fn stop((signal, tasks, _guard): Term) {
    signal.trigger();
    for task in tasks {
        let _ = task.await;
    }
}

/// Declares workers dead once their heartbeat expired; their attempts
/// become claimable again (or end, when no attempts remain). An outage is
/// not a death: nothing is reaped until this replica has reached the
/// database for a whole TTL, in which every live worker heartbeated and
/// was written (`health`). The statement itself checks that this replica
/// still holds the lease, so a reaper that outlived its leadership (a
/// call blocked past the deadline) changes nothing.
async fn reaper(store: Arc<dyn JobStore>, config: LeaderConfig, replica: Uuid, stop: Shutdown) {
    let mut ticker = tokio::time::interval(config.reap_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A new leader knows nothing of what was written before it led.
    config.health.trouble();
    let mut holding = false;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = stop.cancelled() => return,
        }
        let steady = config.health.steady_for();
        if steady < config.heartbeat_ttl {
            if !holding {
                tracing::info!(steady = ?steady, ttl = ?config.heartbeat_ttl, "database not steady for a heartbeat ttl: reaping held");
                holding = true;
            }
            continue;
        }
        if std::mem::take(&mut holding) {
            tracing::info!("reaping resumed");
        }
        let reaped = store.reap_expired_workers(fence(replica)).await;
        if reaped.is_err() {
            config.health.trouble();
        }
        match reaped {
            Ok(reaped) if !reaped.workers.is_empty() => {
                gauges::record_reaped(reaped.workers.len(), reaped.jobs);
                tracing::warn!(workers = ?reaped.workers, jobs = reaped.jobs, "heartbeat expired, workers declared dead");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "reaper failed"),
        }
    }
}

/// Fires due crons, sleeping until the next one is due (at most a second,
/// so new and changed crons are noticed).
async fn crons(store: Arc<dyn JobStore>, replica: Uuid, stop: Shutdown) {
    loop {
        match store.fire_due_crons(schedule::next_after, fence(replica)).await {
            Ok(fired) => {
                for f in fired {
                    tracing::info!(cron = %f.cron, fire_at = %f.fire_at, job_id = f.job_id, "cron fired");
                }
            }
            Err(e) => tracing::warn!(error = %e, "firing crons failed"),
        }
        let pause = match store.next_cron_due().await {
            Ok(Some(due)) => (due - chrono::Utc::now()).to_std().unwrap_or(Duration::ZERO),
            Ok(None) | Err(_) => Duration::from_secs(1),
        };
        tokio::select! {
            () = tokio::time::sleep(pause.min(Duration::from_secs(1))) => {}
            () = stop.cancelled() => return,
        }
    }
}
