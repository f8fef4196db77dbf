//! `regsweep dev`: the scheduler, a worker and the scrubber in one process,
//! on SQLite files in a data directory; no database server needed.
//!
//! Shutdown (Ctrl-C or SIGTERM) stops the worker first, so its jobs end or
//! are given back while the scheduler still records them, then the
//! scheduler and the scrubber, whose stores close last.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use regsweep_common::telemetry::{self, LogFormat};
use regsweep_common::{Shutdown, duration, grpc};
use regsweep_proto::v1;
use tokio::task::JoinHandle;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::client;

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Where the SQLite databases live (created if missing).
    #[arg(long, env = "REGSWEEP_DATA_DIR", default_value = "./regsweep-data")]
    pub data_dir: PathBuf,

    /// Scheduler gRPC address (the CLI's default `--scheduler`).
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub scheduler_listen: String,

    /// Scrubber gRPC address (the CLI's default `--scrubber`).
    #[arg(long, default_value = "127.0.0.1:7071")]
    pub scrubber_listen: String,

    /// Web console HTTP address (empty: no console).
    #[arg(long, default_value = "127.0.0.1:7072")]
    pub console_listen: String,

    /// A registry to add (as `--registry-name`) and read the catalog of.
    #[arg(long)]
    pub registry: Option<String>,

    /// Name of the registry given with `--registry`.
    #[arg(long, default_value = "local")]
    pub registry_name: String,

    /// How long planned deletions wait (and can be restored) before the
    /// scrubber deletes them.
    #[arg(long, value_parser = duration::parse, default_value = "1h")]
    pub delay: Duration,

    /// Log line format on stderr.
    #[arg(long, env = "REGSWEEP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Serve the metrics of every service at `http://ADDR/metrics`.
    #[arg(long, env = "REGSWEEP_METRICS_ADDR")]
    pub metrics_addr: Option<String>,
}

fn sqlite_url(dir: &Path, file: &str) -> String {
    format!("sqlite://{}", dir.join(file).display())
}

