//! The command line: one naming scheme across binaries.

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::dev::DevArgs;
use crate::policies::PoliciesCommand;
use crate::registries::{RegistriesCommand, RepositoriesCommand};
use crate::scrub::ScrubCommand;

#[derive(Debug, Parser)]
#[command(name = "regsweep", version, about = "Admin client for regsweep")]
pub struct Cli {
    /// Scheduler gRPC URL.
    #[arg(
        long,
        global = true,
        env = "REGSWEEP_SCHEDULER",
        default_value = "http://127.0.0.1:7070"
    )]
    pub scheduler: String,

    /// Scrubber gRPC URL.
    #[arg(long, global = true, env = "REGSWEEP_SCRUBBER", default_value = "http://127.0.0.1:7071")]
    pub scrubber: String,

    /// PEM CA bundle that `https://` services' certificates must chain to
    /// (default: the system's roots).
    #[arg(long, global = true, env = "REGSWEEP_TLS_CA")]
    pub tls_ca: Option<std::path::PathBuf>,

    /// PEM client certificate, for services that require mutual TLS.
    #[arg(long, global = true, env = "REGSWEEP_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,

    /// PEM private key of `--tls-cert`.
    #[arg(long, global = true, env = "REGSWEEP_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,

    /// Bearer token for services that require one. Prefer `--token-file`
    /// or the variable: arguments show in `ps`.
    #[arg(long, global = true, env = "REGSWEEP_TOKEN", hide_env_values = true)]
    pub token: Option<regsweep_common::auth::Token>,

    /// File holding the bearer token.
    #[arg(long, global = true, env = "REGSWEEP_TOKEN_FILE", conflicts_with = "token")]
    pub token_file: Option<std::path::PathBuf>,

    /// Output format: tables for people, JSON (proto field names) for scripts.
    #[arg(long, global = true, env = "REGSWEEP_OUTPUT", value_enum, default_value_t = Output::Table)]
    pub output: Output,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, inspect, cancel and delete jobs.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Inspect workers and change their capacity.
    #[command(subcommand)]
    Workers(WorkersCommand),
    /// Periodic jobs.
    #[command(subcommand)]
    Crons(CronsCommand),
    /// Registries regsweep cleans.
    #[command(subcommand)]
    Registries(RegistriesCommand),
    /// Repositories of the registries and their cleanup state.
    #[command(subcommand)]
    Repositories(RepositoriesCommand),
    /// Cleanup policies.
    #[command(subcommand)]
    Policies(PoliciesCommand),
    /// Make the scheduler's registries and policies what a file declares
    /// (see `export` for the format); idempotent, and a file with any
    /// problem changes nothing.
    Apply(crate::apply::ApplyArgs),
    /// Write the registries and policies as a file `apply` reads.
    Export(crate::apply::ExportArgs),
    /// Pending and finished deletions of the scrubber.
    #[command(subcommand)]
    Scrub(ScrubCommand),
    /// Bearer tokens for the services' tokens files.
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// Run the scheduler, a worker and the scrubber in this process, on
    /// SQLite files in a data directory (no database server needed).
    Dev(DevArgs),
    /// Serve the web console: a client of `--scheduler` and `--scrubber`
    /// where people sign in with their own regsweep token.
    Console(crate::console::ConsoleArgs),
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Enqueue a job.
    Create(CreateJob),
    /// Show one job.
    Get {
        /// Job id.
        id: i64,
    },
    /// List jobs, newest first.
    List(ListJobs),
    /// Cancel a job (a running one is stopped by its worker).
    Cancel {
        /// Job id.
        id: i64,
        /// Why; recorded on the job.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Delete a job that is not running, with its logs.
    Delete {
        /// Job id.
        id: i64,
    },
    /// Print a job's log.
    Logs {
        /// Job id.
        id: i64,
        /// Only this attempt.
        #[arg(long)]
        attempt: Option<u32>,
        /// Keep printing new lines until the job ends.
        #[arg(long, short)]
        follow: bool,
    },
}

