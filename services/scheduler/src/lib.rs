//! regsweep's scheduler: the job queue on PostgreSQL, the sessions of the
//! workers that run its jobs, and the admin APIs.
//!
//! [`run`] binds and serves until the shutdown signal, then stops in this
//! order: the gRPC server stops accepting and worker sessions end; the
//! writer flushes what the sessions reported; the leader loops stop and
//! the lease is released; the dispatcher and the notification listener
//! stop; the pool closes.

mod acks;
mod api;
pub mod cleanup;
pub mod config;
mod dispatch;
pub mod error;
mod gauges;
mod health;
mod internal;
pub mod kinds;
mod leader;
mod outbound;
mod protocol;
pub mod schedule;
mod session;
pub mod store;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use regsweep_common::auth::Access;
use regsweep_common::grpc::{self, ServeConfig};
use regsweep_common::{Shutdown, Supervisor, prometheus};
use regsweep_proto::v1::cron_service_server::CronServiceServer;
use regsweep_proto::v1::job_service_server::JobServiceServer;
use regsweep_proto::v1::policy_service_server::PolicyServiceServer;
use regsweep_proto::v1::registry_service_server::RegistryServiceServer;
use regsweep_proto::v1::repository_service_server::RepositoryServiceServer;
use regsweep_proto::v1::worker_service_server::WorkerServiceServer;
use tokio::net::TcpListener;
use tokio::sync::{Notify, broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;
use tonic::service::Routes;
use uuid::Uuid;

pub use config::Config;
pub use error::Error;

use crate::api::{CronApi, JobApi, PolicyApi, RegistryApi, RepositoryApi, WorkerApi};
use crate::cleanup::CleanupLoop;
use crate::dispatch::Dispatcher;
use crate::leader::LeaderConfig;
use crate::session::SessionContext;
use crate::store::catalog::SelectionConfig;
use crate::store::{JobStore, NewCron, Stores};
use crate::writer::Writer;

/// Largest admin request accepted.
const MAX_ADMIN_MESSAGE_BYTES: usize = 1024 * 1024;
/// Largest worker stream message accepted (a log chunk of 1000 long lines,
/// or a large job result).
const MAX_WORKER_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// How long the writer gets to flush after the sessions ended.
const WRITER_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds `config.listen` and serves until `shutdown` fires.
pub async fn run(config: Config, shutdown: Shutdown) -> Result<(), Error> {
    if config.migrate_only {
        Stores::open(&config.database_url, 1).await?.close().await;
        tracing::info!("schema migrated");
        return Ok(());
    }
    let listener = grpc::bind(&config.listen).await?;
    serve(config, listener, shutdown).await
}

/// Serves on an already bound listener (tests and `regsweep dev` bind port
/// 0 and read the address first).
pub async fn serve(config: Config, listener: TcpListener, shutdown: Shutdown) -> Result<(), Error> {
    let problems = config.problems();
    if !problems.is_empty() {
        return Err(Error::Config(problems.join("; ")));
    }
    // Before the store opens, so its operations are measured.
    let _metrics =
        prometheus::start(config.metrics.metrics_addr.as_deref(), gauges::describe).await?;
    let access = Access::from_args(&config.auth)?;
    let health_listener = config.health.bind().await?;
    let stores = Stores::open(&config.database_url, config.db_max_connections).await?;
    tracing::info!(backend = stores.backend(), "store opened");
    ensure_retention_cron(stores.jobs.as_ref(), &config).await;
    let supervisor = Supervisor::new("scheduler", shutdown.clone());
    let (tasks, session) = Tasks::spawn(&config, &stores, &supervisor, &shutdown);
    let sessions = TaskTracker::new();
    let routes = routes(&config, &stores, session, sessions.clone(), &shutdown);
    let addr = grpc::local_addr(&listener).map(|a| a.to_string()).unwrap_or_default();
    tracing::info!(service = "scheduler", %addr, replica = %tasks.replica, "listening");
    let served = grpc::serve(
        listener,
        ServeConfig {
            routes,
            service_names: SERVICE_NAMES.to_vec(),
            drain_timeout: config.shutdown_timeout,
            tls: regsweep_common::tls::server_config(&config.tls, &config.tls_server)
                .map_err(regsweep_common::grpc::GrpcError::from)?,
            access,
            health_listener,
        },
        shutdown.clone(),
    )
    .await;
    // A server that failed (a bad certificate, say) stops everything, and
    // its error is the one returned: the tasks it stops were asked to.
    shutdown.trigger();
    // The server and its services are dropped: only session tasks still
    // hold the writer. Once they end, the writer flushes and stops.
    sessions.close();
    sessions.wait().await;
    tasks.stop().await;
    stores.close().await;
    served?;
    if let Some(failure) = supervisor.failure() {
        return Err(failure.into());
    }
    tracing::info!("scheduler stopped");
    Ok(())
}

/// What the scheduler serves, as health and reflection name it.
const SERVICE_NAMES: [&str; 6] = [
    "regsweep.v1.JobService",
    "regsweep.v1.WorkerService",
    "regsweep.v1.CronService",
    "regsweep.v1.RegistryService",
    "regsweep.v1.RepositoryService",
    "regsweep.v1.PolicyService",
];

/// The tasks the scheduler cannot work without, each under the
/// supervisor: the first to die stops the process (and `serve` returns its
/// failure). Each may end only once shutdown began.
struct Tasks {
    replica: Uuid,
    /// Stops the loops (listener, dispatcher, leader), after the server.
    loops: Shutdown,
    listener: JoinHandle<()>,
    dispatcher: JoinHandle<()>,
    writer: JoinHandle<()>,
    leader: JoinHandle<()>,
}

impl Tasks {
    /// Spawns the tasks; returns them and what worker sessions share.
    fn spawn(
        config: &Config,
        stores: &Stores,
        supervisor: &Supervisor,
        shutdown: &Shutdown,
    ) -> (Self, SessionParts) {
        let store = stores.jobs.clone();
        let loops = Shutdown::new();
        let cleanup_ended = Arc::new(Notify::new());
        let (events_tx, events_rx) = mpsc::channel(1024);
        let listener = supervisor.spawn("listener", shutdown, {
            let (store, loops) = (store.clone(), loops.clone());
            async move { store.listen(events_tx, loops).await }
        });
        let (dispatch, dispatcher) = Dispatcher::new(
            store.clone(),
            events_rx,
            config.poll_interval,
            config.max_claim_batch,
            cleanup_ended.clone(),
        );
        let dispatcher = supervisor.spawn("dispatcher", shutdown, dispatcher.run(loops.clone()));
        let (written, _) = broadcast::channel(1024);
        let health = Arc::new(health::DbHealth::new());
        let lease_clock = Arc::new(acks::LeaseClock::default());
        let vouching =
            acks::Vouching::new(config.heartbeat_ttl, health.clone(), lease_clock.clone());
        let (writer_tx, writer) = Writer::new(
            store.clone(),
            config.heartbeat_ttl,
            config.max_write_batch,
            written.clone(),
            health.clone(),
        );
        // It ends once every session is gone, which only shutdown brings.
        let writer = supervisor.spawn("writer", shutdown, writer.run());
        let replica = Uuid::new_v4();
        let leader_config = LeaderConfig {
            lease: config.leader_lease,
            reap_interval: (config.heartbeat_interval / 2)
                .clamp(Duration::from_millis(100), Duration::from_secs(1)),
            heartbeat_ttl: config.heartbeat_ttl,
            metrics_interval: config.metrics_interval,
            health,
            lease_clock,
            supervisor: supervisor.clone(),
        };
        let cleanups = cleanup_loop(config, stores, cleanup_ended);
        let leader = leader::run(store.clone(), replica, leader_config, cleanups, loops.clone());
        let leader = supervisor.spawn("leader", shutdown, leader);
        let session = SessionParts { dispatch, writer: writer_tx, vouching, written };
        (Self { replica, loops, listener, dispatcher, writer, leader }, session)
    }

    /// Once every session is gone: lets the writer flush, then stops the
    /// loops and waits for them.
    async fn stop(self) {
        if tokio::time::timeout(WRITER_DRAIN_TIMEOUT, self.writer).await.is_err() {
            tracing::warn!("writer did not flush within {WRITER_DRAIN_TIMEOUT:?}");
        }
        self.loops.trigger();
        let _ = self.leader.await;
        let _ = self.dispatcher.await;
        let _ = self.listener.await;
    }
}

/// The handles worker sessions and the job API share with the tasks.
struct SessionParts {
    dispatch: dispatch::DispatchHandle,
    writer: mpsc::Sender<writer::WriteOp>,
    vouching: acks::Vouching,
    /// The ids of jobs whose logs or status a flush changed.
    written: broadcast::Sender<i64>,
}

/// The leader's cleanup selection, as configured.
fn cleanup_loop(config: &Config, stores: &Stores, wake: Arc<Notify>) -> CleanupLoop {
    CleanupLoop {
        catalog: stores.catalog.clone(),
        selection: SelectionConfig {
            capacity: config.cleanup_capacity,
            stale_after: config.cleanup_time_budget + config.cleanup_stale_margin,
            time_budget: config.cleanup_time_budget,
            max_attempts: 3,
            arm_limit: 50_000,
        },
        tick: config.tick,
        wake,
    }
}

/// Every service the scheduler serves, with its message size limit.
fn routes(
    config: &Config,
    stores: &Stores,
    parts: SessionParts,
    sessions: TaskTracker,
    shutdown: &Shutdown,
) -> Routes {
    let (store, catalog) = (&stores.jobs, &stores.catalog);
    let ctx = SessionContext {
        store: store.clone(),
        dispatch: parts.dispatch,
        writer: parts.writer,
        heartbeat_interval: config.heartbeat_interval,
        heartbeat_ttl: config.heartbeat_ttl,
        vouching: parts.vouching,
        shutdown: shutdown.clone(),
    };
    let jobs = JobApi::new(store.clone(), parts.written, shutdown.clone());
    let policies = PolicyApi::new(catalog.clone(), store.clone(), config.preview_timeout);
    let repositories = RepositoryApi::new(catalog.clone(), store.clone(), config.cleanup_capacity);
    let workers = WorkerApi::new(ctx, sessions, config.max_worker_streams);
    Routes::builder()
        .add_service(JobServiceServer::new(jobs).max_decoding_message_size(MAX_ADMIN_MESSAGE_BYTES))
        .add_service(
            CronServiceServer::new(CronApi::new(store.clone()))
                .max_decoding_message_size(MAX_ADMIN_MESSAGE_BYTES),
        )
        .add_service(
            RegistryServiceServer::new(RegistryApi::new(catalog.clone(), store.clone()))
                .max_decoding_message_size(MAX_ADMIN_MESSAGE_BYTES),
        )
        .add_service(
            PolicyServiceServer::new(policies).max_decoding_message_size(MAX_ADMIN_MESSAGE_BYTES),
        )
        // Catalog reports carry up to 10,000 names.
        .add_service(
            RepositoryServiceServer::new(repositories)
                .max_decoding_message_size(MAX_WORKER_MESSAGE_BYTES),
        )
        .add_service(
            WorkerServiceServer::new(workers).max_decoding_message_size(MAX_WORKER_MESSAGE_BYTES),
        )
        .clone()
        .routes()
}

/// Creates the default retention cron unless it exists (operators may
/// have changed or disabled it: it is never overwritten).
async fn ensure_retention_cron(store: &dyn JobStore, config: &Config) {
    let Some(next_fire_at) =
        schedule::next_after(&config.job_retention_schedule, chrono::Utc::now())
    else {
        return;
    };
    let cron = NewCron {
        name: RETENTION_CRON.to_string(),
        schedule: config.job_retention_schedule.clone(),
        kind: "joblogs_gc".to_string(),
        args: serde_json::json!({
            "older_than_seconds": config.job_retention.as_secs(),
            "keep_last": config.job_retention_count,
        }),
        enabled: true,
        priority: 0,
        next_fire_at,
    };
    match store.create_cron(cron).await {
        Ok(Some(_)) => tracing::info!(cron = RETENTION_CRON, "created the default retention cron"),
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "cannot create the default retention cron"),
    }
}

/// Name of the retention cron every scheduler makes sure exists.
pub const RETENTION_CRON: &str = "joblogs-gc";