/// Makes sure the data directory exists and can be written, with a
/// message that names it when not.
fn prepare_data_dir(dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("cannot resolve data directory {}", dir.display()))?;
    let probe = dir.join(".regsweep-write-probe");
    std::fs::write(&probe, b"")
        .with_context(|| format!("data directory {} is not writable", dir.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(dir)
}

pub async fn run(args: &DevArgs) -> Result<()> {
    let telemetry = telemetry::init(args.log_format, "regsweep")?;
    let result = run_services(args).await;
    telemetry.shutdown().await;
    result
}

async fn run_services(args: &DevArgs) -> Result<()> {
    let started = Instant::now();
    let metrics = Shutdown::new();
    // One endpoint for the three services, which share the process.
    if let Some(addr) = &args.metrics_addr {
        regsweep_common::prometheus::serve(addr, metrics.clone()).await?;
    }
    let dir = prepare_data_dir(&args.data_dir)?;
    let scheduler_listener = grpc::bind(&args.scheduler_listen).await?;
    let scrubber_listener = grpc::bind(&args.scrubber_listen).await?;
    let scheduler_addr =
        grpc::local_addr(&scheduler_listener).context("scheduler listener has no address")?;
    let scrubber_addr =
        grpc::local_addr(&scrubber_listener).context("scrubber listener has no address")?;
    let scheduler_url = format!("http://{scheduler_addr}");
    let scrubber_url = format!("http://{scrubber_addr}");

    let (scheduler, scrubber, worker) = configs(args, &dir, scheduler_addr, scrubber_addr);

    let signals = Shutdown::from_os_signals();
    let (services, workers) = (Shutdown::new(), Shutdown::new());
    let scheduler_task: JoinHandle<Result<()>> = tokio::spawn({
        let shutdown = services.clone();
        async move { Ok(regsweep_scheduler::serve(scheduler, scheduler_listener, shutdown).await?) }
    });
    let scrubber_task: JoinHandle<Result<()>> = tokio::spawn({
        let shutdown = services.clone();
        async move { Ok(regsweep_scrubber::serve(scrubber, scrubber_listener, shutdown).await?) }
    });
    let (mut scheduler_task, mut scrubber_task) = (scheduler_task, scrubber_task);
    let ready = tokio::select! {
        ready = async {
            wait_serving(&scheduler_url).await?;
            wait_serving(&scrubber_url).await
        } => ready,
        // A service that cannot start (its store, say) ends its task.
        ended = &mut scheduler_task => Err(start_failure("scheduler", ended)),
        ended = &mut scrubber_task => Err(start_failure("scrubber", ended)),
        () = signals.cancelled() => Err(anyhow::anyhow!("interrupted during start-up")),
    };
    if let Err(e) = ready {
        services.trigger();
        return Err(e);
    }
    let worker_task: JoinHandle<Result<()>> = tokio::spawn({
        let shutdown = workers.clone();
        async move { Ok(regsweep_worker::run(worker, shutdown).await?) }
    });
    let console = start_console(args, &scheduler_url, &scrubber_url, &services).await?;
    let console_url = console.as_ref().map(|c| c.0.as_str()).unwrap_or_default();
    tracing::info!(
        scheduler = %scheduler_url, scrubber = %scrubber_url, console = %console_url,
        data_dir = %dir.display(),
        ready_ms = started.elapsed().as_millis() as u64, "regsweep dev ready"
    );
    print_banner(&scheduler_url, &scrubber_url, console.as_ref().map(|c| c.0.as_str()), &dir);
    if let Some(url) = &args.registry
        && let Err(e) = add_registry(&scheduler_url, &args.registry_name, url).await
    {
        tracing::error!(error = %client::describe(&e), registry = %url, "cannot add the registry");
    }

    let mut tasks = Tasks(vec![
        Task::new("worker", worker_task),
        Task::new("scheduler", scheduler_task),
        Task::new("scrubber", scrubber_task),
    ]);
    if let Some((_, task)) = console {
        tasks.0.push(Task::new("console", task));
    }
    let result = supervise(tasks, &signals, &services, &workers).await;
    metrics.trigger();
    result
}

/// The three services' configurations: SQLite files in `dir`, each
/// service on its own address, the worker named `dev`.
fn configs(
    args: &DevArgs,
    dir: &Path,
    scheduler_addr: SocketAddr,
    scrubber_addr: SocketAddr,
) -> (regsweep_scheduler::Config, regsweep_scrubber::Config, regsweep_worker::Config) {
    let (scheduler_url, scrubber_url) =
        (format!("http://{scheduler_addr}"), format!("http://{scrubber_addr}"));
    let mut scheduler = regsweep_scheduler::Config::new(sqlite_url(dir, "scheduler.db"));
    scheduler.listen = scheduler_addr.to_string();
    scheduler.db_max_connections = 4;
    let mut scrubber =
        regsweep_scrubber::Config::new(sqlite_url(dir, "scrubber.db"), scheduler_url.clone());
    scrubber.listen = scrubber_addr.to_string();
    scrubber.delay = args.delay;
    scrubber.db_max_connections = 4;
    let mut worker = regsweep_worker::Config::new(scheduler_url);
    worker.scrubber = vec![scrubber_url];
    worker.name = Some("dev".into());
    (scheduler, scrubber, worker)
}

/// Runs until a signal or until a service stops on its own, then stops
/// them all: the worker first, then the scheduler, scrubber and console.
async fn supervise(
    mut tasks: Tasks,
    signals: &Shutdown,
    services: &Shutdown,
    workers: &Shutdown,
) -> Result<()> {
    // A service whose critical task died stops the services it shares
    // this signal with; a service that ends unasked (its server failed, a
    // worker refused, a panic) ends its own task. Either way dev stops
    // everything else and exits non-zero.
    let failed = tokio::select! {
        () = signals.cancelled() => None,
        () = services.cancelled() => Some("a service"),
        ended = tasks.first_to_end() => Some(ended),
    };
    if let Some(service) = failed {
        tracing::error!(service, "a service stopped on its own, stopping regsweep dev");
    }
    tracing::info!("stopping: worker first, then scheduler, scrubber and console");
    workers.trigger();
    let mut result = tasks.join("worker").await;
    services.trigger();
    for name in ["scheduler", "scrubber", "console"] {
        result = result.and(tasks.join(name).await);
    }
    result?;
    if let Some(service) = failed {
        anyhow::bail!("{service} stopped on its own (see its error above)");
    }
    tracing::info!("regsweep dev stopped");
    Ok(())
}

/// One service of `regsweep dev`, on its own task.
struct Task {
    name: &'static str,
    handle: JoinHandle<Result<()>>,
    /// Set once the task ended.
    ended: Option<Result<()>>,
}

impl Task {
    fn new(name: &'static str, handle: JoinHandle<Result<()>>) -> Self {
        Self { name, handle, ended: None }
    }
}

/// The running services.
struct Tasks(Vec<Task>);

impl Tasks {
    /// Waits for the first service task to end and names it; its result
    /// is kept for `join`.
    async fn first_to_end(&mut self) -> &'static str {
        let running = self.0.iter_mut().filter(|t| t.ended.is_none());
        let waits: Vec<_> =
            running.map(|t| Box::pin(async move { (t.name, (&mut t.handle).await) })).collect();
        if waits.is_empty() {
            return std::future::pending().await;
        }
        let ((name, ended), _, _) = futures::future::select_all(waits).await;
        let ended = ended.with_context(|| format!("{name} task")).and_then(|r| r);
        if let Some(task) = self.0.iter_mut().find(|t| t.name == name) {
            task.ended = Some(ended);
        }
        name
    }

    /// Waits for the service `name` (if it runs) and returns its result.
    async fn join(&mut self, name: &str) -> Result<()> {
        let Some(at) = self.0.iter().position(|t| t.name == name) else { return Ok(()) };
        let task = self.0.remove(at);
        match task.ended {
            Some(ended) => ended,
            None => task.handle.await.with_context(|| format!("{name} task"))?,
        }
    }
}

