//! The job queue on SQLite next to PostgreSQL, in the same run: the store
//! alone (the same trait calls on both), and end to end (a scheduler
//! process on each store, workers over gRPC). Also the time from
//! `regsweep dev` start to every service healthy, next to the three
//! services started as separate processes on PostgreSQL.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use regsweep_integration_tests::process::Service;
use regsweep_integration_tests::{Dev, Scheduler, Scrubber, TestDb, Worker, wait_until};
use regsweep_proto::json_to_struct;
use regsweep_proto::v1::job_service_client::JobServiceClient;
use regsweep_proto::v1::{self, JobStatus};
use regsweep_scheduler::store::{
    ClaimSlot, JobStore, NewJob, SessionRef, Stores, UpdateWrite, WorkerHello, WriteBatch,
};

use crate::stats;

#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// Jobs per drain.
    #[arg(long, default_value_t = 20_000)]
    jobs: u32,
    /// Concurrent clients enqueueing and claiming on the store alone.
    #[arg(long, default_value_t = 8)]
    clients: u32,
    /// Claim and completion batch of the store-alone drain.
    #[arg(long, default_value_t = 100)]
    batch: u32,
    /// Worker processes of the end-to-end drain (capacity 128 each).
    #[arg(long, default_value_t = 2)]
    workers: u32,
    /// Runs; figures are medians.
    #[arg(long, default_value_t = 3)]
    runs: u32,
}

/// Picks one measure's figures.
type Column = fn(&mut Figures) -> &mut Vec<f64>;

#[derive(Default)]
struct Figures {
    enqueue: Vec<f64>,
    drain: Vec<f64>,
    end_to_end: Vec<f64>,
}

pub async fn run(args: Args) -> Result<()> {
    println!(
        "stores benchmark: {} jobs, {} clients x batch {} on the store alone, {} workers end to end, {} runs",
        args.jobs, args.clients, args.batch, args.workers, args.runs
    );
    let (mut pg, mut lite) = (Figures::default(), Figures::default());
    for run in 1..=args.runs {
        for (name, figures) in [("postgres", &mut pg), ("sqlite", &mut lite)] {
            let db = if name == "postgres" { TestDb::postgres().await } else { TestDb::sqlite() };
            let (enqueue, drain) = store_alone(&db, &args).await?;
            let end_to_end =
                through_services(&db, args.jobs, args.workers, &Transport::plaintext()).await?;
            println!(
                "run {run} {name}: enqueue {enqueue:.0} jobs/s, claim+complete {drain:.0} jobs/s, end to end {end_to_end:.0} jobs/s"
            );
            figures.enqueue.push(enqueue);
            figures.drain.push(drain);
            figures.end_to_end.push(end_to_end);
        }
    }
    println!();
    println!(
        "| measure (median of {} runs) | PostgreSQL | SQLite | SQLite / PostgreSQL |",
        args.runs
    );
    println!("|---|---|---|---|");
    let rows: [(&str, Column); 3] = [
        ("store alone: create_job, {c} clients", |f| &mut f.enqueue),
        ("store alone: claim + complete, {c} clients x batch {b}", |f| &mut f.drain),
        ("end to end: scheduler + {w} workers over gRPC", |f| &mut f.end_to_end),
    ];
    for (label, pick) in rows {
        let label = label
            .replace("{c}", &args.clients.to_string())
            .replace("{b}", &args.batch.to_string())
            .replace("{w}", &args.workers.to_string());
        let (p, l) = (stats::median(pick(&mut pg)), stats::median(pick(&mut lite)));
        println!("| {label} | {p:.0} jobs/s | {l:.0} jobs/s | {:.0}% |", 100.0 * l / p);
    }
    start_up(&args).await
}

fn job(kind: &str) -> NewJob {
    NewJob {
        kind: kind.into(),
        args: serde_json::json!({}),
        priority: 0,
        scheduled_at: None,
        max_attempts: 3,
        unique_key: None,
        parent_id: None,
        trace_context: None,
    }
}

