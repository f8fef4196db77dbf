//! TLS and mutual TLS end to end, with certificates made for the test: a
//! worker with a certificate from the CA runs jobs; one without, or with
//! one from another CA, is refused; plaintext reaches nothing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use regsweep_integration_tests::pki::Pki;
use regsweep_integration_tests::process::bin;
use regsweep_integration_tests::{Scheduler, TestDb, Worker};
use regsweep_proto::v1::JobStatus;
use regsweep_proto::v1::job_service_client::JobServiceClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::{create, wait_status};

fn s(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// A channel from this test process, trusting the CA, presenting `identity`.
async fn channel(
    url: &str,
    pki: &Pki,
    identity: Option<&(PathBuf, PathBuf)>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(&pki.ca).expect("read ca")));
    if let Some((cert, key)) = identity {
        let identity = Identity::from_pem(
            std::fs::read(cert).expect("cert"),
            std::fs::read(key).expect("key"),
        );
        tls = tls.identity(identity);
    }
    Channel::from_shared(url.to_string()).expect("url").tls_config(tls)?.connect().await
}

#[tokio::test(flavor = "multi_thread")]
async fn mutual_tls_admits_only_workers_with_a_certificate_from_the_ca() {
    let pki = Pki::generate();
    let db = TestDb::create().await;
    let (cert, key) = (s(&pki.server.0), s(&pki.server.1));
    let tls = ["--tls-cert", cert, "--tls-key", key, "--tls-client-ca", s(&pki.ca)];
    let mut scheduler = Scheduler::start(&db, &tls).await;
    let plaintext = scheduler.url.clone();
    scheduler.url = scheduler.url.replace("http://", "https://");

    let anonymous = Worker::spawn(&scheduler.url, "anonymous", &["--tls-ca", s(&pki.ca)]);
    let rogue_args =
        ["--tls-ca", s(&pki.ca), "--tls-cert", s(&pki.rogue.0), "--tls-key", s(&pki.rogue.1)];
    let rogue = Worker::spawn(&scheduler.url, "rogue", &rogue_args);
    for refused in [&anonymous, &rogue] {
        refused.process.wait_for_message("scheduler stream lost", Duration::from_secs(20)).await;
    }

    let channel = channel(&scheduler.url, &pki, Some(&pki.client)).await.expect("mtls channel");
    let mut jobs = JobServiceClient::new(channel.clone());
    let job = create(&mut jobs, "sleep", serde_json::json!({"seconds": 0})).await;
    let good_args =
        ["--tls-ca", s(&pki.ca), "--tls-cert", s(&pki.client.0), "--tls-key", s(&pki.client.1)];
    let _good = Worker::start(&scheduler, "good", &good_args).await;
    let done = wait_status(&jobs, job.id, JobStatus::Done, Duration::from_secs(20)).await;
    let workers = JobServiceClient::new(channel.clone())
        .list_workers(regsweep_proto::v1::ListWorkersRequest {
            include_gone: true,
            ..Default::default()
        })
        .await
        .expect("list workers")
        .into_inner()
        .workers;
    let names: Vec<&str> = workers.iter().map(|w| w.name.as_str()).collect();
    assert!(names.contains(&"good"), "{names:?}");
    assert!(
        !names.contains(&"anonymous") && !names.contains(&"rogue"),
        "refused workers registered: {names:?}"
    );
    assert_eq!(
        workers.iter().find(|w| w.name == "good").map(|w| w.id.clone()),
        Some(done.worker_id)
    );

    // This process's own clients: the same rules.
    assert!(channel_refused(&scheduler.url, &pki, None).await, "no client certificate");
    assert!(
        channel_refused(&scheduler.url, &pki, Some(&pki.rogue)).await,
        "another CA's certificate"
    );
    let plain = Channel::from_shared(plaintext).expect("url").connect().await;
    let plain_rpc = match plain {
        Ok(channel) => JobServiceClient::new(channel)
            .get_job(regsweep_proto::v1::GetJobRequest { id: job.id })
            .await
            .is_ok(),
        Err(_) => false,
    };
    assert!(!plain_rpc, "a plaintext client got an answer from a TLS server");

    // The CLI takes the same flags.
    let cli = |identity: bool| {
        let mut args = vec!["--scheduler", &scheduler.url, "--tls-ca", s(&pki.ca)];
        if identity {
            args.extend(["--tls-cert", s(&pki.client.0), "--tls-key", s(&pki.client.1)]);
        }
        let id = job.id.to_string();
        let output = std::process::Command::new(bin("regsweep"))
            .args(args)
            .args(["jobs", "get", &id])
            .output()
            .expect("run cli");
        output.status.success()
    };
    assert!(cli(true), "the CLI with a client certificate");
    assert!(!cli(false), "the CLI without one");
}

/// True when an rpc over a channel presenting `identity` fails.
async fn channel_refused(url: &str, pki: &Pki, identity: Option<&(PathBuf, PathBuf)>) -> bool {
    let Ok(channel) = channel(url, pki, identity).await else {
        return true;
    };
    let request = regsweep_proto::v1::ListJobsRequest::default();
    JobServiceClient::new(channel).list_jobs(request).await.is_err()
}

