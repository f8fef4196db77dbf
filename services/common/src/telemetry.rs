//! Logging and tracing set-up shared by every binary.
//!
//! Logs go to stderr as text or JSON. Traces are exported over OTLP/gRPC
//! only when `OTEL_EXPORTER_OTLP_ENDPOINT` (or its traces-only variant) is
//! set: without it no OpenTelemetry layer is installed, no propagator is
//! registered, and trace-context injection writes nothing.

use std::io::IsTerminal as _;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::{EnvFilter, Layer, fmt, prelude::*};

/// How log lines are written to stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// The variables that turn trace export on, as the OpenTelemetry
/// specification names them.
const ENDPOINT_VARS: [&str; 2] =
    ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"];

/// Errors of setting up trace export.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP exporter could not be built from the environment.
    #[error("cannot export traces over otlp: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// Owns the trace pipeline; [`Telemetry::shutdown`] flushes the spans
/// still buffered.
#[derive(Debug, Default)]
#[must_use = "call shutdown() at exit, or buffered spans are lost"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports what is buffered and stops the exporter. Blocking work runs
    /// off the async runtime, whose threads the exporter needs meanwhile.
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else { return };
        let flushed = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        match flushed {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "flushing spans failed"),
            Err(e) => tracing::warn!(error = %e, "flushing spans panicked"),
        }
    }
}

/// Whether the environment asks for trace export.
pub fn otlp_configured() -> bool {
    ENDPOINT_VARS.iter().any(|var| std::env::var_os(var).is_some_and(|v| !v.is_empty()))
}

/// Installs the global subscriber: `RUST_LOG` filters (default `info`),
/// lines go to stderr in `format`; with an OTLP endpoint in the
/// environment, spans are exported too, named after `OTEL_SERVICE_NAME` or
/// else `service`. Must run inside the Tokio runtime (the exporter's
/// connection lives there). Calling it twice keeps the first subscriber
/// (tests start several services in one process).
pub fn init(format: LogFormat, service: &'static str) -> Result<Telemetry, TelemetryError> {
    init_with(format, service, "info")
}

/// [`init`] for a short-lived command (the CLI): the same spans, but log
/// lines only from `warn` unless `RUST_LOG` says otherwise, so that its
/// output stays its own.
pub fn init_quiet(format: LogFormat, service: &'static str) -> Result<Telemetry, TelemetryError> {
    init_with(format, service, "warn")
}

fn init_with(
    format: LogFormat,
    service: &'static str,
    default_log_level: &str,
) -> Result<Telemetry, TelemetryError> {
    let from_env = |default: &str| {
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default))
    };
    let provider = if otlp_configured() { Some(provider(service)?) } else { None };
    let otel = provider.as_ref().map(|p| {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        tracing_opentelemetry::layer().with_tracer(p.tracer("regsweep"))
    });
    let logs = match format {
        LogFormat::Text => fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .with_target(false)
            .boxed(),
        LogFormat::Json => fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    // The global filter decides which spans exist (so which are exported);
    // the log lines' own filter only makes fewer of them printed.
    let logs = logs.with_filter(from_env(default_log_level));
    let installed =
        tracing_subscriber::registry().with(from_env("info")).with(logs).with(otel).try_init();
    if installed.is_err() {
        // Already installed: the first one stays, and so does its exporter.
        return Ok(Telemetry::default());
    }
    if provider.is_some() {
        crate::trace::set_exporting();
        tracing::info!("exporting traces over otlp");
    }
    Ok(Telemetry { provider })
}

fn provider(service: &'static str) -> Result<SdkTracerProvider, TelemetryError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder().with_tonic().build()?;
    let mut resource = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(service);
    }
    Ok(SdkTracerProvider::builder()
        .with_resource(resource.build())
        .with_batch_exporter(exporter)
        .build())
}
