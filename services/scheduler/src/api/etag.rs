//! Conditional writes (AIP-154). An update is made from the version the
//! API read, and the store makes it only if that version is still there,
//! inside the statement; a caller that read the resource earlier gives its
//! etag, which must name that same version. Either way, a write nobody
//! saw is never overwritten: the answer is `ABORTED`, read again and retry.

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
}
