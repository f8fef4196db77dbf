//! The queue benchmark.
//!
//! Per run, on a fresh database of the same PostgreSQL server:
//! 1. raw ceiling: `--raw-clients` tasks drain a backlog of `--jobs` no-op
//!    jobs through the scheduler's own store (the same claim and complete
//!    statements), batches of `--raw-batch`, no gRPC;
//! 2. end to end: the same backlog drained by a `regsweep-scheduler` and
//!    `--workers` `regsweep-worker` processes over gRPC;
//! 3. latency: jobs created through the API at `--rate` per second while
//!    the workers are idle; time from `waiting` (created) to `running`
//!    (claimed), from the database's own timestamps.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::StreamExt as _;
use regsweep_integration_tests::{Scheduler, TestDb, Worker, wait_until};
use regsweep_proto::json_to_struct;
use regsweep_proto::v1::{self, JobStatus};
use regsweep_scheduler::store::postgres::PgStore;
use regsweep_scheduler::store::{
    ClaimSlot, JobStore, SessionRef, UpdateWrite, WorkerHello, WriteBatch,
};
use sqlx::PgPool;

use crate::{cpu, stats};

#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// Jobs per drain.
    #[arg(long, default_value_t = 50_000)]
    jobs: u32,
    /// Worker processes.
    #[arg(long, default_value_t = 4)]
    workers: u32,
    /// Capacity of each worker for the benchmark's kind.
    #[arg(long, default_value_t = 128)]
    capacity: u32,
    /// Runs; figures are medians.
    #[arg(long, default_value_t = 3)]
    runs: u32,
    /// Concurrent clients of the raw ceiling.
    #[arg(long, default_value_t = 8)]
    raw_clients: u32,
    /// Batch size of the raw ceiling's claims and completions.
    #[arg(long, default_value_t = 100)]
    raw_batch: u32,
    /// Jobs per second created through the API in the latency phase.
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// Length of the latency phase.
    #[arg(long, default_value = "5s", value_parser = humantime_secs)]
    latency_for: Duration,
    /// Scheduler replicas on the same database; workers are spread over
    /// them.
    #[arg(long, default_value_t = 1)]
    replicas: u32,
    /// Finished jobs already in the table before each drain (what
    /// retention keeps): whether the queue slows as they accumulate.
    #[arg(long, default_value_t = 0)]
    finished: u32,
    /// Extra scheduler flags, e.g. "--max-claim-batch=256".
    #[arg(long, allow_hyphen_values = true)]
    scheduler_arg: Vec<String>,
}

fn humantime_secs(text: &str) -> Result<Duration, String> {
    text.trim_end_matches('s')
        .parse::<f64>()
        .map(Duration::from_secs_f64)
        .map_err(|e| e.to_string())
}

struct RunFigures {
    raw: f64,
    raw_deciles: Deciles,
    service: f64,
    service_deciles: Deciles,
    cpu: HashMap<&'static str, f64>,
    latency_p50_ms: f64,
    latency_p99_ms: f64,
    scheduler_rss_mib: f64,
    worker_rss_mib: f64,
}

