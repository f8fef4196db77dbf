//! `catalog_sync`: reads a registry's catalog page by page and reports
//! each page to the scheduler, fenced by this attempt.

use regsweep_proto::v1;
use regsweep_registry::Client;
use serde::Deserialize;

use crate::job::{JobContext, Outcome};
use crate::services::ServiceError;

/// Repositories asked for per catalog page (and reported per call).
const PAGE: u32 = 1000;
/// Probed when the catalog is empty (any name does: the probes change
/// nothing, and a repository that does not exist answers the same).
const PROBE_REPOSITORY: &str = "regsweep-probe";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    registry: String,
}

fn failed(e: &ServiceError) -> Outcome {
    Outcome::Failed { error: e.to_string(), retryable: e.is_retryable() }
}

pub async fn run(ctx: JobContext, args: serde_json::Value) -> Outcome {
    let args: Args = match super::parse_args(args) {
        Ok(args) => args,
        Err(outcome) => return outcome,
    };
    let client = match ctx.services().registry_client(&args.registry).await {
        Ok(client) => client,
        Err(e) => return failed(&e),
    };
    ctx.log(format!("reading the catalog of {} at {}", args.registry, client.base_url()));
    let mut cursor: Option<String> = None;
    let (mut seen, mut added, mut removed) = (0_u64, 0_u64, 0_u64);
    loop {
        let page = tokio::select! {
            page = client.catalog_page(PAGE, cursor.as_deref()) => page,
            () = ctx.cancelled() => return Outcome::Cancelled,
        };
        let (names, next) = match page {
            Ok(page) => page,
            Err(e) => return failed(&ServiceError::Registry(e)),
        };
        // With the first page: what the registry allows, probed in its
        // first repository.
        let capabilities = match cursor {
            None => Some(probe(&ctx, &client, names.first()).await),
            Some(_) => None,
        };
        seen += names.len() as u64;
        let report = v1::ReportRepositoriesRequest {
            job_id: ctx.job_id(),
            attempt: ctx.attempt(),
            names,
            complete: next.is_none(),
            capabilities,
        };
        let (new, gone) = match report_page(&ctx, report).await {
            Ok(counts) => counts,
            Err(outcome) => return outcome,
        };
        (added, removed) = (added + new, removed + gone);
        match next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    ctx.log(format!("{seen} repositories: {added} new, {removed} removed"));
    Outcome::Done(serde_json::json!({
        "registry": args.registry,
        "repositories": seen,
        "added": added,
        "removed": removed,
    }))
}

/// What the registry allows, probed in `first` (the catalog's first
/// repository) or a made-up one when the catalog is empty.
async fn probe(
    ctx: &JobContext,
    client: &Client,
    first: Option<&String>,
) -> v1::RegistryCapabilities {
    let repository = first.map_or(PROBE_REPOSITORY, String::as_str);
    let found = client.capabilities(repository).await;
    let detail =
        if found.detail.is_empty() { String::new() } else { format!(" ({})", found.detail) };
    ctx.log(format!(
        "{repository}: manifest deletes {:?}, tag deletes {:?}, referrers {:?}{detail}",
        found.manifest_deletes, found.tag_deletes, found.referrers,
    ));
    (&found).into()
}

/// Reports one page of names; the repositories it added and removed, or
/// how the run ends when the scheduler refused it.
async fn report_page(
    ctx: &JobContext,
    report: v1::ReportRepositoriesRequest,
) -> Result<(u64, u64), Outcome> {
    match ctx.services().repositories().report_repositories(report).await {
        Ok(response) => {
            let response = response.into_inner();
            Ok((u64::from(response.added), u64::from(response.removed)))
        }
        // This attempt is no longer the job's: whatever it reports is
        // refused, so stop.
        Err(status) if status.code() == tonic::Code::FailedPrecondition => {
            ctx.log(format!("stopping: {}", status.message()));
            Err(Outcome::Cancelled)
        }
        Err(status) => Err(Outcome::Failed {
            error: format!("reporting repositories: {}", status.message()),
            retryable: true,
        }),
    }
}
