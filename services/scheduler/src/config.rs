//! Scheduler configuration: every flag has a `REGSWEEP_*` env fallback.

use std::time::Duration;

use regsweep_common::auth::ServerAuthArgs;
use regsweep_common::duration;
use regsweep_common::grpc::HealthArgs;
use regsweep_common::prometheus::MetricsArgs;
use regsweep_common::telemetry::LogFormat;
use regsweep_common::tls::{ServerTlsArgs, TlsIdentityArgs};

/// `regsweep-scheduler`: the job queue, worker sessions and admin APIs.
#[derive(Clone, Debug, clap::Parser)]
#[command(name = "regsweep-scheduler", version, about)]
pub struct Config {
    /// gRPC listen address.
    #[arg(long, env = "REGSWEEP_LISTEN", default_value = "127.0.0.1:7070")]
    pub listen: String,

    #[command(flatten)]
    pub tls: TlsIdentityArgs,

    #[command(flatten)]
    pub tls_server: ServerTlsArgs,

    #[command(flatten)]
    pub auth: ServerAuthArgs,

    #[command(flatten)]
    pub health: HealthArgs,

    /// Database: `postgres://user@host/db` (the `scheduler` schema in it),
    /// or `sqlite://PATH` for one process on one machine.
    #[arg(long, env = "REGSWEEP_DATABASE_URL")]
    pub database_url: String,

    /// Maximum database connections of this replica.
    #[arg(long, env = "REGSWEEP_DB_MAX_CONNECTIONS", default_value_t = 10)]
    pub db_max_connections: u32,

    /// Log line format on stderr.
    #[arg(long, env = "REGSWEEP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    #[command(flatten)]
    pub metrics: MetricsArgs,

    /// How often the leader refreshes the gauges it reads from the
    /// database (jobs by status, backlog, cleanups); only with
    /// `--metrics-addr`.
    #[arg(long, env = "REGSWEEP_METRICS_INTERVAL", value_parser = duration::parse, default_value = "15s")]
    pub metrics_interval: Duration,

    /// How often workers heartbeat.
    #[arg(long, env = "REGSWEEP_HEARTBEAT_INTERVAL", value_parser = duration::parse, default_value = "5s")]
    pub heartbeat_interval: Duration,

    /// A worker with no heartbeat for this long is declared dead.
    #[arg(long, env = "REGSWEEP_HEARTBEAT_TTL", value_parser = duration::parse, default_value = "15s")]
    pub heartbeat_ttl: Duration,

    /// How often dispatchers look for due jobs without a notification
    /// (scheduled jobs, retries, missed notifications).
    #[arg(long, env = "REGSWEEP_POLL_INTERVAL", value_parser = duration::parse, default_value = "1s")]
    pub poll_interval: Duration,

    /// Most jobs claimed by one statement.
    #[arg(long, env = "REGSWEEP_MAX_CLAIM_BATCH", default_value_t = 512)]
    pub max_claim_batch: u32,

    /// Most worker writes (updates, log chunks, heartbeats) flushed in one
    /// transaction.
    #[arg(long, env = "REGSWEEP_MAX_WRITE_BATCH", default_value_t = 2048)]
    pub max_write_batch: usize,

    /// Worker streams this replica serves at once; more are refused with
    /// RESOURCE_EXHAUSTED and a retry delay (they reconnect, or go to
    /// another replica).
    #[arg(long, env = "REGSWEEP_MAX_WORKER_STREAMS", default_value_t = 1000)]
    pub max_worker_streams: u32,

    /// How long the leader lease lasts; a dead leader is replaced after it
    /// expires. The leader renews it every third of this.
    #[arg(long, env = "REGSWEEP_LEADER_LEASE", value_parser = duration::parse, default_value = "10s")]
    pub leader_lease: Duration,

    /// Finished jobs (and their logs) older than this are deleted by the
    /// default retention cron (`joblogs-gc`).
    #[arg(long, env = "REGSWEEP_JOB_RETENTION", value_parser = duration::parse, default_value = "14d")]
    pub job_retention: Duration,

    /// At most this many finished jobs are kept by the default retention
    /// cron (0: no limit by count).
    #[arg(long, env = "REGSWEEP_JOB_RETENTION_COUNT", default_value_t = 100_000)]
    pub job_retention_count: u64,

    /// When the default retention cron runs (cron expression, UTC). The
    /// cron is created once; change it later with `regsweep crons`.
    #[arg(long, env = "REGSWEEP_JOB_RETENTION_SCHEDULE", default_value = "17 3 * * *")]
    pub job_retention_schedule: String,

    /// `tag_cleanup` jobs that may run at once, over every policy
    /// (GitLab's limited capacity).
    #[arg(long, env = "REGSWEEP_CLEANUP_CAPACITY", default_value_t = 4)]
    pub cleanup_capacity: u32,

    /// How often the leader looks for repositories due for cleanup (it
    /// also looks whenever a cleanup ends).
    #[arg(long, env = "REGSWEEP_TICK", value_parser = duration::parse, default_value = "60s")]
    pub tick: Duration,

    /// Time budget of one cleanup; a cleanup that spends it ends
    /// `unfinished` and resumes later.
    #[arg(long, env = "REGSWEEP_CLEANUP_TIME_BUDGET", value_parser = duration::parse, default_value = "5m")]
    pub cleanup_time_budget: Duration,

