//! The token a process presents on every call it makes
//! ([`crate::grpc::Outgoing`] adds it).

use std::path::PathBuf;
use std::sync::OnceLock;

use tonic::metadata::{Ascii, MetadataValue};

static TOKEN: OnceLock<MetadataValue<Ascii>> = OnceLock::new();

/// A bearer token as a flag holds it: never printed, not even by `{:?}`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Token(pub String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl std::str::FromStr for Token {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_string()))
    }
}

/// Client flags: the bearer token to present.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ClientAuthArgs {
    /// Bearer token presented to servers that require one. Prefer
    /// `--token-file` or the variable: arguments show in `ps`.
    #[arg(long, env = "REGSWEEP_TOKEN", hide_env_values = true)]
    pub token: Option<Token>,

    /// File holding the bearer token (e.g. a mounted Secret).
    #[arg(long, env = "REGSWEEP_TOKEN_FILE", conflicts_with = "token")]
    pub token_file: Option<PathBuf>,
}

/// Why a token cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ClientTokenError {
    #[error("cannot read token file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("the token must be printable ASCII without spaces")]
    Malformed,
    #[error("another token was already installed in this process")]
    Conflict,
}

/// Installs the token of `args` for every call of this process. Services
/// sharing a process may each install the same token (or none); a
/// different one is refused, since one process presents one token.
pub fn install(args: &ClientAuthArgs) -> Result<(), ClientTokenError> {
    let token = match (&args.token, &args.token_file) {
        (Some(token), _) => token.0.trim().to_string(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|source| ClientTokenError::Read { path: path.display().to_string(), source })?
            .trim()
            .to_string(),
        (None, None) => return Ok(()),
    };
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ClientTokenError::Malformed);
    }
    let mut value: MetadataValue<Ascii> =
        format!("Bearer {token}").parse().map_err(|_| ClientTokenError::Malformed)?;
    // Never printed, not even in debug output of the request.
    value.set_sensitive(true);
    let installed = TOKEN.get_or_init(|| value.clone());
    if *installed != value {
        return Err(ClientTokenError::Conflict);
    }
    Ok(())
}

/// The `authorization` value to send, once installed.
pub fn header() -> Option<&'static MetadataValue<Ascii>> {
    TOKEN.get()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_the_token() {
        let args = ClientAuthArgs { token: Some(Token("rsw_secret".into())), token_file: None };
        assert!(!format!("{args:?}").contains("rsw_secret"));
    }

    // The only test of this binary that installs a token: the
    // process-wide state would otherwise be shared between tests.
    #[test]
    fn a_second_install_must_present_the_same_token() {
        let token = |t: &str| ClientAuthArgs { token: Some(Token(t.into())), token_file: None };
        install(&ClientAuthArgs::default()).expect("no token installs nothing");
        install(&token("rsw_first")).expect("first install");
        install(&token(" rsw_first\n")).expect("the same token, trimmed");
        install(&ClientAuthArgs::default()).expect("no token keeps the installed one");
        let err = install(&token("rsw_second")).expect_err("another token");
        assert!(matches!(err, ClientTokenError::Conflict), "{err}");
        assert_eq!(header().and_then(|h| h.to_str().ok()), Some("Bearer rsw_first"));
    }
}
