//! The scheduler's errors and their one mapping to gRPC statuses.

use regsweep_common::FieldViolations;
use regsweep_common::grpc::GrpcError;
use tonic::Status;

use crate::store::StoreError;

/// Why an rpc failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed; every bad field is named.
    #[error(transparent)]
    InvalidArgument(#[from] FieldViolations),
    /// The named resource does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The resource is in a state that does not allow the request.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The resource was written since the caller (or the request) read
    /// it: read it again and retry.
    #[error("{0}")]
    Aborted(String),
    /// The request could not finish in time (a preview no worker ran).
    #[error("{0}")]
    DeadlineExceeded(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Self {
        match error {
            ApiError::InvalidArgument(violations) => violations.into_status(),
            ApiError::NotFound(message) => Status::not_found(message),
            ApiError::FailedPrecondition(message) => Status::failed_precondition(message),
            ApiError::Aborted(message) => Status::aborted(message),
            ApiError::DeadlineExceeded(message) => Status::deadline_exceeded(message),
            ApiError::Store(e) => e.into(),
        }
    }
}

/// Why the scheduler could not start or stopped with a failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Flags that cannot work together.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The database could not be opened or migrated.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The gRPC server could not start or failed.
    #[error(transparent)]
    Grpc(#[from] GrpcError),
    /// The tokens file cannot be used.
    #[error(transparent)]
    Tokens(#[from] regsweep_common::auth::TokensError),
    /// The metrics endpoint could not start.
    #[error(transparent)]
    Metrics(#[from] regsweep_common::prometheus::MetricsError),
    /// A task the scheduler cannot work without ended.
    #[error(transparent)]
    Task(#[from] regsweep_common::TaskFailure),
}
