//! Why a registry call failed, sorted by what the caller can do.

/// A registry call's failure. Messages never hold a credential or token.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid registry configuration: {0}")]
    InvalidConfig(String),
    #[error("invalid reference: {0}")]
    InvalidReference(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    #[error("registry answered {status} {code}: {message}")]
    Status { status: u16, code: String, message: String },
    #[error("registry still rate limiting after {retries} retries")]
    RateLimited { retries: u32 },
    #[error("cannot reach the registry: {0}")]
    Transport(String),
    #[error("invalid registry response: {0}")]
    InvalidResponse(String),
    #[error("credentials: {0}")]
    Credentials(String),
    /// A destructive request's last check said no; nothing was sent.
    #[error("request withdrawn by its last check")]
    Withdrawn,
    /// A destructive request could not be recorded first; nothing was sent.
    #[error("request not sent: cannot record it: {0}")]
    Unrecorded(String),
}

impl Error {
    /// The registry's answer where it refuses an operation for good
    /// (distribution-spec: 400 or 405 `UNSUPPORTED` where deletes are
    /// disabled).
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::Status { status: 405, code: "UNSUPPORTED".into(), message: message.into() }
    }

    /// Whether the registry refused the operation as unsupported: retrying
    /// cannot help.
    pub fn is_unsupported(&self) -> bool {
        match self {
            Self::Status { status: 405, .. } => true,
            Self::Status { status: 400, code, .. } => code == "UNSUPPORTED",
            _ => false,
        }
    }

    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport(_) | Self::RateLimited { .. } | Self::Unrecorded(_) => true,
            Self::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

impl From<reqwest::Error> for Error {
    fn from(e: reqwest::Error) -> Self {
        // reqwest's Display may carry the URL; registry URLs hold no secrets
        // (user info is refused when a registry is created).
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        Self::Transport(text)
    }
}
