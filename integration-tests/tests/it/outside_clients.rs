//! Clients that are not regsweep's: grpcurl through server reflection
//! only, and a worker written in Python with grpcio from `proto/`.

use std::path::PathBuf;
use std::time::Duration;

use regsweep_integration_tests::{Scheduler, TestDb};
use regsweep_proto::v1::JobStatus;

use crate::{create, get, wait_status};

pub(crate) fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// A tool from `.ci/venv` (installed by `scripts/deps.sh`); missing fails loudly.
pub(crate) fn venv_tool(name: &str) -> PathBuf {
    let path = workspace().join(".ci/venv/bin").join(name);
    assert!(path.exists(), "{} is missing: run scripts/deps.sh (make deps)", path.display());
    path
}

async fn grpcurl(args: &[&str]) -> String {
    let output = grpcurl_output(args).await;
    assert!(
        output.status.success(),
        "grpcurl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8")
}

async fn grpcurl_output(args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(venv_tool("grpcurl"))
        .args(args)
        .output()
        .await
        .expect("run grpcurl")
}

#[tokio::test(flavor = "multi_thread")]
async fn grpcurl_drives_the_api_through_reflection_alone() {
    let db = TestDb::create().await;
    let scheduler = Scheduler::start(&db, &[]).await;
    let addr = scheduler.addr();
    let services = grpcurl(&["-plaintext", addr, "list"]).await;
    for service in [
        "regsweep.v1.JobService",
        "regsweep.v1.WorkerService",
        "regsweep.v1.PolicyService",
        "regsweep.v1.RegistryService",
        "grpc.health.v1.Health",
    ] {
        assert!(services.lines().any(|l| l == service), "{service} not listed:\n{services}");
    }
    let created = grpcurl(&[
        "-plaintext",
        "-d",
        r#"{"kind": "sleep", "args": {"seconds": 0}}"#,
        addr,
        "regsweep.v1.JobService/CreateJob",
    ])
    .await;
    let created: serde_json::Value = serde_json::from_str(&created).expect("json");
    let id = created["job"]["id"].as_str().expect("int64 as a string").to_string();
    let fetched = grpcurl(&[
        "-plaintext",
        "-d",
        &format!(r#"{{"id": {id}}}"#),
        addr,
        "regsweep.v1.JobService/GetJob",
    ])
    .await;
    let fetched: serde_json::Value = serde_json::from_str(&fetched).expect("json");
    assert_eq!(fetched["job"]["kind"], "sleep");
    assert_eq!(fetched["job"]["status"], "JOB_STATUS_WAITING");
    let health = grpcurl(&["-plaintext", addr, "grpc.health.v1.Health/Check"]).await;
    assert!(health.contains("SERVING"), "{health}");

    // A bad request's field violations decode through reflection too.
    let refused = grpcurl_output(&[
        "-plaintext",
        "-d",
        r#"{"kind": "", "priority": 5000}"#,
        addr,
        "regsweep.v1.JobService/CreateJob",
    ])
    .await;
    assert!(!refused.status.success());
    let error = String::from_utf8_lossy(&refused.stderr);
    assert!(error.contains("InvalidArgument"), "{error}");
    assert!(error.contains("google.rpc.BadRequest"), "details are typed: {error}");
    assert!(error.contains(r#""field":"kind""#), "violations decoded: {error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_python_worker_runs_a_job_over_the_stream() {
    let db = TestDb::create().await;
    let scheduler = Scheduler::start(&db, &[]).await;
    let mut jobs = scheduler.jobs().await;
    let job = create(&mut jobs, "sleep", serde_json::json!({"seconds": 0.5})).await;
    let output = tokio::process::Command::new(venv_tool("python"))
        .arg(workspace().join("integration-tests/python/worker.py"))
        .args(["--scheduler", scheduler.addr(), "--name", "py-worker"])
        .arg("--proto-dir")
        .arg(workspace().join("proto"))
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .expect("python worker finished")
        .expect("run python");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "python worker failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains(&format!("assigned job {} attempt 1", job.id)), "{stdout}");
    let done = wait_status(&jobs, job.id, JobStatus::Done, Duration::from_secs(10)).await;
    let result = regsweep_proto::struct_to_json(done.result.as_ref().expect("result"));
    assert_eq!(result, serde_json::json!({"by": "python", "seconds": 0.5}));
    assert_eq!(get(&mut jobs, job.id).await.attempt, 1);
    let logs = jobs
        .get_job_logs(regsweep_proto::v1::GetJobLogsRequest { id: job.id, ..Default::default() })
        .await
        .expect("logs")
        .into_inner();
    assert!(logs.lines.iter().any(|l| l.text == "hello from python"), "{logs:?}");
}