/// Enqueues and drains `jobs` through the store trait; jobs per second of
/// each phase.
async fn store_alone(db: &TestDb, args: &Args) -> Result<(f64, f64)> {
    let stores = Stores::open(&db.url, args.clients + 2).await?;
    let jobs = stores.jobs.clone();
    let per_client = args.jobs / args.clients;
    let total = f64::from(per_client * args.clients);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.clients {
        let jobs = jobs.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..per_client {
                jobs.create_job(job("bench")).await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let enqueue = total / started.elapsed().as_secs_f64();

    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.clients {
        let jobs = jobs.clone();
        let batch = args.batch as usize;
        tasks.push(tokio::spawn(async move { drain(jobs, batch).await }));
    }
    let mut drained = 0;
    for task in tasks {
        drained += task.await??;
    }
    anyhow::ensure!(drained as f64 == total, "drained {drained} of {total}");
    let drain = total / started.elapsed().as_secs_f64();
    stores.close().await;
    Ok((enqueue, drain))
}

/// One worker's loop: claim a batch, complete it, until nothing is left.
async fn drain(jobs: Arc<dyn JobStore>, batch: usize) -> Result<u64> {
    let hello = WorkerHello {
        name: "bench".into(),
        version: "bench".into(),
        capacity: [("bench".to_string(), serde_json::json!(batch))].into_iter().collect(),
        resume_worker_id: None,
        running: Vec::new(),
        ending: Vec::new(),
        end_acks: false,
    };
    let ttl = Duration::from_secs(600);
    let r = jobs.register_worker(&hello, ttl).await?;
    let session = SessionRef { worker_id: r.worker_id, epoch: r.epoch };
    let mut done = 0;
    loop {
        let claimed =
            jobs.claim("bench", &vec![ClaimSlot { session }; batch], uuid::Uuid::new_v4()).await?;
        if claimed.is_empty() {
            return Ok(done);
        }
        let updates = claimed
            .iter()
            .map(|j| UpdateWrite {
                worker_id: session.worker_id,
                job_id: j.id,
                attempt: j.attempt,
                status: JobStatus::Done,
                progress: 1.0,
                result: None,
                error: None,
                retryable: false,
            })
            .collect();
        jobs.write_batch(&WriteBatch { updates, ..Default::default() }, ttl).await?;
        done += claimed.len() as u64;
    }
}

/// How the services talk: plaintext, TLS or mutual TLS.
pub struct Transport {
    pub scheduler: Vec<String>,
    pub worker: Vec<String>,
    /// Dial `https://` (this process's client TLS must be installed).
    pub https: bool,
    /// Environment of the scheduler and the workers.
    pub envs: Vec<(String, String)>,
}

impl Transport {
    pub fn plaintext() -> Self {
        Self { scheduler: Vec::new(), worker: Vec::new(), https: false, envs: Vec::new() }
    }
}

/// Jobs per second through a scheduler process and worker processes: the
/// backlog is enqueued over gRPC first, then the workers start (their
/// start, a few ms, counts) and drain it.
pub async fn through_services(
    db: &TestDb,
    jobs: u32,
    workers: u32,
    transport: &Transport,
) -> Result<f64> {
    let extra: Vec<&str> = transport.scheduler.iter().map(String::as_str).collect();
    let envs: Vec<(&str, &str)> =
        transport.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut scheduler =
        Scheduler::launch_with_env("scheduler", &db.url, &extra, &envs, false).await;
    if transport.https {
        scheduler.url = scheduler.url.replace("http://", "https://");
    }
    let channel = regsweep_common::grpc::connect(&scheduler.url).await?;
    let clients = 8;
    let per_client = jobs / clients;
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let mut client = JobServiceClient::new(channel.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..per_client {
                let request = v1::CreateJobRequest {
                    kind: "sleep".into(),
                    args: Some(json_to_struct(serde_json::json!({"seconds": 0}))),
                    ..Default::default()
                };
                client.create_job(request).await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let started = Instant::now();
    let mut processes = Vec::new();
    let mut worker_args = vec!["--capacity", "sleep=128"];
    worker_args.extend(transport.worker.iter().map(String::as_str));
    for i in 0..workers {
        let name = format!("w{i}");
        processes.push(Worker::spawn_env(&scheduler.url, &name, &worker_args, &envs, false));
    }
    let jobs_client = JobServiceClient::new(channel);
    wait_until("the backlog to drain", Duration::from_secs(600), || {
        let mut jobs = jobs_client.clone();
        async move {
            let request = v1::ListJobsRequest {
                statuses: vec![JobStatus::Waiting.into(), JobStatus::Running.into()],
                page_size: 1,
                ..Default::default()
            };
            let left = jobs.list_jobs(request).await.ok()?.into_inner().jobs;
            left.is_empty().then_some(())
        }
    })
    .await;
    Ok(f64::from(per_client * clients) / started.elapsed().as_secs_f64())
}

/// Time from spawning `regsweep dev` to its ready line (logged once both
/// gRPC servers answer health checks SERVING), fresh and on existing
/// data, next to the three services as separate processes on PostgreSQL.
async fn start_up(args: &Args) -> Result<()> {
    let (mut fresh, mut again, mut separate) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..args.runs.max(3) {
        let dir = tempfile::tempdir()?;
        for times in [&mut fresh, &mut again] {
            let started = Instant::now();
            let mut dev = Dev::launch(dir.path(), &[], false).await;
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            stop(&mut dev.process).await;
        }
        let db = TestDb::postgres().await;
        let started = Instant::now();
        let scheduler = Scheduler::launch("scheduler", &db.url, &[], false).await;
        let worker = Worker::spawn_with(&scheduler.url, "w", &[], false);
        let (scrubber, _) = tokio::join!(
            Scrubber::launch("scrubber", &db, &scheduler, &[], false),
            worker.process.wait_for_message("registered with scheduler", Duration::from_secs(30)),
        );
        separate.push(started.elapsed().as_secs_f64() * 1000.0);
        drop((scrubber, worker, scheduler));
    }
    println!();
    println!("| start to every service healthy (median of {}) | ms |", fresh.len());
    println!("|---|---|");
    println!(
        "| `regsweep dev`, empty data directory (creates both SQLite files) | {:.0} |",
        stats::median(&mut fresh)
    );
    println!("| `regsweep dev`, existing data directory | {:.0} |", stats::median(&mut again));
    println!(
        "| peer: scheduler, scrubber and worker as separate processes on PostgreSQL | {:.0} |",
        stats::median(&mut separate)
    );
    Ok(())
}

async fn stop(process: &mut Service) {
    process.signal(nix::sys::signal::Signal::SIGINT);
    process.wait_exit(Duration::from_secs(30)).await;
}

/// The end-to-end drain's settings, shared by the comparisons of
/// transports and telemetry.
#[derive(Clone, Debug, clap::Args)]
pub struct DrainArgs {
    /// Jobs per drain.
    #[arg(long, default_value_t = 20_000)]
    pub jobs: u32,
    /// Worker processes (capacity 128 each).
    #[arg(long, default_value_t = 2)]
    pub workers: u32,
    /// Runs; figures are medians.
    #[arg(long, default_value_t = 3)]
    pub runs: u32,
}

/// Drains `args.jobs` through the services once per mode per run, modes
/// interleaved, each on a fresh PostgreSQL database; prints the medians
/// as a table, each as a share of the first mode's.
pub async fn compare(what: &str, args: &DrainArgs, modes: &[(&str, Transport)]) -> Result<()> {
    println!(
        "{what} benchmark: {} jobs, scheduler on PostgreSQL + {} workers over gRPC, {} runs",
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
    println!();
    println!("| {what} (median of {} runs) | end to end | of {} |", args.runs, modes[0].0);
    println!("|---|---|---|");
    let first = crate::stats::median(&mut figures[0].clone());
    for ((name, _), runs) in modes.iter().zip(figures.iter_mut()) {
        let rate = crate::stats::median(runs);
        println!("| {name} | {rate:.0} jobs/s | {:.0}% |", 100.0 * rate / first);
    }
    Ok(())
}
