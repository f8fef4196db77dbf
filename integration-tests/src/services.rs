//! The regsweep services as test fixtures.

use std::time::Duration;

use nix::sys::signal::Signal;
use regsweep_proto::v1::job_service_client::JobServiceClient;
use regsweep_proto::v1::policy_service_client::PolicyServiceClient;
use regsweep_proto::v1::registry_service_client::RegistryServiceClient;
use regsweep_proto::v1::repository_service_client::RepositoryServiceClient;
use regsweep_proto::v1::scrubber_service_client::ScrubberServiceClient;
use regsweep_proto::v1::worker_service_client::WorkerServiceClient;
use tonic::transport::Channel;

use crate::db::TestDb;
use crate::process::Service;

const START_TIMEOUT: Duration = Duration::from_secs(30);

fn quiet_env(echo: bool) -> &'static [(&'static str, &'static str)] {
    if echo { &[] } else { &[("RUST_LOG", "info")] }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// A `regsweep-scheduler` process on a free port.
pub struct Scheduler {
    pub process: Service,
    pub url: String,
}

impl Scheduler {
    /// Starts a scheduler on `db` with short heartbeats (1 s interval, 3 s
    /// TTL) unless `extra` says otherwise, and waits until it listens.
    pub async fn start(db: &TestDb, extra: &[&str]) -> Self {
        Self::start_named("scheduler", db, extra).await
    }

    pub async fn start_named(name: &str, db: &TestDb, extra: &[&str]) -> Self {
        Self::start_on(name, db, "127.0.0.1:0", extra).await
    }

    /// Starts a scheduler listening on `listen` (to restart one on the
    /// port it had).
    pub async fn start_on(name: &str, db: &TestDb, listen: &str, extra: &[&str]) -> Self {
        let defaults = [
            ("--heartbeat-interval", "1s"),
            ("--heartbeat-ttl", "3s"),
            ("--poll-interval", "200ms"),
        ];
        let mut args = vec!["--listen", listen];
        for (flag, value) in defaults {
            if !extra.contains(&flag) {
                args.extend([flag, value]);
            }
        }
        args.extend(extra);
        Self::launch(name, &db.url, &args, true).await
    }

    /// The address it listens on (`127.0.0.1:port`).
    pub fn addr(&self) -> &str {
        self.url.trim_start_matches("http://")
    }

    /// Starts a scheduler with only `extra` on top of the log format and
    /// database flags (and `--listen 127.0.0.1:0` unless `extra` has one);
    /// `echo` copies its log to stderr.
    pub async fn launch(name: &str, database_url: &str, extra: &[&str], echo: bool) -> Self {
        Self::launch_with_env(name, database_url, extra, quiet_env(echo), echo).await
    }

    /// [`Scheduler::launch`] with extra environment variables.
    pub async fn launch_with_env(
        name: &str,
        database_url: &str,
        extra: &[&str],
        envs: &[(&str, &str)],
        echo: bool,
    ) -> Self {
        let listen =
            if extra.contains(&"--listen") { &[][..] } else { &["--listen", "127.0.0.1:0"][..] };
        let mut args = strings(listen);
        args.extend(strings(&["--log-format", "json", "--database-url", database_url]));
        args.extend(strings(extra));
        let process = Service::spawn_with(name, "regsweep-scheduler", &args, envs, echo);
        let line = process.wait_for_message("listening", START_TIMEOUT).await;
        let addr = line["addr"].as_str().expect("listening line has addr").to_string();
        Self { process, url: format!("http://{addr}") }
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url.clone())
            .expect("url")
            .connect()
            .await
            .expect("connect scheduler")
    }

    pub async fn jobs(&self) -> JobServiceClient<Channel> {
        JobServiceClient::new(self.channel().await)
    }

    pub async fn workers(&self) -> WorkerServiceClient<Channel> {
        WorkerServiceClient::new(self.channel().await)
    }

    pub async fn registries(&self) -> RegistryServiceClient<Channel> {
        RegistryServiceClient::new(self.channel().await)
    }

    pub async fn repositories(&self) -> RepositoryServiceClient<Channel> {
        RepositoryServiceClient::new(self.channel().await)
    }

    pub async fn policies(&self) -> PolicyServiceClient<Channel> {
        PolicyServiceClient::new(self.channel().await)
    }
}

