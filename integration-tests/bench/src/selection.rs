//! The cleanup selection's tick time as the catalog grows: the same
//! capacity over 1k, 100k and 1M repositories. The pick must cost the same
//! at every size; marking a due policy's repositories (once per run) is
//! linear and reported apart.

use std::time::Duration;

use regsweep_integration_tests::TestDb;
use regsweep_integration_tests::selection::SelectionProbe;

use crate::stats::percentile;

#[derive(clap::Args)]
pub struct Args {
    /// Catalog sizes to measure, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,100000,1000000")]
    repositories: Vec<u64>,
    /// Cleanups that may run at once.
    #[arg(long, default_value_t = 4)]
    capacity: u32,
    /// Ticks timed per size.
    #[arg(long, default_value_t = 50)]
    ticks: usize,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    println!("selection: capacity {}, {} ticks per size", args.capacity, args.ticks);
    println!(
        "{:>12}  {:>12}  {:>12}  {:>14}  {:>16}",
        "repositories", "tick p50", "tick p99", "empty tick p50", "marking the run"
    );
    for &n in &args.repositories {
        let db = TestDb::create().await;
        let probe = SelectionProbe::populate(&db, n, args.capacity).await;
        let marking = probe.arm().await;
        let samples = probe.time_picks(args.ticks).await;
        anyhow::ensure!(
            samples.iter().all(|(_, picked)| *picked == args.capacity as usize),
            "a tick did not fill the capacity"
        );
        let mut ticks: Vec<f64> = samples.iter().map(|(d, _)| ms(*d)).collect();
        // With every slot taken, a tick only checks: the common case.
        probe.tick().await;
        let mut empty = Vec::with_capacity(args.ticks);
        for _ in 0..args.ticks {
            let started = std::time::Instant::now();
            let s = probe.tick().await;
            anyhow::ensure!(s.started.is_empty(), "a full tick started cleanups");
            empty.push(ms(started.elapsed()));
        }
        println!(
            "{n:>12}  {:>10.2}ms  {:>10.2}ms  {:>12.2}ms  {:>14.0}ms",
            percentile(&mut ticks, 50.0),
            percentile(&mut ticks, 99.0),
            percentile(&mut empty, 50.0),
            ms(marking)
        );
    }
    Ok(())
}
