//! Traces and metrics of one cleanup across the three services: the spans
//! reach an OTLP receiver as one trace with the right parents, and the
//! Prometheus endpoints expose the documented series, which move as jobs
//! run.

use std::collections::HashMap;
use std::time::Duration;

use regsweep_integration_tests::otlp::{OtlpReceiver, ReceivedSpan};
use regsweep_integration_tests::{Scheduler, Scrubber, TestDb, TestRegistry, Worker, wait_until};
use regsweep_proto::v1;

use crate::policies::{create_policy, run_policy, sync};

const WAIT: Duration = Duration::from_secs(60);

/// The three services on one database with a real registry holding
/// `team/app:v1` (9 days old) and `:v2`, a policy keeping one tag, and
/// every service's metrics on a local port.
struct Cleanup {
    registry: TestRegistry,
    _db: TestDb,
    scheduler: Scheduler,
    scrubber: Scrubber,
    worker: Worker,
}

impl Cleanup {
    async fn start(envs: &[(&str, &str)]) -> Self {
        let registry = TestRegistry::start().await;
        let old = chrono::Utc::now() - chrono::Duration::days(9);
        registry.push_image("team/app", &["v1"], Some(old), "v1").await;
        registry.push_image("team/app", &["v2"], Some(chrono::Utc::now()), "v2").await;
        let db = TestDb::create().await;
        let metrics = ["--metrics-addr", "127.0.0.1:0", "--metrics-interval", "200ms"];
        let mut extra = vec!["--tick", "200ms"];
        extra.extend(metrics);
        let scheduler = Scheduler::launch_with_env("scheduler", &db.url, &extra, envs, true).await;
        let mut extra = vec!["--delay", "0s"];
        extra.extend(metrics);
        let scrubber = Scrubber::start_with_env("scrubber", &db, &scheduler, &extra, envs).await;
        let extra = ["--scrubber", &scrubber.url, "--metrics-addr", "127.0.0.1:0"];
        let worker = Worker::start_with_env(&scheduler, "w1", &extra, envs).await;
        let definition =
            v1::Registry { name: "local".into(), url: registry.url(), ..Default::default() };
        scheduler
            .registries()
            .await
            .create_registry(v1::CreateRegistryRequest {
                registry: Some(definition),
                ..Default::default()
            })
            .await
            .expect("create registry");
        sync(&scheduler, "local").await;
        let policy = v1::Policy {
            name: "team".into(),
            registry: "local".into(),
            repository_selector: "team/*".into(),
            cadence: "1d".into(),
            keep_n: 1,
            ..Default::default()
        };
        create_policy(&scheduler, policy).await;
        Self { registry, _db: db, scheduler, scrubber, worker }
    }

    /// Runs the policy and waits until `v1` is gone from the registry.
    async fn run(&self) {
        run_policy(&self.scheduler, "team").await;
        let registry = &self.registry;
        wait_until("v1 scrubbed", WAIT, || async move {
            registry.tag_digest("team/app", "v1").await.is_none().then_some(())
        })
        .await;
        assert!(self.registry.tag_digest("team/app", "v2").await.is_some(), "v2 was kept");
    }
}

/// The spans of `trace_id` by span id.
fn trace_of<'a>(spans: &'a [ReceivedSpan], trace_id: &str) -> HashMap<&'a str, &'a ReceivedSpan> {
    spans.iter().filter(|s| s.trace_id == trace_id).map(|s| (s.span_id.as_str(), s)).collect()
}

/// `span` and its ancestors, nearest first, as far as they were received.
fn ancestry<'a>(
    trace: &HashMap<&str, &'a ReceivedSpan>,
    span: &'a ReceivedSpan,
) -> Vec<&'a ReceivedSpan> {
    let mut chain = vec![span];
    while let Some(parent) = trace.get(chain[chain.len() - 1].parent_span_id.as_str()) {
        chain.push(parent);
    }
    chain
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_run_is_one_trace_from_the_selection_to_the_deletions() {
    let receiver = OtlpReceiver::start().await;
    let envs = receiver.envs("100");
    let cleanup = Cleanup::start(&envs).await;
    cleanup.run().await;

    // The deletion's span names the trace; wait until the whole chain from
    // the policy run down to it has arrived.
    let chain = receiver
        .wait_for("a scrub span linked up to its policy run", WAIT, |spans| {
            let scrub = spans
                .iter()
                .find(|s| s.name == "scrub" && s.attribute("repository") == Some("team/app"))?;
            let trace = trace_of(spans, &scrub.trace_id);
            let chain: Vec<ReceivedSpan> = ancestry(&trace, scrub).into_iter().cloned().collect();
            chain.last().is_some_and(|root| root.name == "policy_run").then_some(chain)
        })
        .await;
    let path: Vec<(String, String)> =
        chain.iter().rev().map(|s| (s.service.clone(), s.name.clone())).collect();
    let service = |s: &str| s.to_string();
    assert_eq!(
        path,
        [
            (service("regsweep-scheduler"), service("policy_run")),
            (service("regsweep-scheduler"), service("dispatch")),
            (service("regsweep-worker"), service("job tag_cleanup")),
            (service("regsweep-scrubber"), service("/regsweep.v1.ScrubberService/SubmitDeletions")),
            (service("regsweep-scrubber"), service("scrub")),
        ],
        "the trace from the policy run to the deletion"
    );
    let root = &chain[chain.len() - 1];
    assert!(root.parent_span_id.is_empty(), "the policy run is the root");
    let job = &chain[2];
    assert_eq!(job.attribute("kind"), Some("tag_cleanup"));

    // The worker's registry calls are in the same trace, under the job.
    let spans = receiver.spans();
    let trace = trace_of(&spans, &root.trace_id);
    let registry_calls: Vec<_> = trace
        .values()
        .filter(|s| s.name == "registry_request" && s.service == "regsweep-worker")
        .collect();
    assert!(!registry_calls.is_empty(), "no registry call in the trace");
    for call in registry_calls {
        assert!(
            ancestry(&trace, call).iter().any(|s| s.span_id == job.span_id),
            "registry call {call:?} is not under the job"
        );
    }
    // Nothing of another run leaked in: one policy run, one root.
    let roots: Vec<_> = trace.values().filter(|s| s.parent_span_id.is_empty()).collect();
    assert_eq!(roots.len(), 1, "one root in the trace: {roots:?}");
}