pub async fn run(args: Args) -> Result<()> {
    println!(
        "queue benchmark: {} jobs per drain, {} scheduler replica(s), {} workers x capacity {}, raw ceiling {} clients x batch {}, {} runs",
        args.jobs,
        args.replicas,
        args.workers,
        args.capacity,
        args.raw_clients,
        args.raw_batch,
        args.runs
    );
    let mut runs = Vec::new();
    for run in 1..=args.runs {
        let figures = one_run(&args).await?;
        println!(
            "run {run}: raw {:.0} jobs/s, end to end {:.0} jobs/s ({:.0}% of raw), latency p50 {:.1} ms p99 {:.1} ms",
            figures.raw,
            figures.service,
            100.0 * figures.service / figures.raw,
            figures.latency_p50_ms,
            figures.latency_p99_ms
        );
        println!(
            "run {run}: first / last 10% of the drain: raw {} jobs/s, end to end {} jobs/s",
            figures.raw_deciles, figures.service_deciles
        );
        runs.push(figures);
    }
    let mut raw: Vec<f64> = runs.iter().map(|r| r.raw).collect();
    let mut service: Vec<f64> = runs.iter().map(|r| r.service).collect();
    let mut share: Vec<f64> = runs.iter().map(|r| r.service / r.raw).collect();
    let mut p50: Vec<f64> = runs.iter().map(|r| r.latency_p50_ms).collect();
    let mut p99: Vec<f64> = runs.iter().map(|r| r.latency_p99_ms).collect();
    println!();
    println!("| measure | median of {} runs |", args.runs);
    println!("|---|---|");
    println!(
        "| raw ceiling (store claim+complete, {} clients, batch {}) | {:.0} jobs/s |",
        args.raw_clients,
        args.raw_batch,
        stats::median(&mut raw)
    );
    println!(
        "| end to end ({} scheduler replica(s) + {} workers over gRPC) | {:.0} jobs/s |",
        args.replicas,
        args.workers,
        stats::median(&mut service)
    );
    println!("| end to end / raw ceiling | {:.0}% |", 100.0 * stats::median(&mut share));
    if args.runs > 1 {
        println!(
            "| min / median / max: raw | {} jobs/s |",
            spread(&mut runs.iter().map(|r| r.raw).collect::<Vec<_>>(), 1.0)
        );
        println!(
            "| min / median / max: end to end | {} jobs/s |",
            spread(&mut runs.iter().map(|r| r.service).collect::<Vec<_>>(), 1.0)
        );
        println!(
            "| min / median / max: end to end / raw | {} % |",
            spread(&mut runs.iter().map(|r| r.service / r.raw).collect::<Vec<_>>(), 100.0)
        );
    }
    let last_deciles = |f: fn(&RunFigures) -> &Deciles| {
        let mut last: Vec<f64> = runs.iter().map(|r| f(r).last / f(r).first).collect();
        100.0 * stats::median(&mut last)
    };
    println!(
        "| last 10% of the drain / first 10%: raw, end to end | {:.0}%, {:.0}% |",
        last_deciles(|r| &r.raw_deciles),
        last_deciles(|r| &r.service_deciles)
    );
    println!(
        "| waiting -> running at {} jobs/s, p50 | {:.1} ms |",
        args.rate,
        stats::median(&mut p50)
    );
    println!(
        "| waiting -> running at {} jobs/s, p99 | {:.1} ms |",
        args.rate,
        stats::median(&mut p99)
    );
    let last = runs.last().context("no run")?;
    println!(
        "| peak RSS scheduler / worker | {:.0} MiB / {:.0} MiB |",
        last.scheduler_rss_mib, last.worker_rss_mib
    );
    let total: f64 = last.cpu.values().sum();
    let mut shares: Vec<_> = last.cpu.iter().collect();
    shares.sort_by(|a, b| b.1.total_cmp(a.1));
    let cpu = shares
        .iter()
        .map(|(name, s)| format!("{name} {s:.1}s ({:.0}%)", 100.0 * *s / total))
        .collect::<Vec<_>>()
        .join(", ");
    println!("| CPU during the last end-to-end drain | {cpu} |");
    Ok(())
}

