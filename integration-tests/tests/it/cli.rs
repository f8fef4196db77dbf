//! The `regsweep` CLI against a real scheduler: what scripts rely on.

use std::process::Output;
use std::time::Duration;

use regsweep_integration_tests::process::bin;
use regsweep_integration_tests::{Scheduler, TestDb, Worker};
use regsweep_proto::v1::JobStatus;

use crate::wait_status;

async fn regsweep(scheduler: &str, args: &[&str]) -> Output {
    tokio::process::Command::new(bin("regsweep"))
        .arg("--scheduler")
        .arg(scheduler)
        .args(args)
        .output()
        .await
        .expect("run regsweep")
}

fn json(output: &Output) -> serde_json::Value {
    assert!(output.status.success(), "stderr: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("one JSON document")
}

#[tokio::test]
async fn scripts_can_drive_jobs_workers_and_crons_through_json() {
    let db = TestDb::create().await;
    let scheduler = Scheduler::start(&db, &[]).await;
    let _worker = Worker::start(&scheduler, "w", &[]).await;
    let url = scheduler.url.as_str();

    let created = json(
        &regsweep(
            url,
            &[
                "--output",
                "json",
                "jobs",
                "create",
                "--kind",
                "sleep",
                "--args",
                r#"{"seconds": 0.2}"#,
            ],
        )
        .await,
    );
    assert_eq!(created["created"], true);
    let id: i64 = created["job"]["id"].as_str().expect("int64 as string").parse().expect("id");
    wait_status(&scheduler.jobs().await, id, JobStatus::Done, Duration::from_secs(10)).await;

    let listed =
        json(&regsweep(url, &["--output", "json", "jobs", "list", "--status", "done"]).await);
    let ids: Vec<&str> =
        listed.as_array().expect("array").iter().filter_map(|j| j["id"].as_str()).collect();
    assert_eq!(ids, [id.to_string()]);
    let logs =
        regsweep(url, &["--output", "json", "jobs", "logs", &id.to_string(), "--follow"]).await;
    assert!(logs.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&logs.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(
        lines.iter().map(|l| l["text"].as_str().unwrap_or_default()).collect::<Vec<_>>(),
        ["sleeping for 200ms", "slept for 200ms"]
    );

    let workers = json(&regsweep(url, &["--output", "json", "workers", "list"]).await);
    let worker =
        workers.as_array().expect("array").iter().find(|w| w["name"] == "w").expect("listed");
    let worker_id = worker["id"].as_str().expect("worker id").to_string();
    let changed = json(
        &regsweep(url, &["--output", "json", "workers", "capacity", &worker_id, "sleep=2"]).await,
    );
    assert_eq!(changed["capacity"]["sleep"], 2);

    let cron = json(
        &regsweep(
            url,
            &[
                "--output",
                "json",
                "crons",
                "create",
                "--name",
                "nightly",
                "--schedule",
                "0 2 * * *",
                "--kind",
                "sleep",
                "--args",
                r#"{"seconds": 1}"#,
            ],
        )
        .await,
    );
    assert_eq!(cron["name"], "nightly");
    let table = regsweep(url, &["crons", "list"]).await;
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.starts_with("NAME"), "{text}");
    assert!(text.contains("nightly") && text.contains("joblogs-gc"), "{text}");
}

#[tokio::test]
async fn errors_are_one_clear_line_and_a_failing_exit_code() {
    let db = TestDb::create().await;
    let scheduler = Scheduler::start(&db, &[]).await;
    let url = scheduler.url.as_str();

    let bad =
        regsweep(url, &["jobs", "create", "--kind", "sleep", "--args", r#"{"seconds": -1}"#]).await;
    assert!(!bad.status.success());
    assert_eq!(
        String::from_utf8_lossy(&bad.stderr).trim(),
        "error: invalid request: args.seconds: must be between 0 and 86400, got -1"
    );
    let missing = regsweep(url, &["jobs", "get", "77"]).await;
    assert_eq!(String::from_utf8_lossy(&missing.stderr).trim(), "error: job 77 not found");

    // Nothing listens on port 9 of localhost.
    let down = regsweep("http://127.0.0.1:9", &["jobs", "list"]).await;
    assert!(!down.status.success());
    let stderr = String::from_utf8_lossy(&down.stderr);
    assert!(
        stderr.starts_with("error: cannot reach the scheduler at http://127.0.0.1:9"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(!stderr.contains("panicked"));
}
