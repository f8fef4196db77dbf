//! regsweep's worker: stateless, it holds no database credentials. It
//! keeps one stream to a scheduler, runs the jobs it is assigned, and
//! reconnects (resuming its identity and its running jobs) when the
//! stream breaks.
//!
//! On shutdown it drains: it says `Draining`, lets running jobs finish
//! within the grace period, gives back the rest as `worker_shutdown`,
//! delivers every final update and exits.

pub mod config;
mod connection;
mod job;
pub mod kinds;
mod lease;
mod outbox;
mod services;
mod state;

use std::sync::Arc;
use std::time::Duration;

use regsweep_common::Shutdown;
use regsweep_common::backoff::Backoff;
use regsweep_common::grpc::{self, GrpcError};

pub use config::Config;

use crate::connection::End;
use crate::services::Services;
use crate::state::{Drain, WorkerState};

/// First wait before reconnecting; doubled per failure up to
/// `--reconnect-max-backoff`.
const RECONNECT_FIRST: Duration = Duration::from_millis(100);

/// Why the worker stopped with a failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Flags that cannot work.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The scheduler URL is malformed.
    #[error(transparent)]
    Endpoint(#[from] GrpcError),
    /// The scheduler refused this worker; reconnecting would not help.
    #[error("scheduler refused this worker: {0}")]
    Rejected(String),
    /// The token cannot be used.
    #[error(transparent)]
    Token(#[from] regsweep_common::auth::ClientTokenError),
    /// The metrics endpoint could not start.
    #[error(transparent)]
    Metrics(#[from] regsweep_common::prometheus::MetricsError),
}

/// Runs the worker until it has drained after `shutdown`.
pub async fn run(config: Config, shutdown: Shutdown) -> Result<(), Error> {
    let capacity = config.capacity_map().map_err(Error::Config)?;
    if config.scheduler.is_empty() {
        return Err(Error::Config("--scheduler needs at least one URL".into()));
    }
    regsweep_common::tls::install_client(&config.tls, &config.tls_client)
        .map_err(GrpcError::from)?;
    regsweep_common::auth::install_client_token(&config.auth)?;
    for url in &config.scheduler {
        grpc::endpoint(url)?;
    }
    let metrics_stop = Shutdown::new();
    if let Some(addr) = &config.metrics.metrics_addr {
        regsweep_common::prometheus::serve(addr, metrics_stop.clone()).await?;
        job::describe_metrics();
    }
    // Dropped on every way out, which stops the metrics endpoint.
    let _metrics = metrics_stop.trigger_on_drop();
    let services = Arc::new(Services::new(&config.scheduler, &config.scrubber)?);
    let mut state =
        WorkerState::new(config.worker_name(), capacity, services, config.max_buffered_log_lines);
    tracing::info!(scheduler = ?config.scheduler, name = %state.name, capacity = ?state.capacity, "worker starting");
    let mut backoff = Backoff::new(RECONNECT_FIRST, config.reconnect_max_backoff).retries();
    let mut next_url = 0;
    loop {
        let end = connection::session(
            &mut state,
            &config.scheduler[next_url],
            &shutdown,
            config.shutdown_grace,
        )
        .await;
        match end {
            End::Drained => {
                tracing::info!("drained, exiting");
                return Ok(());
            }
            End::Rejected(status) => {
                state.give_back_all();
                return Err(Error::Rejected(status.message().to_string()));
            }
            End::Lost { reason, welcomed } => {
                next_url = (next_url + 1) % config.scheduler.len();
                if welcomed {
                    backoff.reset();
                }
                if shutdown.is_triggered() {
                    state.drain.start(config.shutdown_grace);
                    Drain::check(&mut state);
                    if state.is_idle() && state.outbox_rx.is_empty() {
                        tracing::info!("nothing left to report, exiting");
                        return Ok(());
                    }
                    if state.drain.gave_up() {
                        tracing::warn!(
                            running = state.running.len(),
                            "could not report every job before exiting"
                        );
                        return Ok(());
                    }
                }
                let delay = backoff.next_delay();
                tracing::warn!(%reason, retry_in = ?delay, "scheduler stream lost");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = shutdown.cancelled(), if !shutdown.is_triggered() => {}
                }
            }
        }
    }
}