async fn one_run(args: &Args) -> Result<RunFigures> {
    let db = TestDb::create().await;
    let store = PgStore::connect(&db.url, args.raw_clients + 2, &Default::default()).await?;
    let pool = store.pool().clone();

    finished(&pool, args.finished).await?;
    let before = enqueue(&pool, args.jobs).await?;
    let raw = raw_drain(&store, args).await?;
    let raw_deciles = Deciles::read(&pool, before).await?;
    sqlx::query("TRUNCATE jobs CASCADE").execute(&pool).await?;
    finished(&pool, args.finished).await?;
    store.close().await;

    let extra: Vec<&str> = args.scheduler_arg.iter().map(String::as_str).collect();
    let mut schedulers = Vec::new();
    for r in 0..args.replicas.max(1) {
        schedulers.push(Scheduler::launch(&format!("scheduler-{r}"), &db.url, &extra, false).await);
    }
    let capacity = format!("sleep={}", args.capacity);
    let mut workers = Vec::new();
    for i in 0..args.workers {
        let worker = Worker::spawn_with(
            &schedulers[i as usize % schedulers.len()].url,
            &format!("bench-{i}"),
            &["--capacity", &capacity],
            false,
        );
        worker.process.wait_for_message("registered with scheduler", Duration::from_secs(30)).await;
        workers.push(worker);
    }
    let pool = db.scheduler_pool().await;

    let cpu_before = cpu_snapshot(&schedulers, &workers);
    let before = enqueue(&pool, args.jobs).await?;
    drained(&pool).await?;
    let (done,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM jobs WHERE id > $1 AND status = 'done'")
            .bind(before)
            .fetch_one(&pool)
            .await?;
    anyhow::ensure!(done == i64::from(args.jobs), "{done} of {} jobs done", args.jobs);
    let cpu_after = cpu_snapshot(&schedulers, &workers);
    let (span,): (f64,) = sqlx::query_as(
        "SELECT extract(epoch FROM max(finished_at) - min(claimed_at))::float8 FROM jobs WHERE id > $1",
    )
    .bind(before)
    .fetch_one(&pool)
    .await?;
    let service = f64::from(args.jobs) / span;
    let cpu = cpu_spent(&cpu_before, &cpu_after);
    let service_deciles = Deciles::read(&pool, before).await?;

    let (p50, p99) = latency(&schedulers[0], &pool, args).await?;
    let rss =
        |p: &regsweep_integration_tests::Service| p.peak_rss_kib().unwrap_or(0) as f64 / 1024.0;
    let worker_rss = workers.iter().map(|w| rss(&w.process)).fold(0.0, f64::max);
    Ok(RunFigures {
        raw,
        raw_deciles,
        service,
        service_deciles,
        cpu,
        latency_p50_ms: p50,
        latency_p99_ms: p99,
        scheduler_rss_mib: schedulers.iter().map(|s| rss(&s.process)).fold(0.0, f64::max),
        worker_rss_mib: worker_rss,
    })
}

/// "min / median / max" of `values` times `scale`.
fn spread(values: &mut [f64], scale: f64) -> String {
    let median = stats::median(values);
    let (min, max) = (values[0], values[values.len() - 1]);
    format!("{:.0} / {:.0} / {:.0}", min * scale, median * scale, max * scale)
}

/// The drain rate of its first and last tenth of jobs (by finish time):
/// whether the queue slows as finished jobs pile up.
#[derive(Clone)]
struct Deciles {
    first: f64,
    last: f64,
    /// Every tenth, in order.
    rates: Vec<f64>,
}

impl Deciles {
    /// The drain of the jobs after id `before`.
    async fn read(pool: &PgPool, before: i64) -> Result<Self> {
        let (start,): (f64,) = sqlx::query_as(
            "SELECT extract(epoch FROM min(claimed_at))::float8 FROM jobs WHERE id > $1",
        )
        .bind(before)
        .fetch_one(pool)
        .await?;
        let finished: Vec<(f64,)> = sqlx::query_as(
            "SELECT extract(epoch FROM finished_at)::float8 FROM jobs \
             WHERE id > $1 AND status = 'done' ORDER BY finished_at",
        )
        .bind(before)
        .fetch_all(pool)
        .await?;
        let n = finished.len();
        anyhow::ensure!(n >= 20, "too few jobs for deciles: {n}");
        let tenth = n / 10;
        let at = |i: usize| finished[i].0;
        let rates: Vec<f64> = (0..10)
            .map(|d| {
                let from = if d == 0 { start } else { at(d * tenth - 1) };
                tenth as f64 / (at((d + 1) * tenth - 1) - from)
            })
            .collect();
        Ok(Self { first: rates[0], last: rates[9], rates })
    }
}

impl std::fmt::Display for Deciles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.0} / {:.0} ({:.0}%)", self.first, self.last, 100.0 * self.last / self.first)?;
        let all: Vec<String> = self.rates.iter().map(|r| format!("{r:.0}")).collect();
        write!(f, " [every tenth: {}]", all.join(" "))
    }
}

