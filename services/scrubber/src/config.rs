//! Scrubber configuration: every flag has a `REGSWEEP_*` env fallback.

use std::time::Duration;

use regsweep_common::auth::{ClientAuthArgs, ServerAuthArgs};
use regsweep_common::duration;
use regsweep_common::grpc::HealthArgs;
use regsweep_common::prometheus::MetricsArgs;
use regsweep_common::telemetry::LogFormat;
use regsweep_common::tls::{ClientTlsArgs, ServerTlsArgs, TlsIdentityArgs};

/// `regsweep-scrubber`: deletes planned images after their delay, in
/// parallel, within each registry's rate limits.
#[derive(Clone, Debug, clap::Parser)]
#[command(name = "regsweep-scrubber", version, about)]
pub struct Config {
    /// gRPC listen address.
    #[arg(long, env = "REGSWEEP_SCRUBBER_LISTEN", default_value = "127.0.0.1:7071")]
    pub listen: String,

    /// Presented as a server, and to the scheduler when it asks.
    #[command(flatten)]
    pub tls: TlsIdentityArgs,

    #[command(flatten)]
    pub tls_server: ServerTlsArgs,

    #[command(flatten)]
    pub tls_client: ClientTlsArgs,

    #[command(flatten)]
    pub auth: ServerAuthArgs,

    #[command(flatten)]
    pub health: HealthArgs,

    /// The token presented to the scheduler (a `worker` role).
    #[command(flatten)]
    pub client_auth: ClientAuthArgs,

    /// Database: `postgres://user@host/db` (the `scrubber` schema in it), or
    /// `sqlite://PATH` for one process on one machine.
    #[arg(long, env = "REGSWEEP_DATABASE_URL")]
    pub database_url: String,

    /// Scheduler gRPC URL(s), where registry definitions are read.
    #[arg(
        long,
        env = "REGSWEEP_SCHEDULER",
        default_value = "http://127.0.0.1:7070",
        value_delimiter = ','
    )]
    pub scheduler: Vec<String>,

    /// How long a submitted deletion waits (and can be restored) before it
    /// is scrubbed; 0s scrubs at once.
    #[arg(long, env = "REGSWEEP_DELAY", value_parser = duration::parse, default_value = "1h")]
    pub delay: Duration,

    /// Images scrubbed at once by this replica (1: strictly serial).
    #[arg(long, env = "REGSWEEP_PARALLELISM", default_value_t = 4)]
    pub parallelism: u32,

    /// Images in flight per registry when its definition sets no
    /// `max_parallel_deletions`.
    #[arg(long, env = "REGSWEEP_DEFAULT_MAX_PARALLEL", default_value_t = 8)]
    pub default_max_parallel: u32,

    /// Attempts of a deletion before it ends `failed`.
    #[arg(long, env = "REGSWEEP_MAX_ATTEMPTS", default_value_t = 5)]
    pub max_attempts: u32,

    /// How long a claim holds; renewed every third of it while scrubbing.
    #[arg(long, env = "REGSWEEP_LEASE", value_parser = duration::parse, default_value = "30s")]
    pub lease: Duration,

    /// How long a repository's tag -> digest snapshot is trusted when
    /// checking that no unplanned tag points at a digest about to be
    /// deleted. Shorter is safer against concurrent re-tagging and costs a
    /// resolve of every tag of the repository per period.
    #[arg(long, env = "REGSWEEP_TAG_SNAPSHOT_TTL", value_parser = duration::parse, default_value = "2s")]
    pub tag_snapshot_ttl: Duration,

    /// Entries of the audit record (every destructive request sent to a
    /// registry) older than this are forgotten; the default matches the
    /// scheduler's job retention.
    #[arg(long, env = "REGSWEEP_AUDIT_RETENTION", value_parser = duration::parse, default_value = "14d")]
    pub audit_retention: Duration,

    /// How often to look for due deletions when there were none.
    #[arg(long, env = "REGSWEEP_POLL_INTERVAL", value_parser = duration::parse, default_value = "1s")]
    pub poll_interval: Duration,

    /// Maximum database connections.
    #[arg(long, env = "REGSWEEP_DB_MAX_CONNECTIONS", default_value_t = 8)]
    pub db_max_connections: u32,

    /// Log line format on stderr.
    #[arg(long, env = "REGSWEEP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    #[command(flatten)]
    pub metrics: MetricsArgs,

    /// How often the gauges read from the store (deletions by status) and
    /// the registry limits are refreshed; only with `--metrics-addr`.
    #[arg(long, env = "REGSWEEP_METRICS_INTERVAL", value_parser = duration::parse, default_value = "15s")]
    pub metrics_interval: Duration,

    /// Apply the schema migrations and exit (a deploy's migration step).
    #[arg(long, env = "REGSWEEP_MIGRATE_ONLY")]
    pub migrate_only: bool,

    /// How long in-flight work gets to finish after SIGTERM.
    #[arg(long, env = "REGSWEEP_SHUTDOWN_TIMEOUT", value_parser = duration::parse, default_value = "10s")]
    pub shutdown_timeout: Duration,
}