#[tokio::test(flavor = "multi_thread")]
async fn server_tls_alone_serves_any_client_that_trusts_it() {
    let pki = Pki::generate();
    let db = TestDb::create().await;
    let tls = ["--tls-cert", s(&pki.server.0), "--tls-key", s(&pki.server.1)];
    let mut scheduler = Scheduler::start(&db, &tls).await;
    scheduler.url = scheduler.url.replace("http://", "https://");
    let _worker = Worker::start(&scheduler, "w", &["--tls-ca", s(&pki.ca)]).await;
    let mut jobs =
        JobServiceClient::new(channel(&scheduler.url, &pki, None).await.expect("tls channel"));
    let job = create(&mut jobs, "sleep", serde_json::json!({"seconds": 0})).await;
    wait_status(&jobs, job.id, JobStatus::Done, Duration::from_secs(20)).await;
    // A worker that does not trust the CA is refused by its own side.
    let doubtful = Worker::spawn(&scheduler.url, "doubtful", &[]);
    let lost =
        doubtful.process.wait_for_message("scheduler stream lost", Duration::from_secs(20)).await;
    assert!(lost["reason"].as_str().is_some_and(|r| !r.is_empty()), "{lost}");
}

#[tokio::test(flavor = "multi_thread")]
async fn client_certificates_act_with_the_role_their_subject_maps_to() {
    let pki = Pki::generate();
    let db = TestDb::create().await;
    let (cert, key) = (s(&pki.server.0), s(&pki.server.1));
    let args = [
        "--tls-cert",
        cert,
        "--tls-key",
        key,
        "--tls-client-ca",
        s(&pki.ca),
        "--cert-role",
        "client=worker",
        "--cert-role",
        "server=admin",
    ];
    let mut scheduler = Scheduler::start(&db, &args).await;
    scheduler.url = scheduler.url.replace("http://", "https://");

    // `server` acts as admin, with no token.
    let admin = channel(&scheduler.url, &pki, Some(&pki.server)).await.expect("admin channel");
    let mut jobs = JobServiceClient::new(admin);
    let job = create(&mut jobs, "sleep", serde_json::json!({"seconds": 0})).await;
    // `client` is a worker: it joins and runs the job...
    let worker_args =
        ["--tls-ca", s(&pki.ca), "--tls-cert", s(&pki.client.0), "--tls-key", s(&pki.client.1)];
    let _worker = Worker::start(&scheduler, "w", &worker_args).await;
    wait_status(&jobs, job.id, JobStatus::Done, Duration::from_secs(20)).await;
    // ...and may do nothing a worker may not.
    let listed = list_jobs_refused(&scheduler.url, &pki, &pki.client).await;
    assert_eq!(listed.code(), tonic::Code::PermissionDenied, "{listed:?}");
    assert!(listed.message().contains("certificate \"client\""), "{}", listed.message());
    // A certificate the CA signed for a name with no role is nobody.
    let refused = list_jobs_refused(&scheduler.url, &pki, &pki.stranger).await;
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
}

/// The status of a ListJobs call presenting `identity`, which must fail.
async fn list_jobs_refused(url: &str, pki: &Pki, identity: &(PathBuf, PathBuf)) -> tonic::Status {
    let channel = channel(url, pki, Some(identity)).await.expect("channel");
    JobServiceClient::new(channel)
        .list_jobs(regsweep_proto::v1::ListJobsRequest::default())
        .await
        .expect_err("listing jobs is refused")
}

#[tokio::test(flavor = "multi_thread")]
async fn probes_reach_a_plaintext_health_port_that_serves_nothing_else() {
    let pki = Pki::generate();
    let db = TestDb::create().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "").expect("no tokens at all");
    let args = [
        "--tls-cert",
        s(&pki.server.0),
        "--tls-key",
        s(&pki.server.1),
        "--tls-client-ca",
        s(&pki.ca),
        "--tokens-file",
        s(&tokens),
        "--health-listen",
        "127.0.0.1:0",
    ];
    let scheduler = Scheduler::start(&db, &args).await;
    let line = scheduler
        .process
        .wait_for_message(
            "health listening (plaintext, grpc.health.v1 only)",
            Duration::from_secs(10),
        )
        .await;
    let health_url = format!("http://{}", line["addr"].as_str().expect("addr"));
    let channel = Channel::from_shared(health_url).expect("url").connect().await.expect("dial");
    let request = tonic_health::pb::HealthCheckRequest { service: String::new() };
    let status = tonic_health::pb::health_client::HealthClient::new(channel.clone())
        .check(request)
        .await
        .expect("a plaintext probe without a token or certificate")
        .into_inner()
        .status();
    assert_eq!(status, tonic_health::pb::health_check_response::ServingStatus::Serving);
    let other = JobServiceClient::new(channel)
        .list_jobs(regsweep_proto::v1::ListJobsRequest::default())
        .await
        .expect_err("only health is served there");
    assert_eq!(other.code(), tonic::Code::Unimplemented, "{other:?}");
}
