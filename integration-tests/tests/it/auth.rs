//! Tokens and roles: every rpc admits exactly the roles of its row in the
//! table below; tokens reload on SIGHUP; workers, scrubbers and the CLI
//! present theirs; floods from one caller are refused without harming
//! others; no token is ever logged.

use std::time::Duration;

use prost::Message as _;
use regsweep_integration_tests::{Scheduler, Scrubber, TestDb, Worker, wait_until};
use regsweep_proto::v1;
use tonic::Code;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

const WAIT: Duration = Duration::from_secs(30);

/// The tokens of the test, one per role (the worker's also submits
/// deletions, as a worker's must).
const ROLES: [(&str, &str, &str); 5] = [
    ("read", "grafana", "rsw_read_0123456789abcdef"),
    ("admin", "alice", "rsw_admin_0123456789abcdef"),
    ("worker,scrubber-client", "workers", "rsw_worker_0123456789abcdef"),
    ("scrubber-client", "pipeline", "rsw_scrubber_client_0123456789"),
    ("in-use", "cluster-agent", "rsw_in_use_0123456789abcdef"),
];

fn token(role: &str) -> &'static str {
    ROLES.iter().find(|(r, _, _)| *r == role).map(|(_, _, t)| *t).expect("role")
}

fn tokens_file(dir: &tempfile::TempDir, entries: &[(&str, &str, &str)]) -> std::path::PathBuf {
    let path = dir.path().join("tokens");
    write_tokens(&path, entries);
    path
}

fn write_tokens(path: &std::path::Path, entries: &[(&str, &str, &str)]) {
    let mut text = String::from("# ROLES NAME SHA256\n");
    for (roles, name, token) in entries {
        text.push_str(&format!(
            "{roles} {name} {}\n",
            regsweep_common::auth::hash_line_value(token)
        ));
    }
    std::fs::write(path, text).expect("write tokens");
}

/// The specification: who may call each rpc besides `admin`, who may
/// call everything. Open rpcs need no token at all.
fn spec(path: &str) -> Option<&'static [&'static str]> {
    const READ: &[&str] = &["read"];
    const NONE: &[&str] = &[];
    let (service, method) = path.trim_start_matches('/').split_once('/').expect("path");
    Some(match (service, method) {
        ("grpc.health.v1.Health", _) => return None,
        (s, _) if s.starts_with("grpc.reflection.") => return None,
        ("regsweep.v1.JobService", "GetJob" | "ListJobs" | "GetJobLogs" | "TailJobLogs") => READ,
        ("regsweep.v1.JobService", "ListWorkers" | "GetQueueStatus") => READ,
        ("regsweep.v1.JobService", "CreateJob" | "CreateJobs" | "CancelJob" | "DeleteJob") => NONE,
        ("regsweep.v1.JobService", "SetWorkerCapacity") => NONE,
        ("regsweep.v1.CronService", "GetCron" | "ListCrons") => READ,
        ("regsweep.v1.CronService", "CreateCron" | "UpdateCron" | "DeleteCron") => NONE,
        ("regsweep.v1.RegistryService", "GetRegistry" | "GetProtection") => &["read", "worker"],
        ("regsweep.v1.RegistryService", "MarkInUse") => &["in-use"],
        ("regsweep.v1.RegistryService", "ListRegistries") => READ,
        ("regsweep.v1.RegistryService", "CreateRegistry" | "UpdateRegistry" | "DeleteRegistry") => {
            NONE
        }
        ("regsweep.v1.RepositoryService", "ListRepositories" | "GetCleanupStatus") => READ,
        ("regsweep.v1.RepositoryService", "SyncRepositories") => NONE,
        (
            "regsweep.v1.RepositoryService",
            "ReportRepositories" | "RecordDeletions" | "RecordPushback" | "RecordTagSightings",
        ) => &["worker"],
        ("regsweep.v1.PolicyService", "GetPolicy" | "ListPolicies") => READ,
        // Scrubbers ask them with their worker token.
        ("regsweep.v1.PolicyService", "CheckPlan" | "CheckPolicies") => &["worker"],
        (
            "regsweep.v1.PolicyService",
            "CreatePolicy" | "UpdatePolicy" | "DeletePolicy" | "EnablePolicy" | "DisablePolicy"
            | "RunPolicy" | "PreviewPolicy",
        ) => NONE,
        ("regsweep.v1.WorkerService", "Connect") => &["worker"],
        ("regsweep.v1.ScrubberService", "SubmitDeletions") => &["scrubber-client"],
        (
            "regsweep.v1.ScrubberService",
            "ListDeletions" | "GetScrubberStatus" | "ListRegistryRequests",
        ) => READ,
        ("regsweep.v1.ScrubberService", "RestoreDeletions" | "ApproveDeletions") => NONE,
        _ => panic!("{path} has no row in the table: add one"),
    })
}

