//! `catalog_sync`: reads a registry's catalog page by page and reports
//! each page to the scheduler, fenced by this attempt.

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
        let capabilities = if cursor.is_none() {
            let repository = names.first().map_or(PROBE_REPOSITORY, String::as_str);
            let found = client.capabilities(repository).await;
            ctx.log(format!(
                "{repository}: manifest deletes {:?}, tag deletes {:?}, referrers {:?}{}",
                found.manifest_deletes,
                found.tag_deletes,
                found.referrers,
                if found.detail.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", found.detail)
                }
            ));
            Some((&found).into())
        } else {
            None
        };
        seen += names.len() as u64;
        let report = regsweep_proto::v1::ReportRepositoriesRequest {
            job_id: ctx.job_id(),
            attempt: ctx.attempt(),
            names,
            complete: next.is_none(),
            capabilities,
        };
        match ctx.services().repositories().report_repositories(report).await {
            Ok(response) => {
                let response = response.into_inner();
                added += u64::from(response.added);
                removed += u64::from(response.removed);
            }
            // This attempt is no longer the job's: whatever it reports is
            // refused, so stop.
            Err(status) if status.code() == tonic::Code::FailedPrecondition => {
                ctx.log(format!("stopping: {}", status.message()));
                return Outcome::Cancelled;
            }
            Err(status) => {
                return Outcome::Failed {
                    error: format!("reporting repositories: {}", status.message()),
                    retryable: true,
                };
            }
        }
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
