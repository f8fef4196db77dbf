//! regsweep's scheduler: the job queue on PostgreSQL, the sessions of the
//! workers that run its jobs, and the admin APIs.
//!
//! [`run`] binds and serves until the shutdown signal, then stops in this
//! order: the gRPC server stops accepting and worker sessions end; the
//! writer flushes what the sessions reported; the dispatcher and the
//! notification listener stop; the pool closes.

mod api;
pub mod config;
mod dispatch;
pub mod error;
pub mod kinds;
mod protocol;
mod session;
pub mod store;
mod writer;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use regsweep_common::Shutdown;
use regsweep_common::grpc::{self, ServeConfig};
use regsweep_proto::v1::job_service_server::JobServiceServer;
use regsweep_proto::v1::worker_service_server::WorkerServiceServer;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;
use tonic::service::Routes;

pub use config::Config;
pub use error::Error;

use crate::api::{JobApi, WorkerApi};
use crate::dispatch::Dispatcher;
use crate::session::SessionContext;
use crate::store::JobStore;
use crate::store::postgres::PgStore;
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
    let pg = PgStore::connect(&config.database_url, config.db_max_connections).await?;
    let store: Arc<dyn JobStore> = Arc::new(pg.clone());

    let loops = Shutdown::new();
    let (events_tx, events_rx) = mpsc::channel(1024);
    let listener_task = tokio::spawn({
        let store = store.clone();
        let loops = loops.clone();
        async move { store.listen(events_tx, loops).await }
    });
    let (dispatch, dispatcher) =
        Dispatcher::new(store.clone(), events_rx, config.poll_interval, config.max_claim_batch);
    let dispatcher_task = tokio::spawn(dispatcher.run(loops.clone()));
    let (writer_tx, writer) =
        Writer::new(store.clone(), config.heartbeat_ttl, config.max_write_batch);
    let writer_task = tokio::spawn(writer.run());

    let sessions = TaskTracker::new();
    let ctx = SessionContext {
        store: store.clone(),
        dispatch,
        writer: writer_tx,
        heartbeat_interval: config.heartbeat_interval,
        heartbeat_ttl: config.heartbeat_ttl,
        shutdown: shutdown.clone(),
    };
    let routes = Routes::builder()
        .add_service(
            JobServiceServer::new(JobApi::new(store.clone()))
                .max_decoding_message_size(MAX_ADMIN_MESSAGE_BYTES),
        )
        .add_service(
            WorkerServiceServer::new(WorkerApi::new(ctx, sessions.clone()))
                .max_decoding_message_size(MAX_WORKER_MESSAGE_BYTES),
        )
        .clone()
        .routes();
    let addr = grpc::local_addr(&listener).map(|a| a.to_string()).unwrap_or_default();
    tracing::info!(service = "scheduler", %addr, "listening");
    let served = grpc::serve(
        listener,
        ServeConfig {
            routes,
            service_names: vec!["regsweep.v1.JobService", "regsweep.v1.WorkerService"],
            drain_timeout: config.shutdown_timeout,
        },
        shutdown,
    )
    .await;

    // The server and its services are dropped: only session tasks still
    // hold the writer. Once they end, the writer flushes and stops.
    sessions.close();
    sessions.wait().await;
    if tokio::time::timeout(WRITER_DRAIN_TIMEOUT, writer_task).await.is_err() {
        tracing::warn!("writer did not flush within {WRITER_DRAIN_TIMEOUT:?}");
    }
    loops.trigger();
    let _ = dispatcher_task.await;
    let _ = listener_task.await;
    pg.close().await;
    tracing::info!("scheduler stopped");
    served.map_err(Error::from)
}

/// The address a `listening` log line reports, for tests reading it.
pub fn parse_listen_addr(addr: &str) -> Option<SocketAddr> {
    addr.parse().ok()
}
