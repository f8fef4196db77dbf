//! `regsweep scrub ...`: the scrubber's pending and finished deletions.

use anyhow::{Context, Result};
use clap::Subcommand;
use regsweep_proto::v1::{self, DeletionStatus};

use crate::cli::{Cli, Output};
use crate::client;
use crate::output::{self, Table, time};

#[derive(Debug, Subcommand)]
pub enum ScrubCommand {
    /// List deletions, newest first.
    List {
        /// Only this status: pending_delete, deleting, deleted, restored, failed.
        #[arg(long)]
        status: Option<String>,
        /// Only this registry's.
        #[arg(long)]
        registry: Option<String>,
        /// Only this repository's.
        #[arg(long)]
        repository: Option<String>,
        /// Only those a job planned.
        #[arg(long)]
        job: Option<i64>,
        /// Most deletions to print; follows pages until reached.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Restore pending deletions before they start.
    Restore {
        /// Deletion ids.
        #[arg(required = true)]
        ids: Vec<i64>,
    },
    /// Counts per status, parallelism and limits per registry.
    Status,
}

fn status_name(status: DeletionStatus) -> String {
    status.as_str_name().trim_start_matches("DELETION_STATUS_").to_ascii_lowercase()
}

pub async fn run(cli: &Cli, command: &ScrubCommand) -> Result<()> {
    let mut scrubber = client::scrubber(&cli.scrubber).await?;
    match command {
        ScrubCommand::List { status, registry, repository, job, limit } => {
            let status = match status {
                None => DeletionStatus::Unspecified,
                Some(s) => DeletionStatus::from_str_name(&format!(
                    "DELETION_STATUS_{}",
                    s.to_ascii_uppercase()
                ))
                .with_context(|| format!("unknown status {s:?}"))?,
            };
            let all = client::pages(Some(*limit as usize), |page_size, page_token| {
                let mut scrubber = scrubber.clone();
                let request = v1::ListDeletionsRequest {
                    status: status.into(),
                    registry: registry.clone().unwrap_or_default(),
                    repository: repository.clone().unwrap_or_default(),
                    job_id: job.unwrap_or_default(),
                    page_size,
                    page_token,
                };
                async move {
                    let page = scrubber.list_deletions(request).await?.into_inner();
                    Ok((page.deletions, page.next_page_token))
                }
            })
            .await?;
            if cli.output == Output::Json {
                return output::json(&all);
            }
            let mut table = Table::new(&[
                "ID",
                "STATUS",
                "REGISTRY",
                "REPOSITORY",
                "DIGEST",
                "TAGS",
                "DELETE AFTER",
                "JOB",
                "ERROR",
            ]);
            for d in &all {
                let image = d.image.clone().unwrap_or_default();
                table.row(vec![
                    d.id.to_string(),
                    status_name(d.status()),
                    d.registry.clone(),
                    d.repository.clone(),
                    output::short(&image.digest, 19),
                    image.tags.join(","),
                    time(d.delete_after.as_ref()),
                    d.job_id.to_string(),
                    output::short(&d.error, 60),
                ]);
            }
            table.print();
            Ok(())
        }
        ScrubCommand::Restore { ids } => {
            let response = scrubber
                .restore_deletions(v1::RestoreDeletionsRequest { ids: ids.clone() })
                .await?
                .into_inner();
            if cli.output == Output::Json {
                return output::json(&response.outcomes);
            }
            for o in &response.outcomes {
                if o.restored {
                    println!("deletion {} restored", o.id);
                } else {
                    println!("deletion {} not restored: {}", o.id, o.reason);
                }
            }
            Ok(())
        }
        ScrubCommand::Status => {
            let status =
                scrubber.get_scrubber_status(v1::GetScrubberStatusRequest {}).await?.into_inner();
            if cli.output == Output::Json {
                return output::json(&status);
            }
            let mut counts = Table::new(&["STATUS", "COUNT"]);
            for c in &status.counts {
                counts.row(vec![status_name(c.status()), c.count.to_string()]);
            }
            counts.print();
            println!(
                "parallelism {}, oldest due pending {:.0}s",
                status.parallelism, status.oldest_due_pending_seconds
            );
            if !status.registries.is_empty() {
                let mut limits =
                    Table::new(&["REGISTRY", "CONCURRENCY", "MAX", "IN FLIGHT", "RATE LIMIT"]);
                for r in &status.registries {
                    limits.row(vec![
                        r.registry.clone(),
                        r.concurrency.to_string(),
                        r.max_concurrency.to_string(),
                        r.in_flight.to_string(),
                        if r.rate_limit > 0.0 { format!("{}/s", r.rate_limit) } else { "-".into() },
                    ]);
                }
                limits.print();
            }
            Ok(())
        }
    }
}
