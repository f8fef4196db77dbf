//! TLS and mutual TLS for every server and client (rustls). Plaintext is
//! the default, for local development, and says so at start-up.
//!
//! A process has one identity: the certificate and key it presents as a
//! server, and as a client where the server asks for one. Its clients
//! trust `--tls-ca` (or the system roots) for every `https://` URL.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// The certificate and key this process presents.
#[derive(Clone, Debug, Default, PartialEq, Eq, clap::Args)]
pub struct TlsIdentityArgs {
    /// PEM certificate (chain) this process presents: as a server it then
    /// serves TLS only; as a client it answers servers that ask for one.
    #[arg(long, env = "REGSWEEP_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of `--tls-cert`.
    #[arg(long, env = "REGSWEEP_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// What a server asks of its clients.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct ServerTlsArgs {
    /// PEM CA bundle: clients must present a certificate it signed
    /// (mutual TLS). Needs `--tls-cert`.
    #[arg(long, env = "REGSWEEP_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
}

/// What a client trusts.
#[derive(Clone, Debug, Default, PartialEq, Eq, clap::Args)]
pub struct ClientTlsArgs {
    /// PEM CA bundle that `https://` servers' certificates must chain to
    /// (default: the system's roots).
    #[arg(long, env = "REGSWEEP_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {source}")]
    Read { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("--tls-cert and --tls-key go together")]
    HalfIdentity,
    #[error("--tls-client-ca needs --tls-cert and --tls-key: mutual TLS is TLS first")]
    ClientCaWithoutIdentity,
    #[error("client TLS settings were already installed with other flags in this process")]
    ClientConflict,
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { what, path: path.to_owned(), source })
}

impl TlsIdentityArgs {
    fn identity(&self) -> Result<Option<Identity>, TlsError> {
        match (&self.tls_cert, &self.tls_key) {
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => {
                Ok(Some(Identity::from_pem(read("certificate", cert)?, read("private key", key)?)))
            }
            _ => Err(TlsError::HalfIdentity),
        }
    }
}

/// The server's TLS settings; `None` serves plaintext.
pub fn server_config(
    identity: &TlsIdentityArgs,
    server: &ServerTlsArgs,
) -> Result<Option<ServerTlsConfig>, TlsError> {
    let Some(identity) = identity.identity()? else {
        if server.tls_client_ca.is_some() {
            return Err(TlsError::ClientCaWithoutIdentity);
        }
        return Ok(None);
    };
    let mut config = ServerTlsConfig::new().identity(identity);
    if let Some(ca) = &server.tls_client_ca {
        config = config.client_ca_root(Certificate::from_pem(read("client CA", ca)?));
    }
    Ok(Some(config))
}

/// The installed client settings, with the flags they came from.
static CLIENT: OnceLock<(TlsIdentityArgs, ClientTlsArgs, ClientTlsConfig)> = OnceLock::new();

/// Sets how this process's clients dial `https://` URLs. Call at start-up,
/// before any client dials. Services sharing a process (`regsweep dev`)
/// may each call it with the same flags; different flags are refused,
/// since one process has one client configuration.
pub fn install_client(identity: &TlsIdentityArgs, client: &ClientTlsArgs) -> Result<(), TlsError> {
    let same = |(i, c, _): &(TlsIdentityArgs, ClientTlsArgs, ClientTlsConfig)| {
        if i == identity && c == client { Ok(()) } else { Err(TlsError::ClientConflict) }
    };
    if let Some(installed) = CLIENT.get() {
        return same(installed);
    }
    let mut config = ClientTlsConfig::new();
    config = match &client.tls_ca {
        Some(ca) => config.ca_certificate(Certificate::from_pem(read("CA", ca)?)),
        None => config.with_native_roots(),
    };
    if let Some(identity) = identity.identity()? {
        config = config.identity(identity);
    }
    match CLIENT.set((identity.clone(), client.clone(), config)) {
        Ok(()) => Ok(()),
        Err(_) => CLIENT.get().map_or(Ok(()), same),
    }
}

/// The client TLS settings for `https://` URLs.
pub(crate) fn client_config() -> ClientTlsConfig {
    CLIENT
        .get()
        .map(|(_, _, config)| config.clone())
        .unwrap_or_else(|| ClientTlsConfig::new().with_native_roots())
}

#[cfg(test)]
mod tests {
    use super::*;

    // The only test of this binary that installs client settings: the
    // process-wide state would otherwise be shared between tests.
    #[test]
    fn a_second_install_must_use_the_same_flags() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "pem, parsed only when dialing").expect("write");
        let identity = TlsIdentityArgs::default();
        let trusting = ClientTlsArgs { tls_ca: Some(ca) };
        install_client(&identity, &trusting).expect("first install");
        install_client(&identity, &trusting).expect("same flags again");
        let err = install_client(&identity, &ClientTlsArgs::default()).expect_err("other flags");
        assert!(matches!(err, TlsError::ClientConflict), "{err}");
    }
}