/// The value of the series `name{labels}` in a Prometheus text page.
fn value(page: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    page.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (series_name, rest) = series.split_once('{').unwrap_or((series, ""));
        if series_name != name {
            return None;
        }
        let all = labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
        all.then(|| value.parse().ok()).flatten()
    })
}

async fn scrape(addr: &str) -> String {
    let response = reqwest::get(format!("http://{addr}/metrics")).await.expect("scrape");
    assert!(response.status().is_success());
    let content_type = response.headers()["content-type"].to_str().unwrap_or_default().to_string();
    assert!(content_type.starts_with("text/plain"), "content type {content_type}");
    response.text().await.expect("metrics page")
}

fn metrics_addr(service: &regsweep_integration_tests::Service) -> String {
    let line = service.logs().into_iter().find(|l| l.contains("serving metrics"));
    let line: serde_json::Value =
        serde_json::from_str(&line.expect("a serving metrics line")).expect("json");
    line["addr"].as_str().expect("addr").to_string()
}

/// Waits until the page of `addr` has `name{labels}` at `at_least`.
async fn wait_metric(addr: &str, name: &str, labels: &[(&str, &str)], at_least: f64) -> String {
    wait_until(&format!("{name}{labels:?} >= {at_least}"), WAIT, || async move {
        let page = scrape(addr).await;
        value(&page, name, labels).is_some_and(|v| v >= at_least).then_some(page)
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_metrics_endpoints_expose_every_series_and_move_as_jobs_run() {
    let cleanup = Cleanup::start(&[]).await;
    let scheduler = metrics_addr(&cleanup.scheduler.process);
    let worker = metrics_addr(&cleanup.worker.process);
    let scrubber = metrics_addr(&cleanup.scrubber.process);
    let before = scrape(&scheduler).await;
    let claimed =
        |page: &str| value(page, "regsweep_jobs_claimed_total", &[("kind", "tag_cleanup")]);
    assert_eq!(claimed(&before), None, "no cleanup was claimed yet");
    let worker_before = scrape(&worker).await;
    let done = [("kind", "tag_cleanup"), ("status", "done")];
    assert_eq!(value(&worker_before, "regsweep_worker_jobs_total", &done), None);

    cleanup.run().await;

    // The scheduler: claims, the queue, workers, the selection, the store.
    let page = wait_metric(&scheduler, "regsweep_jobs", &done, 1.0).await;
    assert_eq!(claimed(&page), Some(1.0));
    for name in [
        "regsweep_claim_latency_seconds_bucket",
        "regsweep_queue_depth",
        "regsweep_queue_oldest_age_seconds",
        "regsweep_heartbeat_expirations_total",
        "regsweep_heartbeat_expired_attempts_total",
        "regsweep_cleanup_running",
        "regsweep_cleanup_remaining",
        "regsweep_repositories_overdue",
        "regsweep_repositories_overdue_seconds",
    ] {
        assert!(value(&page, name, &[]).is_some(), "scheduler lacks {name}:\n{page}");
    }
    assert_eq!(value(&page, "regsweep_workers_connected", &[]), Some(1.0));
    assert_eq!(value(&page, "regsweep_leader", &[]), Some(1.0));
    assert_eq!(value(&page, "regsweep_cleanup_capacity", &[]), Some(4.0));
    assert_eq!(value(&page, "regsweep_queue_depth", &[("kind", "tag_cleanup")]), Some(0.0));
    assert!(
        value(&page, "regsweep_db_operation_seconds_count", &[("operation", "claim")])
            .is_some_and(|n| n >= 1.0),
        "claims are measured"
    );
    assert!(
        value(&page, "regsweep_db_operation_seconds_count", &[("operation", "select_cleanups")])
            .is_some_and(|n| n >= 1.0),
        "the selection is measured"
    );

    // The worker: the attempt it ran, and the registry's answers.
    let page = scrape(&worker).await;
    assert_eq!(value(&page, "regsweep_worker_jobs_total", &done), Some(1.0));
    let host = cleanup.registry.url().trim_start_matches("http://").to_string();
    let ok = [("registry", host.as_str()), ("method", "GET"), ("code", "200")];
    assert!(value(&page, "regsweep_registry_requests_total", &ok).is_some_and(|n| n >= 1.0));
    assert_eq!(value(&page, "regsweep_worker_running_jobs", &[("kind", "tag_cleanup")]), Some(0.0));

    // The scrubber: the deletion, its status, the registry's limits.
    let deleted = [("outcome", "deleted")];
    let page = wait_metric(&scrubber, "regsweep_deletions", &[("status", "deleted")], 1.0).await;
    assert_eq!(value(&page, "regsweep_deletions_total", &deleted), Some(1.0));
    assert_eq!(value(&page, "regsweep_deletions_total", &[("outcome", "failed")]), Some(0.0));
    let accepted = [("registry", host.as_str()), ("method", "DELETE"), ("code", "202")];
    assert!(value(&page, "regsweep_registry_requests_total", &accepted).is_some_and(|n| n >= 1.0));
    for name in [
        "regsweep_registry_concurrency",
        "regsweep_registry_max_concurrency",
        "regsweep_registry_in_flight",
        "regsweep_registry_rate_limit",
    ] {
        assert!(value(&page, name, &[("registry", "local")]).is_some(), "scrubber lacks {name}");
    }
    assert!(
        value(&page, "regsweep_db_operation_seconds_count", &[("operation", "claim_deletions")])
            .is_some_and(|n| n >= 1.0)
    );
    assert!(page.contains("# HELP regsweep_deletions_total"), "series are described");
}

#[tokio::test(flavor = "multi_thread")]
async fn spans_still_buffered_are_exported_at_shutdown() {
    let receiver = OtlpReceiver::start().await;
    // Nothing is exported on a timer within the test.
    let envs = receiver.envs("600000");
    let db = TestDb::create().await;
    let mut scheduler = Scheduler::launch_with_env("scheduler", &db.url, &[], &envs, true).await;
    let args = regsweep_proto::json_to_struct(serde_json::json!({"seconds": 0}));
    let request =
        v1::CreateJobRequest { kind: "sleep".into(), args: Some(args), ..Default::default() };
    scheduler.jobs().await.create_job(request).await.expect("create job");
    let create = "/regsweep.v1.JobService/CreateJob";
    assert!(receiver.spans().iter().all(|s| s.name != create), "exported before shutdown");

    scheduler.process.signal(nix::sys::signal::Signal::SIGTERM);
    let status = scheduler.process.wait_exit(WAIT).await;
    assert!(status.success(), "scheduler exited with {status}");
    let spans = receiver.spans();
    let rpc = spans.iter().find(|s| s.name == create).expect("the rpc span, flushed at exit");
    assert_eq!(rpc.service, "regsweep-scheduler");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cli_command_is_the_root_of_the_rpcs_it_makes() {
    let receiver = OtlpReceiver::start().await;
    let envs = receiver.envs("100");
    let db = TestDb::create().await;
    let scheduler = Scheduler::launch_with_env("scheduler", &db.url, &[], &envs, true).await;
    let created =
        tokio::process::Command::new(regsweep_integration_tests::process::bin("regsweep"))
            .args(["--scheduler", &scheduler.url, "jobs", "create", "--kind", "sleep"])
            .args(["--args", r#"{"seconds": 0}"#])
            .envs(envs)
            .output()
            .await
            .expect("run regsweep");
    let stderr = String::from_utf8_lossy(&created.stderr);
    assert!(created.status.success(), "{stderr}");
    assert!(stderr.is_empty(), "exporting keeps the cli's output its own: {stderr}");

    // The CLI flushes its spans before it exits.
    let spans = receiver.spans();
    let command = spans
        .iter()
        .find(|s| s.service == "regsweep")
        .unwrap_or_else(|| panic!("no span from the cli in {spans:?}"));
    assert_eq!(command.name, "regsweep jobs create");
    assert!(command.parent_span_id.is_empty(), "the command is the root");
    let create = "/regsweep.v1.JobService/CreateJob";
    let rpc = receiver
        .wait_for("the scheduler's CreateJob span", WAIT, |spans| {
            spans.iter().find(|s| s.name == create).cloned()
        })
        .await;
    assert_eq!(rpc.service, "regsweep-scheduler");
    assert_eq!(rpc.trace_id, command.trace_id);
    assert_eq!(rpc.parent_span_id, command.span_id);
}
