//! `sleep`: waits `seconds`, reporting progress; honours cancel at once.
//! Docker Trusted Registry's test job, used to exercise the queue.

use std::time::Duration;

use serde::Deserialize;

use crate::job::{JobContext, Outcome};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    seconds: f64,
}

pub async fn run(ctx: JobContext, args: serde_json::Value) -> Outcome {
    let args: Args = match super::parse_args(args) {
        Ok(args) => args,
        Err(outcome) => return outcome,
    };
    let Ok(total) = Duration::try_from_secs_f64(args.seconds) else {
        return Outcome::Failed {
            error: format!("invalid seconds {}", args.seconds),
            retryable: false,
        };
    };
    if !total.is_zero() {
        ctx.log(format!("sleeping for {total:?}"));
    }
    let started = tokio::time::Instant::now();
    let deadline = started + total;
    let mut ticker = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => break,
            () = ctx.cancelled() => {
                ctx.log(format!("cancelled after {:?}", started.elapsed()));
                return Outcome::Cancelled;
            }
            _ = ticker.tick() => {
                ctx.set_progress(started.elapsed().as_secs_f32() / total.as_secs_f32().max(f32::MIN_POSITIVE));
            }
        }
    }
    if !total.is_zero() {
        ctx.log(format!("slept for {total:?}"));
    }
    Outcome::Done(serde_json::json!({"slept_seconds": args.seconds}))
}
