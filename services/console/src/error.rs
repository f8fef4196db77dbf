//! Errors, translated once into what the browser sees.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use regsweep_common::grpc::GrpcError;
use tonic::Code;

use crate::view;

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error(transparent)]
    Grpc(#[from] GrpcError),
    #[error("serving: {0}")]
    Serve(#[source] std::io::Error),
    /// A service answered with an error.
    #[error("{}", .0.message())]
    Service(#[from] tonic::Status),
    /// The form or query was not what the page sends.
    #[error("{0}")]
    BadRequest(String),
    /// A POST without this browser's CSRF token, or from another site.
    #[error("the form expired or came from another site; reload the page and try again")]
    Forged,
    #[error("{0} not found")]
    NotFound(String),
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::Service(s) => match s.code() {
                // Not signed in, or the token was revoked: sign in again.
                Code::Unauthenticated => return Redirect::to("/sign-in").into_response(),
                Code::PermissionDenied => StatusCode::FORBIDDEN,
                Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
                    StatusCode::BAD_REQUEST
                }
                Code::NotFound => StatusCode::NOT_FOUND,
                Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
                Code::Unavailable | Code::DeadlineExceeded => StatusCode::BAD_GATEWAY,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
            Self::Grpc(_) => StatusCode::BAD_GATEWAY,
            Self::Serve(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Forged => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
        };
        if status.is_server_error() {
            tracing::warn!(error = %self, "console request failed");
        }
        (status, view::error_page(status, &self.to_string())).into_response()
    }
}
