//! The Prometheus endpoint every service serves with `--metrics-addr`.
//!
//! Metrics are recorded through the `metrics` facade; until a recorder is
//! installed (no `--metrics-addr`) every recording is a no-op, so services
//! pay nothing for metrics nobody scrapes.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{BuildError, PrometheusBuilder, PrometheusHandle};

use crate::Shutdown;
use crate::grpc::{self, GrpcError};

/// Histogram buckets in seconds, from a fast database statement to a slow
/// registry call.
const BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The `--metrics-addr` flag, shared by every service.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct MetricsArgs {
    /// Serve Prometheus metrics at `http://ADDR/metrics` (e.g.
    /// `0.0.0.0:9090`); off when unset.
    #[arg(long = "metrics-addr", env = "REGSWEEP_METRICS_ADDR")]
    pub metrics_addr: Option<String>,
}

/// Errors of starting the metrics endpoint.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The listen address could not be bound.
    #[error(transparent)]
    Bind(#[from] GrpcError),
    /// The recorder could not be built.
    #[error("cannot record metrics: {0}")]
    Recorder(#[from] BuildError),
}

/// Whether a recorder is installed, so loops that only feed gauges (and
/// cost database reads) can stay off without one.
pub fn enabled() -> bool {
    HANDLE.get().is_some()
}

/// Serves `/metrics` on `addr`, when one is given, and describes the
/// service's metrics with `describe`. The endpoint stops when the returned
/// guard drops: a service holds it for as long as it runs, so every way
/// out (errors included) stops the endpoint too.
pub async fn start(
    addr: Option<&str>,
    describe: fn(),
) -> Result<tokio_util::sync::DropGuard, MetricsError> {
    let stop = Shutdown::new();
    let guard = stop.trigger_on_drop();
    if let Some(addr) = addr {
        serve(addr, stop).await?;
        describe();
    }
    Ok(guard)
}

/// Installs the recorder (once per process) and serves `/metrics` on
/// `addr` until `shutdown`; returns the bound address.
pub async fn serve(addr: &str, shutdown: Shutdown) -> Result<SocketAddr, MetricsError> {
    let handle = match HANDLE.get() {
        Some(handle) => handle.clone(),
        None => {
            let handle = PrometheusBuilder::new().set_buckets(&BUCKETS)?.install_recorder()?;
            let handle = HANDLE.get_or_init(|| handle).clone();
            tokio::spawn(upkeep(handle.clone()));
            describe_shared();
            handle
        }
    };
    let listener = grpc::bind(addr).await?;
    let local =
        listener.local_addr().map_err(|source| GrpcError::Bind { addr: addr.into(), source })?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let handle = handle.clone();
            async move {
                ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], handle.render())
            }
        }),
    );
    tokio::spawn(async move {
        let stop = shutdown.clone();
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "metrics endpoint failed");
        }
    });
    tracing::info!(addr = %local, "serving metrics");
    Ok(local)
}

/// Series more than one service records, described once here.
fn describe_shared() {
    metrics::describe_histogram!(
        "regsweep_db_operation_seconds",
        "store operation latency, by operation"
    );
    metrics::describe_counter!(
        "regsweep_registry_requests_total",
        "registry requests, by registry host, method and HTTP status code (0: no answer)"
    );
}

/// Drains histogram samples into their buckets regularly, so memory stays
/// bounded between scrapes.
async fn upkeep(handle: PrometheusHandle) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        handle.run_upkeep();
    }
}

/// Records how long a store operation took, by `operation`.
pub fn record_db(operation: &'static str, elapsed: Duration) {
    metrics::histogram!("regsweep_db_operation_seconds", "operation" => operation)
        .record(elapsed.as_secs_f64());
}

/// Runs a store operation and records its duration.
pub async fn timed<T>(operation: &'static str, fut: impl Future<Output = T>) -> T {
    let started = std::time::Instant::now();
    let out = fut.await;
    record_db(operation, started.elapsed());
    out
}
