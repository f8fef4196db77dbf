//! A registry password given to the services appears in no log line and
//! no API response, over a whole run: sync, preview, cleanup, scrub.

use std::time::Duration;

use regsweep_integration_tests::authproxy::{AuthProxy, Mode};
use regsweep_integration_tests::{Scheduler, Scrubber, TestDb, TestRegistry, Worker, wait_until};
use regsweep_proto::v1;

use crate::policies::{create_policy, sync};

const PASSWORD: &str = "pa55-xyzzy-7c1e";

#[tokio::test(flavor = "multi_thread")]
async fn a_registry_password_never_leaves_the_processes_that_use_it() {
    let registry = TestRegistry::start().await;
    registry
        .push_image("team/app", &["v1"], Some(chrono::Utc::now() - chrono::Duration::days(9)), "v1")
        .await;
    registry.push_image("team/app", &["v2"], Some(chrono::Utc::now()), "v2").await;
    let proxy = AuthProxy::start(
        &registry.url(),
        Mode::Basic { username: "alice".into(), password: PASSWORD.into() },
    )
    .await;
    let db = TestDb::create().await;
    let scheduler = Scheduler::start(&db, &["--tick", "200ms"]).await;
    let envs = [("REGSWEEP_TEST_REGISTRY_PASSWORD", PASSWORD)];
    let scrubber =
        Scrubber::start_with_env("scrubber", &db, &scheduler, &["--delay", "0s"], &envs).await;
    let worker =
        Worker::start_with_env(&scheduler, "w1", &["--scrubber", &scrubber.url], &envs).await;
    let definition = v1::Registry {
        name: "private".into(),
        url: proxy.url(),
        credentials: Some(v1::RegistryCredentials {
            username: "alice".into(),
            password_env: "REGSWEEP_TEST_REGISTRY_PASSWORD".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut registries = scheduler.registries().await;
    registries
        .create_registry(v1::CreateRegistryRequest {
            registry: Some(definition),
            ..Default::default()
        })
        .await
        .expect("create registry");
    sync(&scheduler, "private").await;
    create_policy(
        &scheduler,
        v1::Policy {
            name: "team".into(),
            registry: "private".into(),
            repository_selector: "team/*".into(),
            cadence: "1d".into(),
            keep_n: 1,
            ..Default::default()
        },
    )
    .await;
    let mut responses = Vec::new();
    let preview = crate::policies::preview(&scheduler, "team", "team/app").await;
    responses.push(format!("{preview:?}"));
    crate::policies::run_policy(&scheduler, "team").await;
    wait_until("v1 scrubbed", Duration::from_secs(30), || {
        let registry = &registry;
        async move { registry.tag_digest("team/app", "v1").await.is_none().then_some(()) }
    })
    .await;
    assert!(registry.tag_digest("team/app", "v2").await.is_some());

    // Every API answer that could carry it.
    let got = registries
        .get_registry(v1::GetRegistryRequest { name: "private".into() })
        .await
        .expect("get");
    responses.push(format!("{:?}", got.into_inner()));
    let listed =
        scheduler.jobs().await.list_jobs(v1::ListJobsRequest::default()).await.expect("jobs");
    responses.push(format!("{:?}", listed.into_inner()));
    let deletions = scrubber
        .client()
        .await
        .list_deletions(v1::ListDeletionsRequest::default())
        .await
        .expect("list");
    responses.push(format!("{:?}", deletions.into_inner()));
    for response in &responses {
        assert!(!response.contains(PASSWORD), "the password is in an API response: {response}");
    }
    // Every log line of every process.
    for (name, lines) in [
        ("scheduler", scheduler.process.logs()),
        ("worker", worker.process.logs()),
        ("scrubber", scrubber.process.logs()),
    ] {
        assert!(!lines.is_empty(), "{name} logged nothing");
        for line in lines {
            assert!(!line.contains(PASSWORD), "{name} logged the password: {line}");
            // JSON logs parse, line by line.
            serde_json::from_str::<serde_json::Value>(&line)
                .unwrap_or_else(|e| panic!("{name}: {e}: {line}"));
        }
    }
}
