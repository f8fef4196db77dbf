//! Worker configuration: every flag has a `REGSWEEP_*` env fallback.

use std::collections::BTreeMap;
use std::time::Duration;

use regsweep_common::auth::ClientAuthArgs;
use regsweep_common::duration;
use regsweep_common::prometheus::MetricsArgs;
use regsweep_common::telemetry::LogFormat;
use regsweep_common::tls::{ClientTlsArgs, TlsIdentityArgs};

use crate::kinds;

/// `regsweep-worker`: runs jobs handed out by a scheduler.
#[derive(Clone, Debug, clap::Parser)]
#[command(name = "regsweep-worker", version, about)]
pub struct Config {
    /// Scheduler gRPC URL. Several (comma separated) are tried in turn
    /// when a stream breaks, for replicas without a load balancer.
    #[arg(
        long,
        env = "REGSWEEP_SCHEDULER",
        default_value = "http://127.0.0.1:7070",
        value_delimiter = ','
    )]
    pub scheduler: Vec<String>,

    /// Scrubber gRPC URL(s), where `tag_cleanup` submits its plans. Without
    /// one, cleanups that are not dry runs fail (nothing is deleted).
    #[arg(long, env = "REGSWEEP_SCRUBBER", value_delimiter = ',')]
    pub scrubber: Vec<String>,

    /// Presented to servers that ask for a client certificate.
    #[command(flatten)]
    pub tls: TlsIdentityArgs,

    #[command(flatten)]
    pub tls_client: ClientTlsArgs,

    #[command(flatten)]
    pub auth: ClientAuthArgs,

    /// Jobs of a kind run at once, as KIND=N (repeatable, or comma
    /// separated in the env variable). Kinds not listed get the default.
    #[arg(long = "capacity", env = "REGSWEEP_CAPACITY", value_parser = parse_capacity, value_delimiter = ',')]
    pub capacity: Vec<(String, u32)>,

    /// Capacity of every kind not given with --capacity.
    #[arg(long, env = "REGSWEEP_DEFAULT_CAPACITY", default_value_t = 4)]
    pub default_capacity: u32,

    /// Name shown in `workers list` (default: the host name).
    #[arg(long, env = "REGSWEEP_WORKER_NAME")]
    pub name: Option<String>,

    /// Log line format on stderr.
    #[arg(long, env = "REGSWEEP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    #[command(flatten)]
    pub metrics: MetricsArgs,

    /// On SIGTERM, how long running jobs get to finish before they are
    /// given back to the scheduler (`worker_shutdown`).
    #[arg(long, env = "REGSWEEP_SHUTDOWN_GRACE", value_parser = duration::parse, default_value = "30s")]
    pub shutdown_grace: Duration,

    /// Log lines of running jobs kept while no scheduler is reachable;
    /// past it the oldest go, and each job's log says how many.
    #[arg(long, env = "REGSWEEP_MAX_BUFFERED_LOG_LINES", default_value_t = crate::outbox::DEFAULT_MAX_LINES)]
    pub max_buffered_log_lines: usize,

    /// Longest wait between reconnection attempts.
    #[arg(long, env = "REGSWEEP_RECONNECT_MAX_BACKOFF", value_parser = duration::parse, default_value = "10s")]
    pub reconnect_max_backoff: Duration,
}

impl Config {
    /// The defaults, against `scheduler`.
    pub fn new(scheduler: impl Into<String>) -> Self {
        Self {
            scheduler: vec![scheduler.into()],
            scrubber: Vec::new(),
            tls: TlsIdentityArgs::default(),
            tls_client: ClientTlsArgs::default(),
            auth: ClientAuthArgs::default(),
            capacity: Vec::new(),
            default_capacity: 4,
            name: None,
            log_format: LogFormat::Text,
            metrics: MetricsArgs::default(),
            shutdown_grace: Duration::from_secs(30),
            max_buffered_log_lines: crate::outbox::DEFAULT_MAX_LINES,
            reconnect_max_backoff: Duration::from_secs(10),
        }
    }

    /// Capacity per kind: every kind this worker runs, with the default
    /// unless given. Unknown kinds are an error.
    pub fn capacity_map(&self) -> Result<BTreeMap<String, u32>, String> {
        let mut map: BTreeMap<String, u32> =
            kinds::KINDS.iter().map(|k| (k.to_string(), self.default_capacity)).collect();
        for (kind, n) in &self.capacity {
            if !kinds::KINDS.contains(&kind.as_str()) {
                return Err(format!(
                    "--capacity {kind}={n}: unknown kind; this worker runs {}",
                    kinds::KINDS.join(", ")
                ));
            }
            map.insert(kind.clone(), *n);
        }
        Ok(map)
    }

    /// The configured name, else the host name.
    pub fn worker_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "regsweep-worker".to_string())
        })
    }
}

fn parse_capacity(text: &str) -> Result<(String, u32), String> {
    let (kind, n) = text.split_once('=').ok_or_else(|| format!("expected KIND=N, got {text:?}"))?;
    let n = n
        .trim()
        .parse::<u32>()
        .map_err(|_| format!("capacity of {kind} must be a non-negative integer, got {n:?}"))?;
    Ok((kind.trim().to_string(), n))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn capacity_flags() {
        let config = Config::parse_from(["w", "--capacity", "sleep=2", "--capacity", "false=0"]);
        let map = config.capacity_map().expect("valid");
        assert_eq!(map.get("sleep"), Some(&2));
        assert_eq!(map.get("false"), Some(&0));
        assert!(Config::try_parse_from(["w", "--capacity", "sleep=-1"]).is_err());
        assert!(Config::try_parse_from(["w", "--capacity", "sleep"]).is_err());
        let unknown = Config::parse_from(["w", "--capacity", "nope=1"]);
        assert!(unknown.capacity_map().is_err());
    }
}
