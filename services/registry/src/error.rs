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
}

impl Error {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport(_) | Self::RateLimited { .. } => true,
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
