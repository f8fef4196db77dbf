//! The regsweep services as test fixtures.

use std::time::Duration;

use nix::sys::signal::Signal;
use regsweep_proto::v1::job_service_client::JobServiceClient;
use regsweep_proto::v1::worker_service_client::WorkerServiceClient;
use tonic::transport::Channel;

use crate::db::TestDb;
use crate::process::Service;

const START_TIMEOUT: Duration = Duration::from_secs(30);

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
        let mut args: Vec<String> = [
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--database-url",
            &db.url,
            "--heartbeat-interval",
            "1s",
            "--heartbeat-ttl",
            "3s",
            "--poll-interval",
            "200ms",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let process = Service::spawn(name, "regsweep-scheduler", &args, &[]);
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

    /// Starts a worker without waiting for it to register.
    pub fn spawn(scheduler_url: &str, name: &str, extra: &[&str]) -> Self {
        let mut args: Vec<String> =
            ["--scheduler", scheduler_url, "--name", name, "--log-format", "json"]
                .iter()
                .map(|s| s.to_string())
                .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        Self { process: Service::spawn(name, "regsweep-worker", &args, &[]) }
    }

    pub fn signal(&self, sig: Signal) {
        self.process.signal(sig);
    }
}
