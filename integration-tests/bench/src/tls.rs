//! The job queue end to end with TLS and with mutual TLS, next to
//! plaintext, in the same run on the same PostgreSQL.

use anyhow::Result;
use regsweep_common::tls::{ClientTlsArgs, TlsIdentityArgs};
use regsweep_integration_tests::pki::Pki;

use crate::stores::{DrainArgs, Transport, compare};

pub type Args = DrainArgs;

pub async fn run(args: Args) -> Result<()> {
    let pki = Pki::generate();
    let path = |p: &std::path::Path| p.display().to_string();
    // This process enqueues and watches as a client the CA signed.
    let identity = TlsIdentityArgs {
        tls_cert: Some(pki.client.0.clone()),
        tls_key: Some(pki.client.1.clone()),
    };
    regsweep_common::tls::install_client(
        &identity,
        &ClientTlsArgs { tls_ca: Some(pki.ca.clone()) },
    )?;
    let server =
        vec!["--tls-cert".into(), path(&pki.server.0), "--tls-key".into(), path(&pki.server.1)];
    let trust = vec!["--tls-ca".into(), path(&pki.ca)];
    let mut mutual_server = server.clone();
    mutual_server.extend(["--tls-client-ca".into(), path(&pki.ca)]);
    let mut mutual_worker = trust.clone();
    mutual_worker.extend([
        "--tls-cert".into(),
        path(&pki.client.0),
        "--tls-key".into(),
        path(&pki.client.1),
    ]);
    let modes = [
        ("plaintext", Transport::plaintext()),
        ("TLS", Transport { scheduler: server, worker: trust, https: true, envs: Vec::new() }),
        (
            "mutual TLS",
            Transport {
                scheduler: mutual_server,
                worker: mutual_worker,
                https: true,
                envs: Vec::new(),
            },
        ),
    ];
    compare("transport", &args, &modes).await
}
