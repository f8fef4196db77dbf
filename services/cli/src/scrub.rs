//! `regsweep scrub ...`: the scrubber's pending and finished deletions.

use anyhow::{Context, Result};
use clap::Subcommand;
use regsweep_common::grpc;
use regsweep_proto::v1::scrubber_service_client::ScrubberServiceClient;
use regsweep_proto::v1::{self, DeletionStatus};

use crate::cli::{Cli, Output};
use crate::client;
use crate::output::{self, Table, time};

#[derive(Debug, Subcommand)]
pub enum ScrubCommand {
    /// List deletions, newest first.
    List {
        /// Only this status: pending_delete, awaiting_approval, deleting,
        /// deleted, restored, failed, cancelled.
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
        /// Only those removing this tag.
        #[arg(long)]
        tag: Option<String>,
        /// Most deletions to print; follows pages until reached.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Restore pending or held deletions before they start.
    Restore {
        /// Deletion ids.
        #[arg(required = true)]
        ids: Vec<i64>,
    },
    /// Approve deletions held because their plan deletes more than its
    /// policy allows at once; they run when their delay ends.
    Approve {
        /// Deletion ids.
        #[arg(required_unless_present = "job")]
        ids: Vec<i64>,
        /// Every held deletion this job planned.
        #[arg(long, conflicts_with = "ids")]
        job: Option<i64>,
    },
    /// Who deleted a tag, when and why: every deletion that removed
    /// `REPOSITORY:TAG`, its policy, revision, rule, job and outcome, and
    /// each request sent to the registry for it with the answer.
    History {
        /// `REPOSITORY:TAG`, e.g. `team/app:v3`.
        reference: String,
        /// Only this registry's.
        #[arg(long)]
        registry: Option<String>,
    },
    /// Counts per status, parallelism and limits per registry.
    Status,
}

fn status_name(status: DeletionStatus) -> String {
    status.as_str_name().trim_start_matches("DELETION_STATUS_").to_ascii_lowercase()
}

/// What explains a deletion's state: its error, why it is held, or the
/// rule behind each tag.
fn why<'a>(d: &'a v1::Deletion, image: &v1::ImageDeletion) -> std::borrow::Cow<'a, str> {
    if !d.error.is_empty() {
        return d.error.as_str().into();
    }
    if !d.hold_reason.is_empty() {
        return d.hold_reason.as_str().into();
    }
    let rules: Vec<String> =
        image.reasons.iter().map(|r| format!("{}: {}", r.tag, r.rule)).collect();
    rules.join(", ").into()
}

/// Prints every deletion that removed `reference` (`REPOSITORY:TAG`) and
/// the requests sent for each.
async fn history(
    scrubber: &mut ScrubberServiceClient<grpc::Client>,
    format: Output,
    reference: &str,
    registry: Option<&str>,
) -> Result<()> {
    let (repository, tag) = reference
        .rsplit_once(':')
        .filter(|(repo, tag)| !repo.is_empty() && !tag.is_empty() && !tag.contains('/'))
        .with_context(|| format!("{reference:?} is not REPOSITORY:TAG"))?;
    let filter = v1::ListDeletionsRequest {
        registry: registry.unwrap_or_default().to_string(),
        repository: repository.to_string(),
        tag: tag.to_string(),
        ..Default::default()
    };
    let deletions = deletions_matching(scrubber, filter, None).await?;
    let mut requests = Vec::new();
    for chunk in deletions.chunks(1000) {
        let deletion_ids = chunk.iter().map(|d| d.id).collect();
        let request = v1::ListRegistryRequestsRequest { deletion_ids };
        requests.extend(scrubber.list_registry_requests(request).await?.into_inner().requests);
    }
    if format == Output::Json {
        return output::json(&serde_json::json!({ "deletions": deletions, "requests": requests }));
    }
    if deletions.is_empty() {
        println!("no deletion of {reference} on record");
    }
    for d in &deletions {
        let image = d.image.clone().unwrap_or_default();
        let rule = image.reasons.iter().find(|r| r.tag == tag).map_or("-", |r| r.rule.as_str());
        println!(
            "deletion {} of {}/{reference} ({}): {}",
            d.id,
            d.registry,
            output::short(&image.digest, 19),
            status_name(d.status())
        );
        let policy =
            if d.policy.is_empty() { "none (a cleanup created by hand)" } else { &d.policy };
        println!(
            "  policy {policy}, revision {}, rule {rule}; job {} attempt {}; submitted {}, due {}, ended {}",
            if d.policy_revision.is_empty() { "-" } else { &d.policy_revision },
            d.job_id,
            d.attempt,
            time(d.submitted_at.as_ref()),
            time(d.delete_after.as_ref()),
            time(d.finished_at.as_ref()),
        );
        for why in [&d.hold_reason, &d.error].into_iter().filter(|w| !w.is_empty()) {
            println!("  {why}");
        }
        for r in requests.iter().filter(|r| r.deletion_id == d.id) {
            let answer = match (r.answered, r.status) {
                (false, _) => "no answer recorded".to_string(),
                (true, 0) => "no answer".to_string(),
                (true, status) => status.to_string(),
            };
            println!("  {} {} {} -> {answer}", time(r.sent_at.as_ref()), r.method, r.path);
        }
    }
    Ok(())
}

