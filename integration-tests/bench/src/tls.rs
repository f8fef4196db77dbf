//! The job queue end to end with TLS and with mutual TLS, next to
//! plaintext, in the same run on the same PostgreSQL.

use anyhow::Result;
use regsweep_common::tls::{ClientTlsArgs, TlsIdentityArgs};
use regsweep_integration_tests::TestDb;
use regsweep_integration_tests::pki::Pki;

use crate::stats;
use crate::stores::{Transport, through_services};

#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// Jobs per drain.
    #[arg(long, default_value_t = 20_000)]
    jobs: u32,
    /// Worker processes (capacity 128 each).
    #[arg(long, default_value_t = 2)]
    workers: u32,
    /// Runs; figures are medians.
    #[arg(long, default_value_t = 3)]
    runs: u32,
}

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
    println!(
        "tls benchmark: {} jobs, scheduler on PostgreSQL + {} workers over gRPC, {} runs",
        args.jobs, args.workers, args.runs
    );
    let mut figures: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    for run in 1..=args.runs {
        for (i, (name, transport)) in modes.iter().enumerate() {
            let db = TestDb::postgres().await;
            let rate = through_services(&db, args.jobs, args.workers, transport).await?;
            println!("run {run} {name}: {rate:.0} jobs/s");
            figures[i].push(rate);
        }
    }
    println!();
    println!("| transport (median of {} runs) | end to end | of plaintext |", args.runs);
    println!("|---|---|---|");
    let plain = stats::median(&mut figures[0].clone());
    for ((name, _), runs) in modes.iter().zip(figures.iter_mut()) {
        let rate = stats::median(runs);
        println!("| {name} | {rate:.0} jobs/s | {:.0}% |", 100.0 * rate / plain);
    }
    Ok(())
}