impl Config {
    /// The defaults (as the flags have them), on `database_url`, reading
    /// registries from `scheduler`: for `regsweep dev` and tests, which
    /// must not pick up `REGSWEEP_*` variables meant for other processes.
    pub fn new(database_url: impl Into<String>, scheduler: impl Into<String>) -> Self {
        Self {
            listen: "127.0.0.1:7071".into(),
            tls: TlsIdentityArgs::default(),
            tls_server: ServerTlsArgs::default(),
            tls_client: ClientTlsArgs::default(),
            auth: ServerAuthArgs::default(),
            health: HealthArgs::default(),
            client_auth: ClientAuthArgs::default(),
            database_url: database_url.into(),
            scheduler: vec![scheduler.into()],
            delay: Duration::from_secs(3600),
            parallelism: 4,
            default_max_parallel: 8,
            max_attempts: 5,
            lease: Duration::from_secs(30),
            tag_snapshot_ttl: Duration::from_secs(2),
            audit_retention: Duration::from_secs(14 * 86_400),
            poll_interval: Duration::from_secs(1),
            db_max_connections: 8,
            log_format: LogFormat::Text,
            metrics: MetricsArgs::default(),
            metrics_interval: Duration::from_secs(15),
            migrate_only: false,
            shutdown_timeout: Duration::from_secs(10),
        }
    }

    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.metrics_interval.is_zero() {
            problems.push("--metrics-interval must be positive".to_string());
        }
        if !(1..=1024).contains(&self.parallelism) {
            problems.push("--parallelism must be from 1 to 1024".to_string());
        }
        if !(1..=1024).contains(&self.default_max_parallel) {
            problems.push("--default-max-parallel must be from 1 to 1024".to_string());
        }
        if self.max_attempts == 0 {
            problems.push("--max-attempts must be at least 1".to_string());
        }
        if self.lease < Duration::from_secs(1) {
            problems.push("--lease must be at least 1s".to_string());
        }
        if self.poll_interval.is_zero() {
            problems.push("--poll-interval must be positive".to_string());
        }
        if self.delay > Duration::from_secs(365 * 86_400) {
            problems.push("--delay must be at most 365d".to_string());
        }
        if self.scheduler.is_empty() {
            problems.push("--scheduler needs at least one URL".to_string());
        }
        if self.db_max_connections < 2 {
            problems.push("--db-max-connections must be at least 2".to_string());
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[test]
    fn new_has_the_defaults_of_the_flags() {
        let parsed = Config::try_parse_from([
            "regsweep-scrubber",
            "--database-url",
            "sqlite://x.db",
            "--scheduler",
            "http://s:7070",
        ])
        .expect("parses");
        let built = Config::new("sqlite://x.db", "http://s:7070");
        assert_eq!(format!("{built:?}"), format!("{parsed:?}"));
    }
}
