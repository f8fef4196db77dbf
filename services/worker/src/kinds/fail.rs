//! `false`: fails at once, with `message` if given; without retry unless
//! `retryable` is set. Docker Trusted Registry's test job for the error
//! path.

use serde::Deserialize;

use crate::job::{JobContext, Outcome};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    message: Option<String>,
    /// Fail as retryable, to exercise retries and backoff.
    #[serde(default)]
    retryable: bool,
}

pub async fn run(ctx: JobContext, args: serde_json::Value) -> Outcome {
    let args: Args = match super::parse_args(args) {
        Ok(args) => args,
        Err(outcome) => return outcome,
    };
    let error = args.message.unwrap_or_else(|| "false: failed as asked".to_string());
    ctx.log(format!("failing: {error}"));
    Outcome::Failed { error, retryable: args.retryable }
}
