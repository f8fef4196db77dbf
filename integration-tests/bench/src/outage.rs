//! Recovery after a database outage: PostgreSQL taken away from the
//! scheduler (every connection cut, new ones turned away, by a TCP proxy in
//! front of the real server) for `--outage`, a job made claimable meanwhile
//! (written straight to the database, so no notification reaches the
//! scheduler), then the database given back. Measured: from the proxy
//! accepting connections again to the job's claim, next to the floor on
//! the same proxy at the same moment (a new connection and one claim-shaped
//! statement, which is what the scheduler has to do at least).

use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::Result;
use regsweep_integration_tests::tcpproxy::TcpProxy;
use regsweep_integration_tests::{Scheduler, TestDb, Worker};
use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::{ConnectOptions as _, Connection as _, PgConnection};

use crate::stats;

#[derive(clap::Args)]
pub struct Args {
    /// How long the database is away (seconds).
    #[arg(long, default_value_t = 10)]
    outage: u64,
    /// Outages to measure.
    #[arg(long, default_value_t = 5)]
    runs: u32,
}

/// How often the job is looked at.
const POLL: Duration = Duration::from_millis(5);
/// The scheduler's flags: the outage test's, whose heartbeat TTL and lease
/// an outage of ten seconds outlasts.
const FLAGS: [&str; 6] =
    ["--heartbeat-interval", "1s", "--heartbeat-ttl", "5s", "--leader-lease", "5s"];

pub async fn run(args: Args) -> Result<()> {
    let db = TestDb::postgres().await;
    let (proxy, url) = TcpProxy::in_front_of_database(&db.url).await;
    let proxied = PgConnectOptions::from_str(&url)?;
    let scheduler = Scheduler::launch("scheduler", &url, &FLAGS, false).await;
    let worker = Worker::spawn_with(&scheduler.url, "bench", &["--capacity", "sleep=4"], false);
    worker.process.wait_for_message("registered with scheduler", Duration::from_secs(30)).await;
    let direct = db.scheduler_pool().await;
    println!(
        "outage benchmark: database away {}s from one scheduler ({}), one idle worker",
        args.outage,
        FLAGS.join(" ")
    );
    println!("| run | back to first claim | floor: connect + claim statement |");
    println!("|---|---|---|");
    let (mut recoveries, mut floors) = (Vec::new(), Vec::new());
    for run in 1..=args.runs {
        let (recovery, floor) = once(&proxy, &direct, &proxied, args.outage).await?;
        println!("| {run} | {:.2} s | {:.1} ms |", recovery, floor * 1000.0);
        recoveries.push(recovery);
        floors.push(floor);
    }
    recoveries.sort_by(f64::total_cmp);
    floors.sort_by(f64::total_cmp);
    let last = recoveries.len() - 1;
    println!(
        "| **min / median / max** | **{:.2} / {:.2} / {:.2} s** | **{:.1} ms median** |",
        recoveries[0],
        stats::median(&mut recoveries.clone()),
        recoveries[last],
        stats::median(&mut floors) * 1000.0
    );
    Ok(())
}

/// One outage; returns the seconds from the database's return to the
/// job's claim, and the floor's seconds.
async fn once(
    proxy: &TcpProxy,
    direct: &PgPool,
    proxied: &PgConnectOptions,
    outage: u64,
) -> Result<(f64, f64)> {
    proxy.down();
    // The outage is the input: a span of time, not an event to await.
    tokio::time::sleep(Duration::from_secs(outage)).await;
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO jobs (kind, args) VALUES ('sleep', '{\"seconds\": 0}') RETURNING id",
    )
    .fetch_one(direct)
    .await?;
    proxy.up();
    let (back,): (chrono::DateTime<chrono::Utc>,) =
        sqlx::query_as("SELECT clock_timestamp()").fetch_one(direct).await?;
    let floor = floor(proxied).await?;
    let started = Instant::now();
    let recovery = loop {
        let claimed: Option<(f64,)> = sqlx::query_as(
            "SELECT extract(epoch FROM claimed_at - $2)::float8 FROM jobs
             WHERE id = $1 AND claimed_at IS NOT NULL",
        )
        .bind(id)
        .bind(back)
        .fetch_optional(direct)
        .await?;
        if let Some((seconds,)) = claimed {
            break seconds;
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(120), "job {id} never claimed");
        tokio::time::sleep(POLL).await;
    };
    // Ended before the next outage, so each run starts idle.
    while !sqlx::query_scalar::<_, bool>("SELECT status = 'done' FROM jobs WHERE id = $1")
        .bind(id)
        .fetch_one(direct)
        .await?
    {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(180), "job {id} never ended");
        tokio::time::sleep(POLL).await;
    }
    Ok((recovery, floor))
}

/// A new connection through the proxy and one claim-shaped statement (a
/// locking read of the claim index that finds nothing due), in seconds.
async fn floor(proxied: &PgConnectOptions) -> Result<f64> {
    let started = Instant::now();
    let mut connection: PgConnection =
        proxied.clone().options([("search_path", "scheduler")]).connect().await?;
    sqlx::query(
        "SELECT id FROM jobs WHERE kind = 'none' AND status = 'waiting' AND scheduled_at <= now()
         ORDER BY priority DESC, scheduled_at, id LIMIT 1 FOR UPDATE SKIP LOCKED",
    )
    .fetch_all(&mut connection)
    .await?;
    let elapsed = started.elapsed().as_secs_f64();
    connection.close().await?;
    Ok(elapsed)
}