    /// A cleanup still `ongoing` this long after its time budget is taken
    /// as lost and becomes `unfinished`.
    #[arg(long, env = "REGSWEEP_CLEANUP_STALE_MARGIN", value_parser = duration::parse, default_value = "10m")]
    pub cleanup_stale_margin: Duration,

    /// How long PreviewPolicy waits for a worker to read the repository.
    #[arg(long, env = "REGSWEEP_PREVIEW_TIMEOUT", value_parser = duration::parse, default_value = "60s")]
    pub preview_timeout: Duration,

    /// Apply the schema migrations and exit (a deploy's migration step).
    #[arg(long, env = "REGSWEEP_MIGRATE_ONLY")]
    pub migrate_only: bool,

    /// How long in-flight rpcs get to finish after SIGTERM.
    #[arg(long, env = "REGSWEEP_SHUTDOWN_TIMEOUT", value_parser = duration::parse, default_value = "10s")]
    pub shutdown_timeout: Duration,
}

impl Config {
    /// The defaults, on `database_url`, listening on an ephemeral local port.
    pub fn new(database_url: impl Into<String>) -> Self {
        Self {
            listen: "127.0.0.1:0".into(),
            tls: TlsIdentityArgs::default(),
            tls_server: ServerTlsArgs::default(),
            auth: ServerAuthArgs::default(),
            health: HealthArgs::default(),
            database_url: database_url.into(),
            db_max_connections: 10,
            log_format: LogFormat::Text,
            metrics: MetricsArgs::default(),
            metrics_interval: Duration::from_secs(15),
            heartbeat_interval: Duration::from_secs(5),
            heartbeat_ttl: Duration::from_secs(15),
            poll_interval: Duration::from_secs(1),
            max_claim_batch: 512,
            max_write_batch: 2048,
            max_worker_streams: 1000,
            leader_lease: Duration::from_secs(10),
            job_retention: Duration::from_secs(14 * 86_400),
            job_retention_count: 100_000,
            job_retention_schedule: "17 3 * * *".into(),
            cleanup_capacity: 4,
            tick: Duration::from_secs(60),
            cleanup_time_budget: Duration::from_secs(300),
            cleanup_stale_margin: Duration::from_secs(600),
            preview_timeout: Duration::from_secs(60),
            migrate_only: false,
            shutdown_timeout: Duration::from_secs(10),
        }
    }

    /// Settings that cannot work together, as one message per problem.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.heartbeat_interval.is_zero() {
            problems.push("--heartbeat-interval must be positive".to_string());
        }
        // Workers stop their attempts when no heartbeat was acknowledged
        // within four fifths of the TTL: two heartbeats must fit in it.
        if self.heartbeat_ttl < self.heartbeat_interval * 2 {
            problems.push(format!(
                "--heartbeat-ttl ({:?}) must be at least twice --heartbeat-interval ({:?})",
                self.heartbeat_ttl, self.heartbeat_interval
            ));
        }
        if self.metrics_interval.is_zero() {
            problems.push("--metrics-interval must be positive".to_string());
        }
        if self.poll_interval.is_zero() {
            problems.push("--poll-interval must be positive".to_string());
        }
        if self.max_worker_streams == 0 {
            problems.push("--max-worker-streams must be at least 1".to_string());
        }
        if self.max_claim_batch == 0 || self.max_write_batch == 0 {
            problems.push("--max-claim-batch and --max-write-batch must be positive".to_string());
        }
        if self.leader_lease < Duration::from_secs(1) {
            problems.push("--leader-lease must be at least 1s".to_string());
        }
        let retention = self.job_retention.as_secs_f64();
        if !(crate::kinds::MIN_RETENTION_SECONDS..=crate::kinds::MAX_RETENTION_SECONDS)
            .contains(&retention)
        {
            problems.push("--job-retention must be between 1m and 3650d".to_string());
        }
        if self.job_retention_count > crate::kinds::MAX_KEEP_LAST {
            problems.push(format!(
                "--job-retention-count must be at most {}",
                crate::kinds::MAX_KEEP_LAST
            ));
        }
        if let Err(reason) = crate::schedule::parse(&self.job_retention_schedule) {
            problems.push(format!("--job-retention-schedule: {reason}"));
        }
        if self.cleanup_capacity > 10_000 {
            problems.push("--cleanup-capacity must be at most 10000".to_string());
        }
        if self.tick < Duration::from_millis(100) {
            problems.push("--tick must be at least 100ms".to_string());
        }
        if self.cleanup_time_budget < Duration::from_secs(1) {
            problems.push("--cleanup-time-budget must be at least 1s".to_string());
        }
        if self.preview_timeout.is_zero() {
            problems.push("--preview-timeout must be positive".to_string());
        }
        if self.db_max_connections < 3 {
            // Listener, dispatcher and writer each hold one while busy.
            problems.push("--db-max-connections must be at least 3".to_string());
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn new_matches_flag_defaults() {
        let parsed = Config::parse_from(["regsweep-scheduler", "--database-url", "postgres://x"]);
        let built = Config::new("postgres://x");
        assert_eq!(
            format!("{:?}", Config { listen: built.listen.clone(), ..parsed }),
            format!("{built:?}")
        );
        assert!(built.problems().is_empty());
    }

    #[test]
    fn ttl_must_hold_two_heartbeats() {
        let mut config = Config::new("postgres://x");
        config.heartbeat_ttl = config.heartbeat_interval;
        assert_eq!(config.problems().len(), 1);
        config.heartbeat_ttl = config.heartbeat_interval * 2;
        assert!(config.problems().is_empty());
    }
}
