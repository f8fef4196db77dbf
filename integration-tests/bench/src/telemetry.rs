//! The job queue end to end with metrics served, with traces exported over
//! OTLP, and with both, next to neither, in the same run on the same
//! PostgreSQL: what observability costs.

use anyhow::Result;
use regsweep_integration_tests::otlp::OtlpReceiver;

use crate::stores::{DrainArgs, Transport, compare};

pub type Args = DrainArgs;

pub async fn run(args: Args) -> Result<()> {
    // A collector in this process: spans cross a real gRPC connection.
    let receiver = OtlpReceiver::start().await;
    let metrics = vec!["--metrics-addr".to_string(), "127.0.0.1:0".to_string()];
    let traces = vec![("OTEL_EXPORTER_OTLP_ENDPOINT".to_string(), receiver.endpoint.clone())];
    let with = |metrics_on: bool, traces_on: bool| Transport {
        scheduler: if metrics_on { metrics.clone() } else { Vec::new() },
        worker: if metrics_on { metrics.clone() } else { Vec::new() },
        https: false,
        envs: if traces_on { traces.clone() } else { Vec::new() },
    };
    let modes = [
        ("neither", with(false, false)),
        ("metrics", with(true, false)),
        ("traces", with(false, true)),
        ("metrics and traces", with(true, true)),
    ];
    compare("telemetry", &args, &modes).await?;
    println!("spans received: {}", receiver.spans().len());
    Ok(())
}
