//! Conditional writes (AIP-154). An update is made from the version the
//! API read, and the store makes it only if that version is still there,
//! inside the statement; a caller that read the resource earlier gives its
//! etag, which must name that same version. Either way, a write nobody
//! saw is never overwritten: the answer is `ABORTED`, read again and retry.

use std::future::Future;

use chrono::{DateTime, Utc};

use crate::error::ApiError;
use crate::store::catalog::etag;

/// Refuses an update whose caller read another version than `current`.
pub fn check(kind: &str, name: &str, given: &str, current: DateTime<Utc>) -> Result<(), ApiError> {
    if given.is_empty() || given == etag(current) { Ok(()) } else { Err(changed(kind, name)) }
}

/// The answer to an update that lost to a write made since its read.
pub fn changed(kind: &str, name: &str) -> ApiError {
    ApiError::Aborted(format!(
        "{kind} {name:?} was changed since it was read; read it again and retry"
    ))
}

/// Tries of a read-modify-write whose caller gave no etag. It asked for no
/// condition, so losing to a write made between this call's own read and
/// its write is retried from a fresh read, not answered `ABORTED`.
const UNCONDITIONAL_TRIES: usize = 3;

/// Runs `attempt` (read, merge, conditional write; `None` when the write
/// lost to another) once when the caller gave an etag, else until it is
/// written or the tries run out.
pub async fn retried<T, F, Fut>(given: &str, mut attempt: F) -> Result<Option<T>, ApiError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, ApiError>>,
{
    let tries = if given.is_empty() { UNCONDITIONAL_TRIES } else { 1 };
    for _ in 1..tries {
        if let Some(written) = attempt().await? {
            return Ok(Some(written));
        }
    }
    attempt().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_etag_of_the_version_read_passes() {
        let read = DateTime::from_timestamp_micros(1_733_300_000_123_456).expect("time");
        let later = DateTime::from_timestamp_micros(1_733_300_000_123_457).expect("time");
        assert!(check("policy", "p", "", read).is_ok(), "no etag: no condition");
        assert!(check("policy", "p", &etag(read), read).is_ok());
        let refused = check("policy", "p", &etag(read), later).expect_err("stale");
        assert!(matches!(refused, ApiError::Aborted(_)), "{refused:?}");
        assert!(check("policy", "p", "garbage", read).is_err());
    }

    /// Losing twice in a row to other writes: a caller without an etag
    /// gets its write made from a fresh read; one with an etag gets the
    /// loss at once.
    #[tokio::test]
    async fn only_writes_without_an_etag_are_tried_again() {
        let run = |given: &'static str| async move {
            let mut lost = 0;
            let written = retried(given, || {
                lost += 1;
                let made = lost > 2;
                async move { Ok(made.then_some("written")) }
            })
            .await
            .expect("no error");
            (written, lost)
        };
        assert_eq!(run("").await, (Some("written"), 3));
        assert_eq!(run("etag").await, (None, 1));
    }
}
