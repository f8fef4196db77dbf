//! The error every store returns, sorted by what the caller can do about
//! it, and its one mapping to a gRPC status (shared by the scheduler and
//! the scrubber so that the two answer a failing database alike).

use tonic::Status;

use crate::db::OpenError;

/// Errors at a store boundary.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or timed out; retrying may work.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// A row holds something this version cannot read.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// Any other database failure.
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    /// The database could not be opened or migrated (bad URL, unwritable
    /// path, schema from a newer version).
    #[error(transparent)]
    Open(#[from] OpenError),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Tls(_) => Self::Unavailable(e),
            other => Self::Database(other),
        }
    }
}

impl From<StoreError> for Status {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(source) => {
                tracing::warn!(error = %source, "database unavailable");
                Status::unavailable("database unavailable, retry later")
            }
            e @ (StoreError::Corrupt(_) | StoreError::Database(_) | StoreError::Open(_)) => {
                // Details stay in the log: they may name tables or values.
                tracing::error!(error = %e, "store error");
                Status::internal("internal error")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    #[test]
    fn lost_connections_are_retryable_and_the_rest_say_nothing() {
        let lost: Status = StoreError::from(sqlx::Error::PoolTimedOut).into();
        assert_eq!(lost.code(), Code::Unavailable);
        let crashed: Status = StoreError::from(sqlx::Error::WorkerCrashed).into();
        assert_eq!(crashed.code(), Code::Unavailable);
        let broken: Status =
            StoreError::from(sqlx::Error::Protocol("relation \"jobs\" secret".into())).into();
        assert_eq!(broken.code(), Code::Internal);
        assert!(!broken.message().contains("jobs"), "{}", broken.message());
    }
}