/// Every deletion `filter` matches (at most `limit`), following pages.
async fn deletions_matching(
    scrubber: &ScrubberServiceClient<grpc::Client>,
    filter: v1::ListDeletionsRequest,
    limit: Option<usize>,
) -> Result<Vec<v1::Deletion>> {
    client::pages(limit, |page_size, page_token| {
        let mut scrubber = scrubber.clone();
        let request = v1::ListDeletionsRequest { page_size, page_token, ..filter.clone() };
        async move {
            let page = scrubber.list_deletions(request).await?.into_inner();
            Ok((page.deletions, page.next_page_token))
        }
    })
    .await
}

/// The ids of the deletions of `job_id` awaiting approval.
async fn held_of(
    scrubber: &mut ScrubberServiceClient<grpc::Client>,
    job_id: i64,
) -> Result<Vec<i64>> {
    let filter = v1::ListDeletionsRequest {
        status: DeletionStatus::AwaitingApproval.into(),
        job_id,
        ..Default::default()
    };
    let held = deletions_matching(scrubber, filter, None).await?;
    Ok(held.iter().map(|d| d.id).collect())
}

type Scrubber = ScrubberServiceClient<grpc::Client>;

pub async fn run(cli: &Cli, command: &ScrubCommand) -> Result<()> {
    let mut scrubber = client::scrubber(&cli.scrubber).await?;
    match command {
        ScrubCommand::History { reference, registry } => {
            history(&mut scrubber, cli.output, reference, registry.as_deref()).await
        }
        ScrubCommand::List { status, registry, repository, job, tag, limit } => {
            let status = match status {
                None => DeletionStatus::Unspecified,
                Some(s) => DeletionStatus::from_str_name(&format!(
                    "DELETION_STATUS_{}",
                    s.to_ascii_uppercase()
                ))
                .with_context(|| format!("unknown status {s:?}"))?,
            };
            let filter = v1::ListDeletionsRequest {
                status: status.into(),
                registry: registry.clone().unwrap_or_default(),
                repository: repository.clone().unwrap_or_default(),
                job_id: job.unwrap_or_default(),
                tag: tag.clone().unwrap_or_default(),
                ..Default::default()
            };
            list(&scrubber, cli.output, filter, *limit as usize).await
        }
        ScrubCommand::Restore { ids } => restore(&mut scrubber, cli.output, ids.clone()).await,
        ScrubCommand::Approve { ids, job } => {
            let ids = match job {
                None => ids.clone(),
                Some(job_id) => held_of(&mut scrubber, *job_id).await?,
            };
            approve(&mut scrubber, cli.output, &ids).await
        }
        ScrubCommand::Status => status(&mut scrubber, cli.output).await,
    }
}

/// `regsweep scrub list`: the deletions matching `filter`, newest first.
async fn list(
    scrubber: &Scrubber,
    format: Output,
    filter: v1::ListDeletionsRequest,
    limit: usize,
) -> Result<()> {
    let all = deletions_matching(scrubber, filter, Some(limit)).await?;
    if format == Output::Json {
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
        "POLICY",
        "WHY",
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
            if d.policy.is_empty() { "-".into() } else { d.policy.clone() },
            output::short(&why(d, &image), 60),
        ]);
    }
    table.print();
    Ok(())
}

/// `regsweep scrub restore`: one line per deletion, restored or why not.
async fn restore(scrubber: &mut Scrubber, format: Output, ids: Vec<i64>) -> Result<()> {
    let response =
        scrubber.restore_deletions(v1::RestoreDeletionsRequest { ids }).await?.into_inner();
    if format == Output::Json {
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

/// `regsweep scrub approve`: approves `ids` a thousand (the request's
/// limit) at a time; one line per deletion, approved or why not.
async fn approve(scrubber: &mut Scrubber, format: Output, ids: &[i64]) -> Result<()> {
    anyhow::ensure!(!ids.is_empty(), "no deletion of that job awaits approval");
    let mut outcomes = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(1000) {
        let request = v1::ApproveDeletionsRequest { ids: chunk.to_vec() };
        outcomes.extend(scrubber.approve_deletions(request).await?.into_inner().outcomes);
    }
    if format == Output::Json {
        return output::json(&outcomes);
    }
    for o in &outcomes {
        if o.approved {
            println!("deletion {} approved", o.id);
        } else {
            println!("deletion {} not approved: {}", o.id, o.reason);
        }
    }
    Ok(())
}

/// `regsweep scrub status`: deletions by status and each registry's limits.
async fn status(scrubber: &mut Scrubber, format: Output) -> Result<()> {
    let status = scrubber.get_scrubber_status(v1::GetScrubberStatusRequest {}).await?.into_inner();
    if format == Output::Json {
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
        let mut limits = Table::new(&["REGISTRY", "CONCURRENCY", "MAX", "IN FLIGHT", "RATE LIMIT"]);
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