/// Every rpc path the services define, from the descriptors they serve.
fn all_rpcs() -> Vec<String> {
    let mut paths = Vec::new();
    for set in [regsweep_proto::FILE_DESCRIPTOR_SET, tonic_health::pb::FILE_DESCRIPTOR_SET] {
        let set = prost_types::FileDescriptorSet::decode(set).expect("descriptors");
        for file in set.file {
            for service in &file.service {
                for method in &service.method {
                    paths.push(format!("/{}.{}/{}", file.package(), service.name(), method.name()));
                }
            }
        }
    }
    paths.push("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo".into());
    paths.sort();
    paths.dedup();
    paths
}

/// Calls `path` with an empty message (every field at its default) and
/// `token`; the code it ends with, or `Ok` when the call was admitted and
/// is still running after a while (a stream).
async fn call(channel: &Channel, path: &str, token: Option<&str>) -> Code {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.expect("ready");
    let mut request = tonic::Request::new(tokio_stream::once(()));
    if let Some(token) = token {
        let value: MetadataValue<_> = format!("Bearer {token}").parse().expect("header");
        request.metadata_mut().insert("authorization", value);
    }
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    let path = path.parse().expect("path");
    let answered = tokio::time::timeout(Duration::from_secs(5), async {
        match grpc.streaming(request, path, codec).await {
            Ok(mut response) => match response.get_mut().message().await {
                Ok(_) => Code::Ok,
                Err(status) => status.code(),
            },
            Err(status) => status.code(),
        }
    })
    .await;
    answered.unwrap_or(Code::Ok)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_rpc_admits_exactly_the_roles_of_its_row() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = tokens_file(&dir, &ROLES);
    let tokens = tokens.to_str().expect("path");
    let db = TestDb::create().await;
    let scheduler = Scheduler::start(&db, &["--tokens-file", tokens]).await;
    let envs = [("REGSWEEP_TOKEN", token("worker,scrubber-client"))];
    let scrubber =
        Scrubber::start_with_env("scrubber", &db, &scheduler, &["--tokens-file", tokens], &envs)
            .await;
    let scheduler_channel = scheduler.channel().await;
    let scrubber_channel =
        Channel::from_shared(scrubber.url.clone()).expect("url").connect().await.expect("dial");

    let mut checked = 0;
    for path in all_rpcs() {
        let channel =
            if path.contains("ScrubberService") { &scrubber_channel } else { &scheduler_channel };
        let allowed = spec(&path);
        let anonymous = call(channel, &path, None).await;
        match allowed {
            None => assert!(
                !matches!(anonymous, Code::Unauthenticated | Code::PermissionDenied),
                "{path} is open, got {anonymous:?}"
            ),
            Some(_) => assert_eq!(anonymous, Code::Unauthenticated, "{path} without a token"),
        }
        let wrong = call(channel, &path, Some("rsw_not_a_token")).await;
        if allowed.is_some() {
            assert_eq!(wrong, Code::Unauthenticated, "{path} with an unknown token");
        }
        for (roles, _, token) in ROLES {
            let code = call(channel, &path, Some(token)).await;
            let admitted = match allowed {
                None => true,
                Some(row) => roles == "admin" || roles.split(',').any(|r| row.contains(&r)),
            };
            if admitted {
                assert!(
                    !matches!(code, Code::Unauthenticated | Code::PermissionDenied),
                    "{path} must admit {roles}, got {code:?}"
                );
            } else {
                assert_eq!(code, Code::PermissionDenied, "{path} must refuse {roles}");
            }
        }
        checked += 1;
    }
    assert!(checked >= 40, "only {checked} rpcs checked");
    for (name, lines) in
        [("scheduler", scheduler.process.logs()), ("scrubber", scrubber.process.logs())]
    {
        for line in lines {
            for (_, _, token) in ROLES {
                assert!(!line.contains(token), "{name} logged a token: {line}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_reload_on_sighup_and_a_broken_file_keeps_the_old_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let alice = ("admin", "alice", "rsw_alice_token_1");
    let bob = ("read", "bob", "rsw_bob_token_2");
    let path = tokens_file(&dir, &[alice]);
    let db = TestDb::create().await;
    let scheduler = Scheduler::start(&db, &["--tokens-file", path.to_str().expect("path")]).await;
    let channel = scheduler.channel().await;
    let list = "/regsweep.v1.JobService/ListJobs";
    assert_eq!(call(&channel, list, Some(bob.2)).await, Code::Unauthenticated);

    write_tokens(&path, &[alice, bob]);
    scheduler.process.signal(nix::sys::signal::Signal::SIGHUP);
    scheduler.process.wait_for_message("tokens reloaded", WAIT).await;
    assert_eq!(call(&channel, list, Some(bob.2)).await, Code::Ok);
    assert_eq!(
        call(&channel, "/regsweep.v1.JobService/CreateJob", Some(bob.2)).await,
        Code::PermissionDenied
    );

    std::fs::write(&path, "admin alice not-a-hash\n").expect("write");
    scheduler.process.signal(nix::sys::signal::Signal::SIGHUP);
    scheduler
        .process
        .wait_for_message("tokens not reloaded, keeping the previous ones", WAIT)
        .await;
    assert_eq!(call(&channel, list, Some(bob.2)).await, Code::Ok, "old tokens still work");
}

#[tokio::test(flavor = "multi_thread")]
async fn workers_scrubbers_and_the_cli_present_their_tokens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = tokens_file(&dir, &ROLES);
    let tokens = tokens.to_str().expect("path");
    let db = TestDb::create().await;
    let scheduler = Scheduler::start(&db, &["--tokens-file", tokens]).await;
    let worker_token = [("REGSWEEP_TOKEN", token("worker,scrubber-client"))];
    let _worker = Worker::start_with_env(&scheduler, "w1", &[], &worker_token).await;

    // A worker without a token is refused and never registers.
    let anonymous = Worker::spawn(&scheduler.url, "anonymous", &[]);
    let lost = anonymous.process.wait_for_message("scheduler stream lost", WAIT).await;
    assert!(lost["reason"].as_str().unwrap_or_default().contains("bearer token"), "{lost}");

    let cli = |token: &'static str, args: &'static [&'static str]| {
        let url = scheduler.url.clone();
        async move {
            tokio::process::Command::new(regsweep_integration_tests::process::bin("regsweep"))
                .args(["--scheduler", &url])
                .args(args)
                .env("REGSWEEP_TOKEN", token)
                .output()
                .await
                .expect("run regsweep")
        }
    };
    let created =
        cli(token("admin"), &["jobs", "create", "--kind", "sleep", "--args", r#"{"seconds": 0}"#])
            .await;
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let refused =
        cli(token("read"), &["jobs", "create", "--kind", "sleep", "--args", r#"{"seconds": 0}"#])
            .await;
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("may not call"), "{message}");

    // The admin's job runs on the worker that presented its token.
    let mut jobs = scheduler.jobs().await;
    wait_until("the job done", WAIT, || {
        let mut jobs = jobs.clone();
        async move {
            let mut request = tonic::Request::new(v1::GetJobRequest { id: 1 });
            let value: MetadataValue<_> =
                format!("Bearer {}", token("read")).parse().expect("header");
            request.metadata_mut().insert("authorization", value);
            let job = jobs.get_job(request).await.ok()?.into_inner().job?;
            (job.status() == v1::JobStatus::Done).then_some(())
        }
    })
    .await;
    let listed = cli(token("read"), &["jobs", "list"]).await;
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    // Tokenless calls from this test's own client are refused too.
    let status = jobs.list_jobs(v1::ListJobsRequest::default()).await.expect_err("no token");
    assert_eq!(status.code(), Code::Unauthenticated);
    for line in scheduler.process.logs() {
        for (_, _, token) in ROLES {
            assert!(!line.contains(token), "the scheduler logged a token: {line}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_from_one_token_is_refused_without_harming_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = tokens_file(&dir, &ROLES);
    let db = TestDb::create().await;
    let args = ["--tokens-file", tokens.to_str().expect("path"), "--rate-limit", "5"];
    let scheduler = Scheduler::start(&db, &args).await;
    let channel = scheduler.channel().await;
    let list = "/regsweep.v1.JobService/ListJobs";
    let mut refused = 0;
    for _ in 0..50 {
        match call(&channel, list, Some(token("read"))).await {
            Code::Ok => {}
            Code::ResourceExhausted => refused += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(refused > 0, "50 calls at once stayed under 5 per second");
    // Another token is untouched.
    for _ in 0..3 {
        assert_eq!(call(&channel, list, Some(token("admin"))).await, Code::Ok);
    }
    // The refusal says when to come back.
    let mut jobs = scheduler.jobs().await;
    let mut request = tonic::Request::new(v1::ListJobsRequest::default());
    let value: MetadataValue<_> = format!("Bearer {}", token("read")).parse().expect("header");
    request.metadata_mut().insert("authorization", value);
    let status = jobs.list_jobs(request).await.expect_err("still over the limit");
    assert_eq!(status.code(), Code::ResourceExhausted);
    use tonic_types::StatusExt as _;
    let retry = status.get_details_retry_info().and_then(|r| r.retry_delay).expect("retry info");
    assert!(retry > Duration::ZERO && retry <= Duration::from_secs(1), "{retry:?}");
}
