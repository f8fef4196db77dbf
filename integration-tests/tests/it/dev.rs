//! `regsweep dev`, and how every service fails to start on a database it
//! cannot use.

use std::time::Duration;

use chrono::Utc;
use nix::sys::signal::Signal;
use regsweep_integration_tests::process::bin;
use regsweep_integration_tests::{Dev, TestDb, TestRegistry, wait_until};
use regsweep_proto::v1::policy_service_client::PolicyServiceClient;
use regsweep_proto::v1::repository_service_client::RepositoryServiceClient;
use regsweep_proto::v1::scrubber_service_client::ScrubberServiceClient;
use regsweep_proto::v1::{self, DeletionStatus, JobStatus, job_service_client::JobServiceClient};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::{create, get, wait_status};

async fn serving(url: &str, service: &str) -> ServingStatus {
    let request = HealthCheckRequest { service: service.into() };
    let reply = HealthClient::new(Dev::channel(url).await).check(request).await.expect("health");
    reply.into_inner().status()
}

async fn pending(scrubber: &str) -> Vec<v1::Deletion> {
    let request = v1::ListDeletionsRequest {
        status: DeletionStatus::PendingDelete.into(),
        ..Default::default()
    };
    let mut client = ScrubberServiceClient::new(Dev::channel(scrubber).await);
    client.list_deletions(request).await.expect("list deletions").into_inner().deletions
}

#[tokio::test(flavor = "multi_thread")]
async fn dev_runs_every_service_and_keeps_its_data_across_a_restart() {
    let registry = TestRegistry::start().await;
    let repo = "team/app";
    let day = chrono::Duration::days(1);
    for (tag, age) in [("v1", 30), ("v2", 20), ("v3", 10)] {
        registry.push_image(repo, &[tag], Some(Utc::now() - day * age), tag).await;
    }
    let dir = tempfile::tempdir().expect("data dir");
    let mut dev = Dev::start(dir.path(), &["--registry", &registry.url(), "--delay", "1h"]).await;
    for (url, service) in [
        (&dev.scheduler_url, "regsweep.v1.JobService"),
        (&dev.scheduler_url, "regsweep.v1.PolicyService"),
        (&dev.scrubber_url, "regsweep.v1.ScrubberService"),
    ] {
        assert_eq!(serving(url, service).await, ServingStatus::Serving, "{service}");
    }

    let mut jobs = JobServiceClient::new(Dev::channel(&dev.scheduler_url).await);
    let job = create(&mut jobs, "sleep", serde_json::json!({"seconds": 0.2})).await;
    wait_status(&jobs, job.id, JobStatus::Done, Duration::from_secs(20)).await;

    // `--registry` added the registry and read its catalog.
    let repositories = RepositoryServiceClient::new(Dev::channel(&dev.scheduler_url).await);
    wait_until("the registry's catalog", Duration::from_secs(20), || {
        let mut repositories = repositories.clone();
        async move {
            let request =
                v1::ListRepositoriesRequest { registry: "local".into(), ..Default::default() };
            let listed = repositories.list_repositories(request).await.ok()?.into_inner();
            listed.repositories.iter().any(|r| r.name == repo).then_some(())
        }
    })
    .await;
    let mut policies = PolicyServiceClient::new(Dev::channel(&dev.scheduler_url).await);
    let policy = v1::Policy {
        name: "keep-one".into(),
        registry: "local".into(),
        repository_selector: "team/*".into(),
        cadence: "7d".into(),
        keep_n: 1,
        name_regex_delete: "v.*".into(),
        max_delete_fraction: 1.0,
        ..Default::default()
    };
    let request =
        v1::CreatePolicyRequest { policy: Some(policy), live: true, ..Default::default() };
    policies.create_policy(request).await.expect("policy");
    policies.run_policy(v1::RunPolicyRequest { name: "keep-one".into() }).await.expect("run");
    let planned = wait_until("the cleanup's plan", Duration::from_secs(30), || {
        let scrubber = dev.scrubber_url.clone();
        async move {
            let pending = pending(&scrubber).await;
            (pending.len() == 2).then_some(pending)
        }
    })
    .await;
    // Its console shows them, without sign-in (dev asks for no token).
    let page = reqwest::get(format!("{}/deletions", dev.console_url)).await.expect("console");
    assert_eq!(page.status(), 200);
    let page = page.text().await.expect("page");
    for d in &planned {
        assert!(
            page.contains(&format!("id=\"deletion-{}\"", d.id)),
            "deletion {} on the console",
            d.id
        );
    }

    dev.process.signal(Signal::SIGINT);
    assert!(dev.process.wait_exit(Duration::from_secs(30)).await.success(), "clean exit");
    for tag in ["v1", "v2", "v3"] {
        assert!(registry.tag_digest(repo, tag).await.is_some(), "{tag} waits out its delay");
    }

    let dev = Dev::start(dir.path(), &[]).await;
    let mut jobs = JobServiceClient::new(Dev::channel(&dev.scheduler_url).await);
    assert_eq!(get(&mut jobs, job.id).await.status(), JobStatus::Done);
    let mut policies = PolicyServiceClient::new(Dev::channel(&dev.scheduler_url).await);
    let kept = policies.get_policy(v1::GetPolicyRequest { name: "keep-one".into() }).await;
    assert_eq!(kept.expect("policy kept").into_inner().policy.expect("policy").keep_n, 1);
    let ids = |d: &[v1::Deletion]| d.iter().map(|d| d.id).collect::<Vec<_>>();
    assert_eq!(ids(&pending(&dev.scrubber_url).await), ids(&planned), "pending deletions kept");
}