#[derive(Debug, Args)]
pub struct CreateJob {
    /// Job kind, e.g. sleep, false.
    #[arg(long)]
    pub kind: String,
    /// Arguments as a JSON object, e.g. '{"seconds": 5}'.
    #[arg(long, default_value = "{}")]
    pub args: String,
    /// Priority between -1000 and 1000; higher runs first.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub priority: i32,
    /// Earliest start: RFC 3339 time, or a delay from now such as 10m.
    #[arg(long)]
    pub scheduled_at: Option<String>,
    /// Attempts allowed (default 3).
    #[arg(long)]
    pub max_attempts: Option<u32>,
    /// Deduplication key: no second non-terminal job with it is created.
    #[arg(long, conflicts_with = "count")]
    pub unique_key: Option<String>,
    /// Create this many identical jobs, in batches of 1000 (CreateJobs).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub count: u32,
}

#[derive(Debug, Args)]
pub struct ListJobs {
    /// Only these statuses (repeatable): waiting, running, done, error, ...
    #[arg(long = "status", value_delimiter = ',')]
    pub statuses: Vec<String>,
    /// Only this kind.
    #[arg(long)]
    pub kind: Option<String>,
    /// Only jobs run by this worker id.
    #[arg(long)]
    pub worker: Option<String>,
    /// Most jobs to print; follows pages until reached.
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
}

#[derive(Debug, Subcommand)]
pub enum WorkersCommand {
    /// List workers and what they run.
    List {
        /// Include dead and offline workers.
        #[arg(long)]
        all: bool,
    },
    /// Change a live worker's capacity; running jobs are never preempted.
    Capacity {
        /// Worker id (see `workers list`).
        worker: String,
        /// New capacity as KIND=N, one or more.
        #[arg(required = true, value_parser = parse_capacity)]
        capacity: Vec<(String, u32)>,
    },
}

fn parse_capacity(text: &str) -> Result<(String, u32), String> {
    let (kind, n) = text.split_once('=').ok_or_else(|| format!("expected KIND=N, got {text:?}"))?;
    let n = n
        .parse()
        .map_err(|_| format!("capacity of {kind} must be a non-negative integer, got {n:?}"))?;
    Ok((kind.to_string(), n))
}

#[derive(Debug, Subcommand)]
pub enum CronsCommand {
    /// Add a cron.
    Create(CronArgs),
    /// Show one cron.
    Get {
        /// Cron name.
        name: String,
    },
    /// List crons.
    List,
    /// Change a cron: only the flags given change.
    Update(CronUpdateArgs),
    /// Remove a cron (the jobs it created stay).
    Delete {
        /// Cron name.
        name: String,
    },
}

#[derive(Debug, Args)]
pub struct CronArgs {
    /// Unique name.
    #[arg(long)]
    pub name: String,
    /// Cron expression in UTC: 5 fields, or 6 with seconds first.
    #[arg(long)]
    pub schedule: String,
    /// Kind of the jobs it creates.
    #[arg(long)]
    pub kind: String,
    /// Arguments of the jobs, as a JSON object.
    #[arg(long, default_value = "{}")]
    pub args: String,
    /// Priority of the jobs.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub priority: i32,
    /// Create it disabled.
    #[arg(long)]
    pub disabled: bool,
}

#[derive(Debug, Args)]
pub struct CronUpdateArgs {
    /// Cron name.
    #[arg(long)]
    pub name: String,
    #[arg(long)]
    pub schedule: Option<String>,
    #[arg(long)]
    pub kind: Option<String>,
    #[arg(long)]
    pub args: Option<String>,
    #[arg(long, allow_negative_numbers = true)]
    pub priority: Option<i32>,
    /// Disable (true) or enable (false) it.
    #[arg(long)]
    pub disabled: Option<bool>,
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Make a new random token; prints it once, and the line for the
    /// tokens file (which holds only its hash).
    Create {
        /// Name shown in logs and used for rate limits.
        #[arg(long)]
        name: String,
        /// Comma-separated roles: read, admin, worker, scrubber-client, in-use.
        #[arg(long)]
        roles: String,
    },
    /// Reads a token on stdin and prints its `sha256:` hash.
    Hash,
}