/// The console on `--console-listen`, if any: its URL and task. On
/// loopback HTTP, so its cookies cannot be `Secure`.
async fn start_console(
    args: &DevArgs,
    scheduler: &str,
    scrubber: &str,
    stop: &Shutdown,
) -> Result<Option<(String, JoinHandle<Result<()>>)>> {
    if args.console_listen.is_empty() {
        return Ok(None);
    }
    let listener = grpc::bind(&args.console_listen).await?;
    let addr = grpc::local_addr(&listener).context("console listener has no address")?;
    let mut config = regsweep_console::Config::new(scheduler, scrubber);
    config.insecure_cookies = true;
    let shutdown = stop.clone();
    let task =
        tokio::spawn(async move { Ok(regsweep_console::serve(config, listener, shutdown).await?) });
    Ok(Some((format!("http://{addr}"), task)))
}

/// Why a service ended before it was ready.
fn start_failure(
    service: &str,
    ended: Result<Result<()>, tokio::task::JoinError>,
) -> anyhow::Error {
    match ended {
        Ok(Err(e)) => e.context(format!("the {service} could not start")),
        Ok(Ok(())) => anyhow::anyhow!("the {service} stopped during start-up"),
        Err(e) => anyhow::anyhow!("the {service} task failed: {e}"),
    }
}

/// Waits until `url` reports SERVING on a health watch. The listener is
/// bound before the server runs, so a connection waits in its backlog until
/// the server takes it. A watch that fails is opened again: a service that
/// cannot start closes its listener, and the caller reports that service's
/// own error (its task ends) rather than the refused connection.
async fn wait_serving(url: &str) -> Result<()> {
    let retrying = async {
        loop {
            match watch_until_serving(url).await {
                Ok(()) => return,
                Err(e) => {
                    let error = client::describe(&e);
                    tracing::debug!(%error, %url, "health watch failed, retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), retrying)
        .await
        .with_context(|| format!("{url} did not become healthy within 60s"))
}

async fn watch_until_serving(url: &str) -> Result<()> {
    let channel = grpc::connect(url).await?;
    let mut updates = HealthClient::new(channel)
        .watch(HealthCheckRequest { service: String::new() })
        .await?
        .into_inner();
    while let Some(update) = updates.message().await? {
        if update.status() == ServingStatus::Serving {
            return Ok(());
        }
    }
    bail!("{url} ended its health watch before serving")
}

async fn add_registry(scheduler: &str, name: &str, url: &str) -> Result<()> {
    let mut registries = client::registries(scheduler).await?;
    let registry = v1::Registry { name: name.into(), url: url.into(), ..Default::default() };
    match registries
        .create_registry(v1::CreateRegistryRequest {
            registry: Some(registry),
            ..Default::default()
        })
        .await
    {
        Ok(_) => tracing::info!(registry = name, %url, "registry added"),
        Err(status) if status.code() == tonic::Code::AlreadyExists => {
            tracing::info!(registry = name, "registry exists already");
        }
        Err(status) => return Err(status.into()),
    }
    let mut repositories = client::repositories(scheduler).await?;
    let job = repositories
        .sync_repositories(v1::SyncRepositoriesRequest { registry: name.into() })
        .await?
        .into_inner()
        .job
        .map(|j| j.id)
        .unwrap_or_default();
    tracing::info!(registry = name, job, "catalog sync started");
    Ok(())
}

fn print_banner(scheduler: &str, scrubber: &str, console: Option<&str>, dir: &Path) {
    let sched = scheduler.trim_start_matches("http://");
    let console =
        console.map(|url| format!("\n  console    {url}  (the web console)")).unwrap_or_default();
    println!(
        "\nregsweep dev is running (data in {dir})\n\
         \n  scheduler  {scheduler}  (jobs, workers, crons, registries, repositories, policies)\
         \n  scrubber   {scrubber}  (pending and finished deletions)\
         \n  worker     in process, connected to the scheduler{console}\
         \n\nTry:\
         \n  regsweep --scheduler {scheduler} jobs create --kind sleep --args '{{\"seconds\": 1}}'\
         \n  regsweep --scheduler {scheduler} jobs list\
         \n  regsweep --scrubber {scrubber} scrub status\
         \n  grpcurl -plaintext {sched} list\
         \n  grpcurl -plaintext {sched} grpc.health.v1.Health/Check\
         \n\nCtrl-C stops everything; the data stays for the next start.\n",
        dir = dir.display()
    );
}
