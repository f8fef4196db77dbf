//! Time from a scrubber's SIGKILL to its deletions being taken over by
//! another replica, next to the documented bound (`--lease` plus one
//! `--poll-interval`), at several leases. The other replica is running
//! when the first is killed; the first is killed at a random point of its
//! lease renewal cycle.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::Result;
use regsweep_integration_tests::authproxy::{AuthProxy, Mode};
use regsweep_integration_tests::raw::HeldCleanup;
use regsweep_integration_tests::{Scheduler, Scrubber, TestDb, TestRegistry};
use regsweep_proto::v1::{self, DeletionStatus};

#[derive(clap::Args)]
pub struct Args {
    /// Leases to measure, comma separated (seconds).
    #[arg(long, value_delimiter = ',', default_value = "2,5,10")]
    leases: Vec<u64>,
    /// Runs per lease.
    #[arg(long, default_value_t = 3)]
    runs: u32,
}

/// How often the deletions are looked at.
const POLL: Duration = Duration::from_millis(20);
/// The scrubbers' `--poll-interval` (the test harness's).
const POLL_INTERVAL: Duration = Duration::from_millis(100);

pub async fn run(args: Args) -> Result<()> {
    let registry = TestRegistry::start().await;
    // Slow deletes keep the killed replica holding a batch.
    let proxy = AuthProxy::start(&registry.url(), Mode::SlowDeletes { millis: 2_000 }).await;
    let db = TestDb::create().await;
    let scheduler = Scheduler::launch("scheduler", &db.url, &[], false).await;
    let mut registries =
        v1::registry_service_client::RegistryServiceClient::new(scheduler.channel().await);
    let definition = v1::Registry { name: "slow".into(), url: proxy.url(), ..Default::default() };
    registries
        .create_registry(v1::CreateRegistryRequest {
            registry: Some(definition),
            ..Default::default()
        })
        .await?;
    println!("takeover benchmark: SIGKILL a scrubber holding deletions, start another at once");
    println!("lease  poll   runs  median   max      bound (lease + poll)");
    for &lease in &args.leases {
        let mut times = Vec::new();
        for run in 0..args.runs {
            times.push(once(&registry, &scheduler, &db, lease, run).await?);
        }
        times.sort();
        let median = times[times.len() / 2];
        let max = times[times.len() - 1];
        println!(
            "{lease:>4}s  0.1s  {:>4}  {:>6.2}s  {:>6.2}s  {:>5.1}s",
            times.len(),
            median.as_secs_f64(),
            max.as_secs_f64(),
            lease as f64 + POLL_INTERVAL.as_secs_f64()
        );
    }
    Ok(())
}

/// One kill: returns the time from SIGKILL until every deletion the killed
/// replica held was claimed by the other.
async fn once(
    registry: &TestRegistry,
    scheduler: &Scheduler,
    db: &TestDb,
    lease: u64,
    run: u32,
) -> Result<Duration> {
    let repo = format!("takeover/l{lease}r{run}");
    let mut images = Vec::new();
    for i in 0..8 {
        let tag = format!("t{i}");
        let digest = registry.push_image(&repo, &[&tag], None, &format!("{repo}-{i}")).await;
        images.push(v1::ImageDeletion {
            digest,
            tags: vec![tag],
            delete_digest: true,
            ..Default::default()
        });
    }
    let lease_flag = format!("{lease}s");
    let flags = ["--delay", "0s", "--parallelism", "8", "--lease", &lease_flag];
    let mut doomed = Scrubber::launch("doomed", db, scheduler, &flags, false).await;
    let mut client = doomed.client().await;
    let cleanup = HeldCleanup::start(scheduler, "slow", &repo).await;
    client.submit_deletions(cleanup.plan(images)).await?;
    let job_id = cleanup.job_id;
    cleanup.finish(scheduler).await;
    let list = v1::ListDeletionsRequest { job_id, ..Default::default() };
    let submitted = Instant::now();
    let held: BTreeSet<i64> = loop {
        let listed = client.list_deletions(list.clone()).await?.into_inner().deletions;
        let held: BTreeSet<i64> = listed
            .iter()
            .filter(|d| d.status() == DeletionStatus::Deleting)
            .map(|d| d.id)
            .collect();
        if held.len() == listed.len() && !held.is_empty() {
            break held;
        }
        let states: Vec<(i64, i32, u32)> =
            listed.iter().map(|d| (d.id, d.status, d.attempts)).collect();
        anyhow::ensure!(
            submitted.elapsed() < Duration::from_secs(30),
            "never all held: {states:?}"
        );
        tokio::time::sleep(POLL).await;
    };
    // The other replica runs already, as in production; it finds every
    // deletion leased.
    let survivor = Scrubber::launch("survivor", db, scheduler, &flags, false).await;
    let mut client = survivor.client().await;
    doomed.process.signal(nix::sys::signal::Signal::SIGKILL);
    let killed = Instant::now();
    doomed.process.wait_exit(Duration::from_secs(10)).await;
    loop {
        let listed = client.list_deletions(list.clone()).await?.into_inner().deletions;
        let taken = listed.iter().filter(|d| held.contains(&d.id) && d.attempts >= 2).count();
        if taken == held.len() {
            let elapsed = killed.elapsed();
            // Let the survivor finish, so the next run starts clean.
            loop {
                let listed = client.list_deletions(list.clone()).await?.into_inner().deletions;
                if listed.iter().all(|d| d.status() == DeletionStatus::Deleted) {
                    return Ok(elapsed);
                }
                tokio::time::sleep(POLL).await;
            }
        }
        let states: Vec<(i64, i32, u32)> =
            listed.iter().map(|d| (d.id, d.status, d.attempts)).collect();
        anyhow::ensure!(
            killed.elapsed() < Duration::from_secs(lease * 4 + 30),
            "no takeover of {held:?}: {states:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}