/// A `regsweep-worker` process.
pub struct Worker {
    pub process: Service,
}

impl Worker {
    /// Starts a worker named `name` against `scheduler` and waits until it
    /// is registered.
    pub async fn start(scheduler: &Scheduler, name: &str, extra: &[&str]) -> Self {
        let worker = Self::spawn(&scheduler.url, name, extra);
        worker.process.wait_for_message("registered with scheduler", START_TIMEOUT).await;
        worker
    }

    /// Starts a worker with extra environment variables and waits until it
    /// is registered.
    pub async fn start_with_env(
        scheduler: &Scheduler,
        name: &str,
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> Self {
        let mut args =
            strings(&["--scheduler", &scheduler.url, "--name", name, "--log-format", "json"]);
        args.extend(strings(extra));
        let worker =
            Self { process: Service::spawn_with(name, "regsweep-worker", &args, envs, true) };
        worker.process.wait_for_message("registered with scheduler", START_TIMEOUT).await;
        worker
    }

    /// Starts a worker without waiting for it to register.
    pub fn spawn(scheduler_url: &str, name: &str, extra: &[&str]) -> Self {
        Self::spawn_with(scheduler_url, name, extra, true)
    }

    /// Starts a worker; `echo` copies its log to stderr.
    pub fn spawn_with(scheduler_url: &str, name: &str, extra: &[&str], echo: bool) -> Self {
        Self::spawn_env(scheduler_url, name, extra, quiet_env(echo), echo)
    }

    /// Starts a worker with environment variables `envs`.
    pub fn spawn_env(
        scheduler_url: &str,
        name: &str,
        extra: &[&str],
        envs: &[(&str, &str)],
        echo: bool,
    ) -> Self {
        let mut args =
            strings(&["--scheduler", scheduler_url, "--name", name, "--log-format", "json"]);
        args.extend(strings(extra));
        Self { process: Service::spawn_with(name, "regsweep-worker", &args, envs, echo) }
    }

    pub fn signal(&self, sig: Signal) {
        self.process.signal(sig);
    }
}

/// A `regsweep-scrubber` process on a free port.
pub struct Scrubber {
    pub process: Service,
    pub url: String,
}

impl Scrubber {
    /// Starts a scrubber on `db` reading registries from `scheduler`, with
    /// `extra` flags (`--delay`, `--parallelism`, ...), and waits until it
    /// listens.
    pub async fn start(name: &str, db: &TestDb, scheduler: &Scheduler, extra: &[&str]) -> Self {
        Self::launch(name, db, scheduler, extra, true).await
    }

