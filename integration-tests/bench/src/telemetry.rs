//! The job queue end to end with metrics served, with traces exported over
//! OTLP, and with both, next to neither, in the same run on the same
//! PostgreSQL: what observability costs.

use anyhow::Result;
use regsweep_integration_tests::TestDb;
use regsweep_integration_tests::otlp::OtlpReceiver;

use crate::stats;
use crate::stores::{Transport, through_services};

#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// Jobs per drain.
    #[arg(long, default_value_t = 20_000)]
    jobs: u32,
    /// Worker processes (capacity 128 each).
    #[arg(long, default_value_t = 2)]
    workers: u32,
    /// Runs; figures are medians.
    #[arg(long, default_value_t = 3)]
    runs: u32,
}

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
    println!(
        "telemetry benchmark: {} jobs, scheduler on PostgreSQL + {} workers over gRPC, {} runs",
        args.jobs, args.workers, args.runs
    );
    let mut figures: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    for run in 1..=args.runs {
        for (i, (name, transport)) in modes.iter().enumerate() {
            let db = TestDb::postgres().await;
            let rate = through_services(&db, args.jobs, args.workers, transport).await?;
            println!("run {run} {name}: {rate:.0} jobs/s");
            figures[i].push(rate);
        }
    }
    println!("spans received: {}", receiver.spans().len());
    println!();
    println!("| telemetry (median of {} runs) | end to end | of neither |", args.runs);
    println!("|---|---|---|");
    let neither = stats::median(&mut figures[0].clone());
    for ((name, _), runs) in modes.iter().zip(figures.iter_mut()) {
        let rate = stats::median(runs);
        println!("| {name} | {rate:.0} jobs/s | {:.0}% |", 100.0 * rate / neither);
    }
    Ok(())
}