/// Runs `binary` with `args` to its end; returns whether it succeeded and
/// what it wrote to stderr.
async fn run(binary: &str, args: &[&str]) -> (bool, String) {
    let output = tokio::process::Command::new(bin(binary))
        .args(args)
        .env("RUST_LOG", "info")
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {binary}: {e}"));
    (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
}

fn refused(outcome: (bool, String), expected: &str) {
    let (ok, stderr) = outcome;
    assert!(!ok, "started anyway: {stderr}");
    assert!(stderr.contains(expected), "expected {expected:?} in: {stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unusable_databases_fail_at_start_with_a_clear_message() {
    for binary in ["regsweep-scheduler", "regsweep-scrubber"] {
        let url = "mysql://root:hunter2@127.0.0.1/regsweep";
        let outcome = run(binary, &["--migrate-only", "--database-url", url]).await;
        assert!(!outcome.1.contains("hunter2"), "the url's password was logged: {}", outcome.1);
        refused(outcome, "unsupported database url scheme \"mysql\"");
        let unwritable = "sqlite:///proc/regsweep/store.db";
        let outcome = run(binary, &["--migrate-only", "--database-url", unwritable]).await;
        refused(outcome, "cannot open sqlite database /proc/regsweep/store.db");
    }
    refused(
        run("regsweep", &["dev", "--data-dir", "/proc/regsweep-data"]).await,
        "cannot create data directory /proc/regsweep-data",
    );
}

/// Marks `db`'s schemas as migrated by a version that does not exist yet.
async fn from_the_future(db: &TestDb) {
    let future =
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
                  VALUES (99999, 'from a newer regsweep', true, x'00', 0)";
    match db.store {
        regsweep_integration_tests::db::Store::Sqlite => {
            for url in [&db.url, &db.scrubber_url] {
                let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(url)
                    .await
                    .expect("open sqlite");
                sqlx::query(future).execute(&mut conn).await.expect("insert migration");
            }
        }
        regsweep_integration_tests::db::Store::Postgres => {
            let pool = db.scheduler_pool().await;
            for schema in ["scheduler", "scrubber"] {
                let sql = future
                    .replace("_sqlx_migrations", &format!("{schema}._sqlx_migrations"))
                    .replace("x'00'", "'\\x00'::bytea");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&pool)
                    .await
                    .expect("insert migration");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_schema_from_a_newer_version_is_refused_on_both_stores() {
    for db in [TestDb::postgres().await, TestDb::sqlite()] {
        let targets = [("regsweep-scheduler", &db.url), ("regsweep-scrubber", &db.scrubber_url)];
        for (binary, url) in targets {
            let (ok, stderr) = run(binary, &["--migrate-only", "--database-url", url]).await;
            assert!(ok, "{binary} migrates a new database: {stderr}");
        }
        from_the_future(&db).await;
        for (binary, url) in targets {
            let outcome = run(binary, &["--migrate-only", "--database-url", url]).await;
            refused(outcome, "schema is newer than this regsweep (it has migration 99999");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sqlite_store_serves_one_process_at_a_time() {
    let db = TestDb::sqlite();
    let mut scheduler = regsweep_integration_tests::Scheduler::start(&db, &[]).await;
    let second = run("regsweep-scheduler", &["--migrate-only", "--database-url", &db.url]).await;
    refused(second, "is in use by another process");
    scheduler.process.signal(Signal::SIGTERM);
    assert!(scheduler.process.wait_exit(Duration::from_secs(30)).await.success());
    let (ok, stderr) =
        run("regsweep-scheduler", &["--migrate-only", "--database-url", &db.url]).await;
    assert!(ok, "the store is free once its process ended: {stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn dev_names_the_service_that_cannot_start_and_why() {
    let dir = tempfile::tempdir().expect("data dir");
    let store = dir.path().join("scheduler.db");
    let url = format!("sqlite://{}", store.display());
    let (ok, stderr) = run("regsweep-scheduler", &["--migrate-only", "--database-url", &url]).await;
    assert!(ok, "the scheduler migrates a new database: {stderr}");
    let mut conn =
        <sqlx::SqliteConnection as sqlx::Connection>::connect(&url).await.expect("open sqlite");
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (99999, 'from a newer regsweep', true, x'00', 0)",
    )
    .execute(&mut conn)
    .await
    .expect("insert migration");
    drop(conn);

    // The scheduler closes its listener as it fails, which also ends the
    // health watch dev waits on: its own error must still be the one shown,
    // every time (the two used to race).
    let data_dir = dir.path().display().to_string();
    let args = [
        "dev",
        "--data-dir",
        &data_dir,
        "--scheduler-listen",
        "127.0.0.1:0",
        "--scrubber-listen",
        "127.0.0.1:0",
        "--console-listen",
        "",
    ];
    for _ in 0..5 {
        let (ok, stderr) = run("regsweep", &args).await;
        assert!(!ok, "dev started anyway: {stderr}");
        assert!(stderr.contains("the scheduler could not start"), "{stderr}");
        assert!(stderr.contains("schema is newer than this regsweep"), "{stderr}");
    }
}
