use clap::Parser;
use regsweep_common::{Shutdown, telemetry};
use regsweep_scrubber::{Config, run};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let telemetry = telemetry::init(config.log_format, "regsweep-scrubber")?;
    let shutdown = Shutdown::from_os_signals();
    let result = run(config, shutdown).await;
    // Spans of the last moments are flushed whatever the outcome.
    telemetry.shutdown().await;
    if let Err(e) = result {
        tracing::error!(error = %e, "scrubber failed");
        return Err(e.into());
    }
    Ok(())
}
