//! regsweep's scrubber: deletions planned by cleanups wait out a delay (and
//! can be restored), then are deleted from their registries in parallel,
//! within each registry's rate limits, by any number of replicas.
//!
//! [`run`] stops in this order: the gRPC server stops accepting; the runner
//! stops claiming and lets images in flight finish (bounded); the pool
//! closes.

mod api;
mod audit;
pub mod config;
pub mod error;
mod gauges;
mod limits;
mod plans;
mod runner;
mod scrub;
mod snapshot;
pub mod store;
mod untag;

use std::sync::Arc;

use regsweep_common::grpc::{self, GrpcError, ServeConfig};
use regsweep_common::{Shutdown, Supervisor};
use regsweep_common::{auth, tls};
use regsweep_proto::v1::repository_service_client::RepositoryServiceClient;
use regsweep_proto::v1::scrubber_service_server::ScrubberServiceServer;
use regsweep_registry::{Directory, Gate};
use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic::transport::Channel;
use uuid::Uuid;

pub use config::Config;
pub use error::Error;

use crate::api::ScrubberApi;
use crate::limits::Limits;
use crate::plans::Plans;
use crate::runner::{Runner, RunnerConfig};
use crate::snapshot::Snapshots;

/// Largest request accepted (a submission of 10,000 images).
const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

pub async fn run(config: Config, shutdown: Shutdown) -> Result<(), Error> {
    if config.migrate_only {
        store::open(&config.database_url, 1).await?.close().await;
        tracing::info!("schema migrated");
        return Ok(());
    }
    let listener = grpc::bind(&config.listen).await?;
    serve(config, listener, shutdown).await
}

/// A lazily dialed channel balanced over the scheduler URLs.
fn scheduler_channel(urls: &[String]) -> Result<Channel, Error> {
    let endpoints = urls.iter().map(|u| grpc::endpoint(u)).collect::<Result<Vec<_>, _>>()?;
    Ok(Channel::balance_list(endpoints.into_iter()))
}

pub async fn serve(config: Config, listener: TcpListener, shutdown: Shutdown) -> Result<(), Error> {
    let problems = config.problems();
    if !problems.is_empty() {
        return Err(Error::Config(problems.join("; ")));
    }
    let tls = tls::server_config(&config.tls, &config.tls_server).map_err(GrpcError::from)?;
    tls::install_client(&config.tls, &config.tls_client).map_err(GrpcError::from)?;
    auth::install_client_token(&config.client_auth)?;
    let access = auth::Access::from_args(&config.auth)?;
    let health_listener = config.health.bind().await?;
    // Before the store opens, so its operations are measured.
    let metrics_addr = config.metrics.metrics_addr.as_deref();
    let _metrics = regsweep_common::prometheus::start(metrics_addr, gauges::describe).await?;
    let store = store::open(&config.database_url, config.db_max_connections).await?;
    let scheduler = scheduler_channel(&config.scheduler)?;
    // Every task below is one the scrubber cannot work without: the first
    // to die stops the process (and `serve` returns its failure).
    let supervisor = Supervisor::new("scrubber", shutdown.clone());
    let loops = Shutdown::new();
    let (api, tasks) = spawn(&config, store.clone(), scheduler, &supervisor, &shutdown, &loops);
    let routes = Routes::builder()
        .add_service(ScrubberServiceServer::new(api).max_decoding_message_size(MAX_MESSAGE_BYTES))
        .clone()
        .routes();
    let addr = grpc::local_addr(&listener).map(|a| a.to_string()).unwrap_or_default();
    tracing::info!(service = "scrubber", %addr, replica = %tasks.holder, delay = ?config.delay,
        parallelism = config.parallelism, "listening");
    let served = grpc::serve(
        listener,
        ServeConfig {
            routes,
            service_names: vec!["regsweep.v1.ScrubberService"],
            drain_timeout: config.shutdown_timeout,
            tls,
            access,
            health_listener,
        },
        shutdown.clone(),
    )
    .await;
    // A server that failed stops everything, and its error is the one
    // returned: the tasks it stops were asked to.
    shutdown.trigger();
    loops.trigger();
    let _ = tasks.runner.await;
    // The writer flushes the last answers and ends once no client is left.
    if tokio::time::timeout(config.shutdown_timeout, tasks.answers).await.is_err() {
        tracing::warn!("registry answers still queued at shutdown; their requests stay on record");
    }
    store.close().await;
    served?;
    if let Some(failure) = supervisor.failure() {
        return Err(failure.into());
    }
    tracing::info!("scrubber stopped");
    Ok(())
}

/// The tasks `serve` waits for when it stops.
struct Tasks {
    holder: Uuid,
    runner: tokio::task::JoinHandle<()>,
    answers: tokio::task::JoinHandle<()>,
}

/// Spawns the scrubber's tasks under `supervisor` (the audit writer, the
/// runner, audit pruning and, when metrics are served, the gauges) and
/// returns the API that shares their state.
fn spawn(
    config: &Config,
    store: Arc<dyn store::DeletionStore>,
    scheduler: Channel,
    supervisor: &Supervisor,
    shutdown: &Shutdown,
    loops: &Shutdown,
) -> (ScrubberApi, Tasks) {
    let limits = Arc::new(Limits::new(config.default_max_parallel));
    let gates = limits.clone();
    let (audit_log, answers) = audit::AuditLog::new(store.clone());
    // It ends once no client is left, which only shutdown brings.
    let answers = supervisor.spawn("audit writer", shutdown, answers);
    let directory = Arc::new(
        Directory::new(scheduler.clone())
            .with_gates(Box::new(move |registry| gates.of(registry) as Arc<dyn Gate>))
            .with_audit(Arc::new(audit_log)),
    );
    let holder = Uuid::new_v4();
    let plans = Arc::new(Plans::new(scheduler.clone()));
    let due = Arc::new(tokio::sync::Notify::new());
    let runner = Runner {
        plans: plans.clone(),
        store: store.clone(),
        directory: directory.clone(),
        limits: limits.clone(),
        holder,
        snapshots: Snapshots::new(config.tag_snapshot_ttl),
        repositories: RepositoryServiceClient::new(grpc::client(scheduler)),
        unreported: Default::default(),
        due: due.clone(),
        config: RunnerConfig {
            parallelism: config.parallelism,
            lease: config.lease,
            poll_interval: config.poll_interval,
            max_attempts: config.max_attempts,
            drain_timeout: config.shutdown_timeout,
        },
    };
    let runner = supervisor.spawn("runner", shutdown, runner.run(loops.clone()));
    let prune = audit::prune(store.clone(), config.audit_retention, loops.clone());
    supervisor.spawn("audit pruning", shutdown, prune);
    if regsweep_common::prometheus::enabled() {
        let interval = config.metrics_interval;
        let refresh = gauges::refresh(store.clone(), limits.clone(), interval, loops.clone());
        supervisor.spawn("gauges", shutdown, refresh);
    }
    let api = ScrubberApi {
        store,
        directory,
        limits,
        plans,
        delay: config.delay,
        parallelism: config.parallelism,
        due,
    };
    (api, Tasks { holder, runner, answers })
}
