//! Time from a worker's SIGKILL to its job being claimed by another
//! worker. The floor is the heartbeat TTL (a dead worker is only
//! recognised once its heartbeat expired); the figure that matters is the
//! time above it: reaper period, claim and assignment.

use std::time::{Duration, Instant};

use anyhow::Result;
use nix::sys::signal::Signal;
use regsweep_integration_tests::{Scheduler, TestDb, Worker, wait_until};
use regsweep_proto::json_to_struct;
use regsweep_proto::v1;

use crate::stats;

#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// Runs; figures are medians.
    #[arg(long, default_value_t = 5)]
    runs: u32,
    /// Scheduler heartbeat interval.
    #[arg(long, default_value = "1s")]
    heartbeat_interval: String,
    /// Scheduler heartbeat TTL.
    #[arg(long, default_value = "3s")]
    heartbeat_ttl: String,
}

pub async fn run(args: Args) -> Result<()> {
    let ttl = regsweep_common_duration(&args.heartbeat_ttl)?;
    println!(
        "reclaim benchmark: heartbeat interval {}, ttl {}, {} runs",
        args.heartbeat_interval, args.heartbeat_ttl, args.runs
    );
    let mut times = Vec::new();
    for run in 1..=args.runs {
        let elapsed = one_run(&args).await?;
        println!(
            "run {run}: kill to re-claim {:.0} ms ({:.0} ms above the TTL)",
            ms(elapsed),
            ms(elapsed) - ms(ttl)
        );
        times.push(ms(elapsed));
    }
    let median = stats::median(&mut times);
    println!();
    println!("| measure | median of {} runs | min | max |", args.runs);
    println!("|---|---|---|---|");
    println!(
        "| SIGKILL to re-claim (TTL {}) | {median:.0} ms | {:.0} ms | {:.0} ms |",
        args.heartbeat_ttl,
        times.first().copied().unwrap_or(f64::NAN),
        times.last().copied().unwrap_or(f64::NAN)
    );
    println!("| above the TTL | {:.0} ms | | |", median - ms(ttl));
    Ok(())
}

fn regsweep_common_duration(text: &str) -> Result<Duration> {
    humantime::parse_duration(text).map_err(|e| anyhow::anyhow!("{text}: {e}"))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn one_run(args: &Args) -> Result<Duration> {
    let db = TestDb::create().await;
    let scheduler = Scheduler::launch(
        "scheduler",
        &db.url,
        &["--heartbeat-interval", &args.heartbeat_interval, "--heartbeat-ttl", &args.heartbeat_ttl],
        false,
    )
    .await;
    let registered = Duration::from_secs(30);
    let victim = Worker::spawn_with(&scheduler.url, "victim", &["--capacity", "sleep=1"], false);
    victim.process.wait_for_message("registered with scheduler", registered).await;
    let mut jobs = scheduler.jobs().await;
    let request = v1::CreateJobRequest {
        kind: "sleep".into(),
        args: Some(json_to_struct(serde_json::json!({"seconds": 600}))),
        ..Default::default()
    };
    let id = jobs.create_job(request).await?.into_inner().job.map(|j| j.id).unwrap_or_default();
    let pool = db.scheduler_pool().await;
    let attempt = |pool: sqlx::PgPool| async move {
        let (attempt,): (i32,) = sqlx::query_as("SELECT attempt FROM jobs WHERE id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await
            .ok()?;
        Some(attempt)
    };
    wait_until("claimed", Duration::from_secs(10), || {
        let pool = pool.clone();
        async move { (attempt(pool).await == Some(1)).then_some(()) }
    })
    .await;
    let rescuer = Worker::spawn_with(&scheduler.url, "rescuer", &["--capacity", "sleep=1"], false);
    rescuer.process.wait_for_message("registered with scheduler", registered).await;

    victim.process.signal(Signal::SIGKILL);
    let killed = Instant::now();
    wait_until("re-claimed", Duration::from_secs(60), || {
        let pool = pool.clone();
        async move { (attempt(pool).await == Some(2)).then_some(()) }
    })
    .await;
    Ok(killed.elapsed())
}
