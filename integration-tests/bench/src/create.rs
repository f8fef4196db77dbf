//! The job-creation benchmark: jobs per second created through the API one
//! `CreateJob` per job and in `CreateJobs` batches, next to the raw limit
//! of the same PostgreSQL (one `INSERT ... SELECT generate_series` of the
//! same rows, no gRPC). Each figure is on a fresh database, with
//! `--clients` concurrent callers.

use std::time::Instant;

use anyhow::Result;
use futures::StreamExt as _;
use regsweep_integration_tests::{Scheduler, TestDb};
use regsweep_proto::json_to_struct;
use regsweep_proto::v1;

#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// Jobs created per figure.
    #[arg(long, default_value_t = 20_000)]
    jobs: u32,
    /// Concurrent callers.
    #[arg(long, default_value_t = 16)]
    clients: u32,
    /// Jobs per `CreateJobs` call (at most 1000).
    #[arg(long, default_value_t = 1000)]
    batch: u32,
}

fn request() -> v1::CreateJobRequest {
    v1::CreateJobRequest {
        kind: "sleep".into(),
        args: Some(json_to_struct(serde_json::json!({"seconds": 0}))),
        ..Default::default()
    }
}

pub async fn run(args: Args) -> Result<()> {
    println!(
        "create benchmark: {} jobs per figure, {} clients, batches of {}",
        args.jobs, args.clients, args.batch
    );
    let single = through_api(&args, 1).await?;
    let batched = through_api(&args, args.batch.clamp(1, 1000)).await?;
    let raw = raw_insert(args.jobs).await?;
    println!();
    println!("| measure | jobs/s |");
    println!("|---|---|");
    println!("| CreateJob, one rpc per job, {} clients | {single:.0} |", args.clients);
    println!("| CreateJobs, {} per rpc, {} clients | {batched:.0} |", args.batch, args.clients);
    println!("| raw limit: one INSERT of every row, no gRPC | {raw:.0} |");
    println!("| CreateJobs / CreateJob | {:.1}x |", batched / single);
    println!("| CreateJobs / raw limit | {:.0}% |", 100.0 * batched / raw);
    Ok(())
}

/// Jobs per second created by `--clients` callers, `per_call` per rpc
/// (1: `CreateJob`).
async fn through_api(args: &Args, per_call: u32) -> Result<f64> {
    let db = TestDb::create().await;
    let scheduler = Scheduler::launch("scheduler", &db.url, &[], false).await;
    let client = scheduler.jobs().await;
    let calls = args.jobs.div_ceil(per_call);
    let started = Instant::now();
    let results = futures::stream::iter(0..calls)
        .map(|call| {
            let mut client = client.clone();
            let n = per_call.min(args.jobs - call * per_call);
            async move {
                if n == 1 && per_call == 1 {
                    client.create_job(request()).await.map(|_| ())
                } else {
                    let jobs = vec![request(); n as usize];
                    client.create_jobs(v1::CreateJobsRequest { jobs }).await.map(|_| ())
                }
            }
        })
        .buffer_unordered(args.clients as usize)
        .collect::<Vec<_>>()
        .await;
    let elapsed = started.elapsed().as_secs_f64();
    results.into_iter().collect::<Result<Vec<()>, _>>()?;
    let pool = db.scheduler_pool().await;
    let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM jobs").fetch_one(&pool).await?;
    anyhow::ensure!(count == i64::from(args.jobs), "created {count} of {} jobs", args.jobs);
    Ok(f64::from(args.jobs) / elapsed)
}

/// The same rows in one statement on a fresh database.
async fn raw_insert(jobs: u32) -> Result<f64> {
    let db = TestDb::create().await;
    // The scheduler's migrations make the schema.
    let scheduler = Scheduler::launch("scheduler", &db.url, &[], false).await;
    drop(scheduler);
    let pool = db.scheduler_pool().await;
    let started = Instant::now();
    sqlx::query(
        "INSERT INTO jobs (kind, args) SELECT 'sleep', '{\"seconds\": 0}' FROM generate_series(1, $1)",
    )
    .bind(i64::from(jobs))
    .execute(&pool)
    .await?;
    Ok(f64::from(jobs) / started.elapsed().as_secs_f64())
}
