//! The job kinds this worker runs, one module each.

mod catalog_sync;
mod fail;
mod first_seen;
mod protection;
mod sleep;
mod tag_cleanup;

use crate::job::{JobContext, Outcome};

/// Every kind this worker can run.
pub const KINDS: &[&str] = &["sleep", "false", "catalog_sync", "tag_cleanup"];

/// Runs a job of `kind`; the scheduler only hands out kinds from Hello.
pub async fn run(kind: &str, ctx: JobContext, args: serde_json::Value) -> Outcome {
    match kind {
        "sleep" => sleep::run(ctx, args).await,
        "false" => fail::run(ctx, args).await,
        "catalog_sync" => catalog_sync::run(ctx, args).await,
        "tag_cleanup" => tag_cleanup::run(ctx, args).await,
        other => Outcome::Failed {
            error: format!("this worker cannot run kind {other:?}"),
            retryable: true,
        },
    }
}

/// Reads a kind's arguments; a mismatch is a non-retryable failure.
fn parse_args<T: serde::de::DeserializeOwned>(args: serde_json::Value) -> Result<T, Outcome> {
    serde_json::from_value(args)
        .map_err(|e| Outcome::Failed { error: format!("invalid arguments: {e}"), retryable: false })
}
