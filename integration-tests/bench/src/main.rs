//! `regsweep-bench`: benchmark programs. Each prints its figures next to a
//! reference measured in the same run on the same machine (the machine's
//! speed drifts; only shares of a same-run reference are comparable).

mod console;
mod cpu;
mod create;
mod graph;
mod outage;
mod precedence;
mod previews;
mod queue;
mod reclaim;
mod rules;
mod scrub;
mod selection;
mod stats;
mod stores;
mod tags;
mod takeover;
mod telemetry;
mod tls;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "regsweep-bench", about = "regsweep benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Job queue throughput and latency through scheduler and workers over
    /// gRPC, next to the raw batched claim+complete ceiling of the same
    /// PostgreSQL.
    Queue(queue::Args),
    /// Jobs created per second one rpc per job and in CreateJobs batches,
    /// next to one INSERT of the same rows.
    Create(create::Args),
    /// Time from a worker's SIGKILL to its job's re-claim by another.
    Reclaim(reclaim::Args),
    /// Time from the database's return after an outage to the first
    /// claim, next to a new connection and one claim statement.
    Outage(outage::Args),
    /// Cleanup selection tick time at growing catalog sizes.
    Selection(selection::Args),
    /// Tags evaluated per second by tag_cleanup against the local registry.
    Tags(tags::Args),
    /// Tags per second by tag_cleanup over multi-arch, signed images,
    /// next to a bare client making the same requests.
    Graph(graph::Args),
    /// Planning time of a ten-rule policy over many tags, next to a
    /// one-rule policy on the same tags.
    Rules(rules::Args),
    /// The exact overlap check of policy priorities, next to assigning
    /// repositories by the same selectors.
    Precedence(precedence::Args),
    /// Deletes per second through the scrubber at several parallelisms.
    Scrub(scrub::Args),
    /// Time from a scrubber's SIGKILL to its deletions' takeover.
    Takeover(takeover::Args),
    /// The job queue on SQLite next to PostgreSQL, and `regsweep dev`'s
    /// start-up time.
    Stores(stores::Args),
    /// Queue throughput end to end with TLS and mutual TLS next to
    /// plaintext.
    Tls(tls::Args),
    /// Queue throughput end to end with metrics, traces, and both, next
    /// to neither.
    Telemetry(telemetry::Args),
    /// The console's pages over a million repositories, over HTTP and in
    /// headless Chromium, next to the gRPC call behind them.
    Console(console::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Queue(args) => queue::run(args).await,
        Command::Create(args) => create::run(args).await,
        Command::Reclaim(args) => reclaim::run(args).await,
        Command::Outage(args) => outage::run(args).await,
        Command::Selection(args) => selection::run(args).await,
        Command::Tags(args) => tags::run(args).await,
        Command::Graph(args) => graph::run(args).await,
        Command::Rules(args) => rules::run(args).await,
        Command::Precedence(args) => precedence::run(args).await,
        Command::Scrub(args) => scrub::run(args).await,
        Command::Takeover(args) => takeover::run(args).await,
        Command::Stores(args) => stores::run(args).await,
        Command::Tls(args) => tls::run(args).await,
        Command::Telemetry(args) => telemetry::run(args).await,
        Command::Console(args) => console::run(args).await,
    }
}