    /// Starts a scrubber with extra environment variables.
    pub async fn start_with_env(
        name: &str,
        db: &TestDb,
        scheduler: &Scheduler,
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> Self {
        Self::spawn_env(name, db, scheduler, "127.0.0.1:0", extra, envs, true).await
    }

    /// Starts a scrubber listening on `listen` (`127.0.0.1:PORT`): one
    /// started again after a kill keeps the address its clients know.
    pub async fn start_on(
        name: &str,
        db: &TestDb,
        scheduler: &Scheduler,
        listen: &str,
        extra: &[&str],
    ) -> Self {
        Self::spawn_env(name, db, scheduler, listen, extra, quiet_env(true), true).await
    }

    /// Starts a scrubber; `echo` copies its log to stderr.
    pub async fn launch(
        name: &str,
        db: &TestDb,
        scheduler: &Scheduler,
        extra: &[&str],
        echo: bool,
    ) -> Self {
        Self::spawn_env(name, db, scheduler, "127.0.0.1:0", extra, quiet_env(echo), echo).await
    }

    async fn spawn_env(
        name: &str,
        db: &TestDb,
        scheduler: &Scheduler,
        listen: &str,
        extra: &[&str],
        envs: &[(&str, &str)],
        echo: bool,
    ) -> Self {
        let mut args = strings(&[
            "--listen",
            listen,
            "--log-format",
            "json",
            "--database-url",
            &db.scrubber_url,
            "--scheduler",
            &scheduler.url,
        ]);
        // Quick by default; a test may set its own.
        if !extra.contains(&"--poll-interval") {
            args.extend(strings(&["--poll-interval", "100ms"]));
        }
        args.extend(strings(extra));
        let process = Service::spawn_with(name, "regsweep-scrubber", &args, envs, echo);
        let line = process.wait_for_message("listening", START_TIMEOUT).await;
        let addr = line["addr"].as_str().expect("listening line has addr").to_string();
        Self { process, url: format!("http://{addr}") }
    }

    pub async fn client(&self) -> ScrubberServiceClient<Channel> {
        let channel = Channel::from_shared(self.url.clone())
            .expect("url")
            .connect()
            .await
            .expect("connect scrubber");
        ScrubberServiceClient::new(channel)
    }
}

/// `regsweep dev`: every service in one process on SQLite files in `dir`.
pub struct Dev {
    pub process: Service,
    pub scheduler_url: String,
    pub scrubber_url: String,
    pub console_url: String,
}

impl Dev {
    /// Starts it on free ports and waits until every service is healthy
    /// (it logs `regsweep dev ready` only then).
    pub async fn start(dir: &std::path::Path, extra: &[&str]) -> Self {
        Self::launch(dir, extra, true).await
    }

    /// Starts it; `echo` copies its log to stderr.
    pub async fn launch(dir: &std::path::Path, extra: &[&str], echo: bool) -> Self {
        Self::spawn(dir, extra, quiet_env(echo), echo).await
    }

    /// Starts it with extra environment variables.
    pub async fn start_with_env(
        dir: &std::path::Path,
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> Self {
        Self::spawn(dir, extra, envs, true).await
    }

    async fn spawn(
        dir: &std::path::Path,
        extra: &[&str],
        envs: &[(&str, &str)],
        echo: bool,
    ) -> Self {
        let mut args = strings(&[
            "dev",
            "--data-dir",
            &dir.display().to_string(),
            "--scheduler-listen",
            "127.0.0.1:0",
            "--scrubber-listen",
            "127.0.0.1:0",
            "--console-listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ]);
        args.extend(strings(extra));
        let process = Service::spawn_with("dev", "regsweep", &args, envs, echo);
        let ready = process.wait_for_message("regsweep dev ready", START_TIMEOUT).await;
        let url = |field: &str| ready[field].as_str().expect("ready line has urls").to_string();
        Self {
            scheduler_url: url("scheduler"),
            scrubber_url: url("scrubber"),
            console_url: url("console"),
            process,
        }
    }

    pub async fn channel(url: &str) -> Channel {
        Channel::from_shared(url.to_string()).expect("url").connect().await.expect("connect")
    }
}

/// `regsweep console` on a free port, a client of a scheduler and a
/// scrubber. Its cookies are not `Secure`: the tests reach it over HTTP.
pub struct Console {
    pub process: Service,
    pub url: String,
}

impl Console {
    pub async fn start(scheduler: &str, scrubber: &str) -> Self {
        let args = strings(&[
            "--scheduler",
            scheduler,
            "--scrubber",
            scrubber,
            "console",
            "--listen",
            "127.0.0.1:0",
            "--insecure-cookies",
            "--log-format",
            "json",
        ]);
        let process = Service::spawn_with("console", "regsweep", &args, quiet_env(true), true);
        let line = process.wait_for_message("console listening", START_TIMEOUT).await;
        let url = line["url"].as_str().expect("listening line has url").to_string();
        Self { process, url }
    }
}
