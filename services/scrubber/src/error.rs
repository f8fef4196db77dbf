//! The scrubber's errors and their one mapping to gRPC statuses.

use regsweep_common::FieldViolations;
use regsweep_common::grpc::GrpcError;
use tonic::Status;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    InvalidArgument(#[from] FieldViolations),
    /// A dependency (the scheduler) cannot be reached.
    #[error("{0}")]
    Unavailable(String),
    /// The scheduler does not vouch for a plan.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Self {
        match error {
            ApiError::InvalidArgument(v) => v.into_status(),
            ApiError::Unavailable(message) => Status::unavailable(message),
            ApiError::Refused(message) => Status::failed_precondition(message),
            ApiError::Store(e) => e.into(),
        }
    }
}

/// Why the scrubber could not start or stopped with a failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Grpc(#[from] GrpcError),
    #[error(transparent)]
    Tokens(#[from] regsweep_common::auth::TokensError),
    #[error(transparent)]
    ClientToken(#[from] regsweep_common::auth::ClientTokenError),
    #[error(transparent)]
    Metrics(#[from] regsweep_common::prometheus::MetricsError),
    /// A task the scrubber cannot work without ended.
    #[error(transparent)]
    Task(#[from] regsweep_common::TaskFailure),
}
