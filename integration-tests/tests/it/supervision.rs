//! A task a service cannot work without that dies stops the service: its
//! health turns NOT_SERVING, its log names the task and how it ended, and
//! the process exits non-zero so that its orchestrator restarts it. The
//! services' test hook (`REGSWEEP_TEST_HOOK_FAIL_TASK`) makes the named
//! task panic on SIGUSR1.

use std::time::Duration;

use nix::sys::signal::Signal;
use regsweep_common::supervisor::TEST_HOOK;
use regsweep_integration_tests::{Dev, Scheduler, Scrubber, TestDb};
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

const ARMED: &str = "test hook armed: sigusr1 makes this task panic";
const FAILED: &str = "critical task ended, shutting down";

/// Watches `service`'s health: the statuses as they come.
async fn watch(
    channel: Channel,
    service: &str,
) -> tonic::Streaming<tonic_health::pb::HealthCheckResponse> {
    let request = HealthCheckRequest { service: service.into() };
    HealthClient::new(channel).watch(request).await.expect("health watch").into_inner()
}

async fn next_status(
    watch: &mut tonic::Streaming<tonic_health::pb::HealthCheckResponse>,
) -> ServingStatus {
    let reply = tokio::time::timeout(Duration::from_secs(20), watch.message())
        .await
        .expect("a health status within 20s")
        .expect("health stream")
        .expect("a status before the stream ends");
    reply.status()
}

#[tokio::test]
async fn a_scheduler_whose_dispatcher_dies_stops_serving_and_exits_non_zero() {
    let db = TestDb::create().await;
    let flags = ["--shutdown-timeout", "1s"];
    let envs = [(TEST_HOOK, "dispatcher")];
    let mut scheduler = Scheduler::launch_with_env("scheduler", &db.url, &flags, &envs, true).await;
    scheduler.process.wait_for_message(ARMED, Duration::from_secs(20)).await;
    let mut health = watch(scheduler.channel().await, "regsweep.v1.JobService").await;
    assert_eq!(next_status(&mut health).await, ServingStatus::Serving);

    scheduler.process.signal(Signal::SIGUSR1);
    assert_eq!(next_status(&mut health).await, ServingStatus::NotServing);
    // The listener, whose events went to the dispatcher, may end first
    // (its channel closed with the dispatcher): both are logged.
    let dispatcher = |v: &serde_json::Value| v["message"] == FAILED && v["task"] == "dispatcher";
    let failed = scheduler.process.wait_for_log(FAILED, Duration::from_secs(20), dispatcher).await;
    assert!(failed["how"].as_str().is_some_and(|how| how.starts_with("panicked")), "{failed}");
    let exit = scheduler.process.wait_exit(Duration::from_secs(30)).await;
    assert!(!exit.success(), "a scheduler that lost its dispatcher exited {exit}");
}

/// Fails the scrubber's task `hooked` through the test hook and waits for
/// the supervisor to report its critical task `reported` and the process
/// to exit non-zero.
async fn scrubber_exits_non_zero_when(hooked: &str, reported: &str) {
    let db = TestDb::create().await;
    let scheduler = Scheduler::start(&db, &[]).await;
    let envs = [(TEST_HOOK, hooked)];
    let flags = ["--shutdown-timeout", "1s"];
    let mut scrubber = Scrubber::start_with_env("scrubber", &db, &scheduler, &flags, &envs).await;
    scrubber.process.wait_for_message(ARMED, Duration::from_secs(20)).await;
    scrubber.process.signal(Signal::SIGUSR1);
    let failed = scrubber.process.wait_for_message(FAILED, Duration::from_secs(20)).await;
    assert_eq!(failed["task"], reported);
    let exit = scrubber.process.wait_exit(Duration::from_secs(30)).await;
    assert!(!exit.success(), "a scrubber that lost its {hooked} exited {exit}");
}

#[tokio::test]
async fn a_scrubber_whose_runner_dies_exits_non_zero() {
    scrubber_exits_non_zero_when("runner", "runner").await;
}

/// `regsweep dev` runs every service in one process: one that stops on
/// its own stops it all, and it exits non-zero.
#[tokio::test]
async fn regsweep_dev_stops_when_one_of_its_services_dies() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut dev = Dev::start_with_env(dir.path(), &[], &[(TEST_HOOK, "dispatcher")]).await;
    dev.process.wait_for_message(ARMED, Duration::from_secs(20)).await;
    dev.process.signal(Signal::SIGUSR1);
    dev.process
        .wait_for_message(
            "a service stopped on its own, stopping regsweep dev",
            Duration::from_secs(20),
        )
        .await;
    let exit = dev.process.wait_exit(Duration::from_secs(60)).await;
    assert!(!exit.success(), "regsweep dev exited {exit}");
}

/// The runner watches its own helpers: one whose outcome writer died
/// (deletions could no longer be recorded) stops, and the process exits
/// non-zero rather than scrub on with nothing written.
#[tokio::test]
async fn a_scrubber_whose_outcome_writer_dies_exits_non_zero() {
    scrubber_exits_non_zero_when("outcome writer", "runner").await;
}
