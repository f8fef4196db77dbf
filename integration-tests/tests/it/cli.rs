//! The `regsweep` CLI against a real scheduler: what scripts rely on.

use std::process::Output;
use std::time::Duration;

use regsweep_integration_tests::process::bin;
use regsweep_integration_tests::tcpproxy::TcpProxy;
use regsweep_integration_tests::{Scheduler, TestDb, Worker};
use regsweep_proto::v1::JobStatus;
use tokio::io::AsyncBufReadExt as _;

use crate::wait_status;

pub async fn regsweep(scheduler: &str, args: &[&str]) -> Output {
    tokio::process::Command::new(bin("regsweep"))
        .arg("--scheduler")
        .arg(scheduler)
        .args(args)
        .output()
        .await
        .expect("run regsweep")
}

pub fn json(output: &Output) -> serde_json::Value {
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

#[tokio::test(flavor = "multi_thread")]
async fn registries_policies_and_previews_from_the_command_line() {
    let registry = regsweep_integration_tests::TestRegistry::start().await;
    let old = chrono::Utc::now() - chrono::Duration::days(30);
    registry.push_image("team/app", &["v1"], Some(old), "v1").await;
    registry.push_image("team/app", &["v2"], Some(old), "v2").await;
    let db = TestDb::create().await;
    let scheduler = Scheduler::start(&db, &[]).await;
    let _worker = Worker::start(&scheduler, "w", &[]).await;
    let url = scheduler.url.as_str();
    let out = |args: &'static [&'static str]| regsweep(url, args);

    let registry_url = registry.url();
    let created = json(
        &regsweep(
            url,
            &[
                "--output",
                "json",
                "registries",
                "create",
                "--name",
                "local",
                "--url",
                &registry_url,
            ],
        )
        .await,
    );
    assert_eq!(created[0]["name"], "local");
    let synced =
        json(&out(&["--output", "json", "repositories", "sync", "--registry", "local"]).await);
    let job_id: i64 = synced["id"].as_str().expect("id").parse().expect("int");
    wait_status(&scheduler.jobs().await, job_id, JobStatus::Done, Duration::from_secs(10)).await;
    let policy = json(
        &out(&[
            "--output",
            "json",
            "policies",
            "create",
            "--name",
            "team",
            "--registry",
            "local",
            "--selector",
            "team/*",
            "--cadence",
            "7d",
            "--keep-n",
            "1",
            "--older-than",
            "7d",
            "--dry-run",
        ])
        .await,
    );
    assert_eq!(policy[0]["repository_count"], "1");
    assert_eq!(policy[0]["dry_run"], true);
    let preview = json(
        &out(&[
            "--output",
            "json",
            "policies",
            "preview",
            "--policy",
            "team",
            "--repository",
            "team/app",
        ])
        .await,
    );
    let decisions = preview["decisions"].as_array().expect("decisions");
    let field = |d: &serde_json::Value, k: &str| d[k].as_str().expect(k).to_string();
    let mut actions: Vec<(String, String, String)> =
        decisions.iter().map(|d| (field(d, "digest"), field(d, "tag"), field(d, "rule"))).collect();
    // Same age: ties go by digest, never by name.
    actions.sort();
    let rules: Vec<&str> = actions.iter().map(|(_, _, rule)| rule.as_str()).collect();
    assert_eq!(rules, ["keep_n", "delete"], "{actions:?}");
    assert!(decisions.iter().all(|d| d["kind"] == "image" && d["age_from"] == "created"));
    let table = out(&["repositories", "list", "--registry", "local"]).await;
    assert!(table.status.success());
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("team/app") && text.contains("unscheduled"), "{text}");

    // Bad input is refused with the field named, and nothing is created.
    let bad = out(&[
        "policies",
        "create",
        "--name",
        "bad",
        "--registry",
        "local",
        "--selector",
        "[",
        "--cadence",
        "2d",
    ])
    .await;
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("repository_selector") && stderr.contains("cadence"), "{stderr}");
    let listed = json(&out(&["--output", "json", "policies", "list"]).await);
    assert_eq!(listed.as_array().map(Vec::len), Some(1));

    // A catch-all below it is fine; one at the same priority is refused,
    // and the repository says which policy governs it and why.
    let create = |name: &'static str, selector: &'static str, priority: &'static str| {
        let args = ["policies", "create", "--name", name, "--registry", "local"];
        let rest = ["--selector", selector, "--cadence", "7d", "--keep-n", "1"];
        let all: Vec<&str> = args.into_iter().chain(rest).chain(["--priority", priority]).collect();
        async move { regsweep(url, &all).await }
    };
    assert!(create("all", "**", "-1").await.status.success());
    let overlap = create("dup", "team/**", "0").await;
    assert!(!overlap.status.success());
    let stderr = String::from_utf8_lossy(&overlap.stderr);
    assert!(
        stderr.contains(
            r#"policy.priority: overlaps policy "team" at priority 0: both select "team/a""#
        ),
        "{stderr}"
    );
    let table = out(&["repositories", "list", "--registry", "local"]).await;
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains(r#"selector "team/*" at priority 0, above "all" (priority -1)"#),
        "{text}"
    );
    let listed = String::from_utf8_lossy(&out(&["policies", "list"]).await.stdout).to_string();
    assert!(listed.contains("PRIORITY") && listed.contains("-1"), "{listed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn scrub_list_restore_and_status_from_the_command_line() {
    let registry = regsweep_integration_tests::TestRegistry::start().await;
    let digest = registry.push_image("app", &["v1"], None, "v1").await;
    let db = TestDb::create().await;
    let scheduler = Scheduler::start(&db, &[]).await;
    let definition = regsweep_proto::v1::Registry {
        name: "local".into(),
        url: registry.url(),
        ..Default::default()
    };
    scheduler
        .registries()
        .await
        .create_registry(regsweep_proto::v1::CreateRegistryRequest {
            registry: Some(definition),
            ..Default::default()
        })
        .await
        .expect("create registry");
    let scrubber = regsweep_integration_tests::Scrubber::start(
        "scrubber",
        &db,
        &scheduler,
        &["--delay", "1h"],
    )
    .await;
    let cleanup =
        regsweep_integration_tests::raw::HeldCleanup::start(&scheduler, "local", "app").await;
    let submitted = scrubber
        .client()
        .await
        .submit_deletions(cleanup.plan(vec![regsweep_proto::v1::ImageDeletion {
            digest: digest.clone(),
            tags: vec!["v1".into()],
            delete_digest: true,
            ..Default::default()
        }]))
        .await
        .expect("submit")
        .into_inner()
        .deletions;
    let id = submitted[0].id.to_string();
    let url = scheduler.url.as_str();
    let scrub = |args: Vec<&str>| {
        let mut all = vec!["--scrubber", scrubber.url.as_str()];
        all.extend(args);
        all.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let run = |args: Vec<String>| async move {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        regsweep(url, &refs).await
    };
    let listed = json(
        &run(scrub(vec!["--output", "json", "scrub", "list", "--status", "pending_delete"])).await,
    );
    assert_eq!(listed[0]["id"].as_str(), Some(id.as_str()));
    assert_eq!(listed[0]["image"]["digest"], digest);
    let restored =
        json(&run(scrub(vec!["--output", "json", "scrub", "restore", &id, "424242"])).await);
    assert_eq!(restored[0]["restored"], true);
    assert_eq!(restored[1]["reason"], "no such deletion");
    let status = json(&run(scrub(vec!["--output", "json", "scrub", "status"])).await);
    let counts = status["counts"].as_array().expect("counts");
    assert!(
        counts.iter().any(|c| c["status"] == "DELETION_STATUS_RESTORED" && c["count"] == "1"),
        "{status}"
    );
    let table = run(scrub(vec!["scrub", "list"])).await;
    assert!(String::from_utf8_lossy(&table.stdout).contains("restored"));
    assert_eq!(registry.tag_digest("app", "v1").await, Some(digest));
}

/// A running `jobs logs --follow` and its output.
struct Following {
    follow: tokio::process::Child,
    stdout: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    stderr: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStderr>>,
}

impl Following {
    /// The next line on stderr, within `within`.
    async fn error_line(&mut self, within: Duration) -> String {
        let line = tokio::time::timeout(within, self.stderr.next_line()).await;
        line.expect("a line on stderr in time").expect("stderr").expect("a line")
    }

    /// Every line left on stdout, each within `within` of the last, and
    /// that the follow then exits 0.
    async fn rest(mut self, within: Duration) -> Vec<String> {
        let mut rest = Vec::new();
        while let Some(line) = tokio::time::timeout(within, self.stdout.next_line())
            .await
            .expect("the follow goes on")
            .expect("stdout")
        {
            rest.push(line);
        }
        let status = self.follow.wait().await.expect("exit");
        assert!(status.success(), "{status}");
        rest
    }
}

/// Starts `jobs logs ID --follow` against `scheduler`, once it printed a
/// first line ending with `first`.
async fn follow(scheduler: &str, id: &str, first: &str) -> Following {
    use tokio::io::BufReader;
    let mut follow = tokio::process::Command::new(bin("regsweep"))
        .args(["--scheduler", scheduler, "jobs", "logs", id, "--follow"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("regsweep");
    let mut stdout = BufReader::new(follow.stdout.take().expect("stdout")).lines();
    let stderr = BufReader::new(follow.stderr.take().expect("stderr")).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), stdout.next_line()).await;
    let line = line.expect("a first line in time").expect("stdout").expect("a first line");
    assert!(line.ends_with(first), "{line}");
    Following { follow, stdout, stderr }
}

/// `jobs logs --follow` outlives a lost stream (a scheduler restarting, a
/// replica failing over): it follows again from the end of the last
/// message it got, and prints every line once.
#[tokio::test(flavor = "multi_thread")]
async fn a_follow_survives_a_lost_stream_and_prints_every_line_once() {
    let db = TestDb::create().await;
    let scheduler = Scheduler::start(&db, &[]).await;
    let _worker = Worker::start(&scheduler, "w", &[]).await;
    let args = ["--output", "json", "jobs", "create", "--kind", "sleep", "--args"];
    let args: Vec<&str> = args.into_iter().chain([r#"{"seconds": 3}"#]).collect();
    let created = json(&regsweep(&scheduler.url, &args).await);
    let id = created["job"]["id"].as_str().expect("int64 as string").to_string();
    let proxy = TcpProxy::start(scheduler.url.trim_start_matches("http://")).await;
    let mut following = follow(&format!("http://{}", proxy.addr()), &id, "sleeping for 3s").await;

    proxy.down();
    let lost = following.error_line(Duration::from_secs(20)).await;
    assert!(lost.starts_with("log stream lost"), "{lost}");
    proxy.up();

    let rest = following.rest(Duration::from_secs(20)).await;
    assert!(rest.len() == 1 && rest[0].ends_with("slept for 3s"), "{rest:?}");
}

/// A scheduler stopped gracefully ends a follow UNAVAILABLE, not as if the
/// job had ended: `jobs logs --follow` goes on once it is back, to the
/// job's real end.
#[tokio::test(flavor = "multi_thread")]
async fn a_follow_outlives_a_scheduler_stopped_gracefully() {
    let db = TestDb::create().await;
    let mut scheduler = Scheduler::start(&db, &[]).await;
    let addr = scheduler.addr().to_string();
    let _worker = Worker::start(&scheduler, "w", &[]).await;
    let args = ["--output", "json", "jobs", "create", "--kind", "sleep", "--args"];
    let args: Vec<&str> = args.into_iter().chain([r#"{"seconds": 4}"#]).collect();
    let created = json(&regsweep(&scheduler.url, &args).await);
    let id = created["job"]["id"].as_str().expect("int64 as string").to_string();
    let mut following = follow(&scheduler.url, &id, "sleeping for 4s").await;

    scheduler.process.signal(nix::sys::signal::Signal::SIGTERM);
    let lost = following.error_line(Duration::from_secs(20)).await;
    // The scheduler's own word that it stops, not the CLI's guess.
    assert!(lost.starts_with("log stream lost (scheduler shutting down"), "{lost}");
    scheduler.process.wait_exit(Duration::from_secs(20)).await;
    let _back = Scheduler::start_on("scheduler", &db, &addr, &[]).await;

    let rest = following.rest(Duration::from_secs(30)).await;
    assert!(rest.iter().any(|l| l.ends_with("slept for 4s")), "{rest:?}");
}
