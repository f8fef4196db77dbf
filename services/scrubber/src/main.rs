use clap::Parser;
use regsweep_common::{Shutdown, telemetry};
use regsweep_scrubber::{Config, run};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    telemetry::init(config.log_format);
    let shutdown = Shutdown::from_os_signals();
    if let Err(e) = run(config, shutdown).await {
        tracing::error!(error = %e, "scrubber failed");
        return Err(e.into());
    }
    Ok(())
}