struct CpuSnapshot {
    scheduler: f64,
    workers: f64,
    postgres: HashMap<u32, f64>,
}

fn cpu_snapshot(schedulers: &[Scheduler], workers: &[Worker]) -> CpuSnapshot {
    let pid =
        |s: &regsweep_integration_tests::Service| u32::try_from(s.pid().as_raw()).unwrap_or(0);
    CpuSnapshot {
        scheduler: schedulers.iter().filter_map(|s| cpu::process_seconds(pid(&s.process))).sum(),
        workers: workers.iter().filter_map(|w| cpu::process_seconds(pid(&w.process))).sum(),
        postgres: cpu::seconds_by_prefix("postgres"),
    }
}

/// CPU seconds per component between two snapshots.
fn cpu_spent(before: &CpuSnapshot, after: &CpuSnapshot) -> HashMap<&'static str, f64> {
    HashMap::from([
        ("scheduler", after.scheduler - before.scheduler),
        ("workers", after.workers - before.workers),
        ("postgres", cpu::delta(&before.postgres, &after.postgres)),
    ])
}

/// Waits until no job is left to claim or running. Asks through the
/// partial indexes the queue keeps anyway, a few times a second: counting
/// `done` jobs instead reads an index that grows with every finished job,
/// and polled often it takes a core from the drain it measures (a
/// 200,000-job drain slowed to 65% of its start that way).
async fn drained(pool: &PgPool) -> Result<()> {
    let started = Instant::now();
    loop {
        let (left,): (bool,) = sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM jobs WHERE status IN ('waiting', 'worker_dead', 'worker_shutdown')) \
                 OR EXISTS (SELECT 1 FROM jobs WHERE status IN ('running', 'cancel_request', 'worker_resurrection'))",
        )
        .fetch_one(pool)
        .await?;
        if !left {
            return Ok(());
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(1800),
            "backlog not drained in 30 min"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Fills the table with `n` jobs finished over the last day, then
/// vacuums it: the steady state of a queue whose retention keeps them.
async fn finished(pool: &PgPool, n: u32) -> Result<()> {
    sqlx::query(
        "INSERT INTO jobs (kind, args, status, attempt, claimed_at, started_at, finished_at, result)
         SELECT 'sleep', '{\"seconds\": 0}', 'done', 1, t, t, t, '{}'
         FROM (SELECT now() - random() * interval '1 day' AS t FROM generate_series(1, $1)) s",
    )
    .bind(i64::from(n))
    .execute(pool)
    .await?;
    sqlx::query("VACUUM ANALYZE jobs").execute(pool).await?;
    Ok(())
}

/// Adds `jobs` no-op jobs; returns the largest id before them.
async fn enqueue(pool: &PgPool, jobs: u32) -> Result<i64> {
    let (before,): (i64,) =
        sqlx::query_as("SELECT coalesce(max(id), 0) FROM jobs").fetch_one(pool).await?;
    sqlx::query(
        "INSERT INTO jobs (kind, args) SELECT 'sleep', '{\"seconds\": 0}' FROM generate_series(1, $1)",
    )
    .bind(i64::from(jobs))
    .execute(pool)
    .await?;
    Ok(before)
}

/// Drains the backlog through the store with no gRPC: the ceiling of the
/// schema and statements the scheduler uses.
async fn raw_drain(store: &PgStore, args: &Args) -> Result<f64> {
    let started = Instant::now();
    let clients = futures::stream::iter(0..args.raw_clients)
        .map(|i| {
            let store = store.clone();
            let batch = args.raw_batch;
            async move {
                let hello = WorkerHello {
                    name: format!("raw-{i}"),
                    version: "bench".into(),
                    capacity: [("sleep".to_string(), batch.into())].into_iter().collect(),
                    resume_worker_id: None,
                    running: Vec::new(),
                    ending: Vec::new(),
                    end_acks: false,
                };
                let registration = store.register_worker(&hello, Duration::from_secs(60)).await?;
                let session =
                    SessionRef { worker_id: registration.worker_id, epoch: registration.epoch };
                let slots = vec![ClaimSlot { session }; batch as usize];
                let mut drained = 0u64;
                loop {
                    let jobs = store.claim("sleep", &slots, uuid::Uuid::new_v4()).await?;
                    if jobs.is_empty() {
                        return anyhow::Ok(drained);
                    }
                    drained += jobs.len() as u64;
                    let updates = jobs
                        .iter()
                        .map(|job| UpdateWrite {
                            worker_id: session.worker_id,
                            job_id: job.id,
                            attempt: job.attempt,
                            status: JobStatus::Done,
                            progress: 1.0,
                            result: Some(serde_json::json!({})),
                            error: None,
                            retryable: false,
                        })
                        .collect();
                    let batch = WriteBatch { updates, ..Default::default() };
                    store.write_batch(&batch, Duration::from_secs(60)).await?;
                }
            }
        })
        .buffer_unordered(args.raw_clients as usize)
        .collect::<Vec<_>>()
        .await;
    let elapsed = started.elapsed().as_secs_f64();
    let drained: u64 = clients.into_iter().collect::<Result<Vec<_>>>()?.into_iter().sum();
    anyhow::ensure!(
        drained == u64::from(args.jobs),
        "raw drain took {drained} of {} jobs",
        args.jobs
    );
    Ok(drained as f64 / elapsed)
}

/// Creates jobs through the API at a steady rate and reads how long each
/// waited before a worker claimed it.
async fn latency(scheduler: &Scheduler, pool: &PgPool, args: &Args) -> Result<(f64, f64)> {
    let (before,): (i64,) =
        sqlx::query_as("SELECT coalesce(max(id), 0) FROM jobs").fetch_one(pool).await?;
    let jobs = scheduler.jobs().await;
    let total = (f64::from(args.rate) * args.latency_for.as_secs_f64()) as u64;
    let interval = Duration::from_secs_f64(1.0 / f64::from(args.rate.max(1)));
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut inflight = futures::stream::FuturesUnordered::new();
    for _ in 0..total {
        ticker.tick().await;
        let mut jobs = jobs.clone();
        inflight.push(async move {
            let request = v1::CreateJobRequest {
                kind: "sleep".into(),
                args: Some(json_to_struct(serde_json::json!({"seconds": 0}))),
                ..Default::default()
            };
            jobs.create_job(request).await
        });
        while let Some(result) = futures::FutureExt::now_or_never(inflight.next()).flatten() {
            result?;
        }
    }
    while let Some(result) = inflight.next().await {
        result?;
    }
    let total_i64 = i64::try_from(total)?;
    wait_until("latency jobs done", Duration::from_secs(120), || {
        let pool = pool.clone();
        async move {
            let (done,): (i64,) =
                sqlx::query_as("SELECT count(*) FROM jobs WHERE id > $1 AND status = 'done'")
                    .bind(before)
                    .fetch_one(&pool)
                    .await
                    .ok()?;
            (done == total_i64).then_some(())
        }
    })
    .await;
    let waits: Vec<(f64,)> = sqlx::query_as(
        "SELECT extract(epoch FROM claimed_at - created_at)::float8 * 1000 FROM jobs WHERE id > $1",
    )
    .bind(before)
    .fetch_all(pool)
    .await?;
    let mut waits: Vec<f64> = waits.into_iter().map(|(w,)| w).collect();
    Ok((stats::percentile(&mut waits, 50.0), stats::percentile(&mut waits, 99.0)))
}
