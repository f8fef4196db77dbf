//! Certificates made for a test: a CA, a server certificate for
//! 127.0.0.1 and localhost, a client certificate it signed, and a client
//! certificate of another CA, as PEM files.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// A CA, a server certificate for 127.0.0.1 and a client certificate it
/// signed, and a client certificate of another CA, as PEM files.
pub struct Pki {
    _dir: tempfile::TempDir,
    pub ca: PathBuf,
    /// (certificate, key) of the server.
    pub server: (PathBuf, PathBuf),
    /// (certificate, key) of a client the CA signed.
    pub client: (PathBuf, PathBuf),
    /// Another client certificate from the CA, mapped to no role.
    pub stranger: (PathBuf, PathBuf),
    /// (certificate, key) of a client another CA signed.
    pub rogue: (PathBuf, PathBuf),
}

fn ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().expect("ca key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let pem = params.self_signed(&key).expect("self-signed ca").pem();
    (pem, Issuer::new(params, key))
}

fn leaf(dir: &Path, name: &str, issuer: &Issuer<'_, KeyPair>) -> (PathBuf, PathBuf) {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .expect("params");
    // The subject's common name is what `--cert-role` maps to a role.
    params.distinguished_name.push(DnType::CommonName, name);
    let cert = params.signed_by(&key, issuer).expect("signed certificate");
    let (cert_path, key_path) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    std::fs::write(&cert_path, cert.pem()).expect("write certificate");
    std::fs::write(&key_path, key.serialize_pem()).expect("write key");
    (cert_path, key_path)
}

impl Pki {
    /// Writes a fresh PKI to a temporary directory (removed on drop).
    pub fn generate() -> Self {
        let dir = tempfile::tempdir().expect("pki dir");
        let (ca_pem, issuer) = ca("regsweep test CA");
        let (_, other) = ca("some other CA");
        let ca = dir.path().join("ca.crt");
        std::fs::write(&ca, ca_pem).expect("write ca");
        Self {
            server: leaf(dir.path(), "server", &issuer),
            client: leaf(dir.path(), "client", &issuer),
            stranger: leaf(dir.path(), "stranger", &issuer),
            rogue: leaf(dir.path(), "rogue", &other),
            ca,
            _dir: dir,
        }
    }
}
