//! Deletes per second through the scrubber at several parallelisms, next
//! to the registry's own capacity measured in the same run: a bare client
//! issuing the same requests per image (resolve the tag, list the tags,
//! delete the digest) at the same concurrency, and the registry requests
//! the scrubber sent per image.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::StreamExt;
use regsweep_integration_tests::raw::HeldCleanup;
use regsweep_integration_tests::{Scheduler, Scrubber, TestDb, TestRegistry};
use regsweep_proto::v1::{self, DeletionStatus};

#[derive(clap::Args)]
pub struct Args {
    /// Images deleted per measurement.
    #[arg(long, default_value_t = 300)]
    images: usize,
    /// Parallelisms to measure, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    parallelism: Vec<u32>,
    /// The scrubber's `--tag-snapshot-ttl`: how old the view of a
    /// repository's tags its last check before a DELETE may use is (every
    /// tag is resolved again once per this).
    #[arg(long, default_value = "2s")]
    tag_snapshot_ttl: String,
}

const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json";
/// Requests the bare client sends per image.
const BARE_REQUESTS: u32 = 3;
/// How long a scrubber may take to serve its metrics.
const SERVING: Duration = Duration::from_secs(10);

/// Registry requests the scrubber sent, from its metrics at `url`: the
/// sum of `regsweep_registry_requests_total` over its labels.
async fn registry_requests(url: &str) -> Result<f64> {
    let text = reqwest::get(url).await?.error_for_status()?.text().await?;
    let counts = text
        .lines()
        .filter(|l| l.starts_with("regsweep_registry_requests_total{"))
        .map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()).context(l.to_string()));
    counts.sum()
}

async fn seed(registry: &TestRegistry, repo: &str, n: usize) -> Vec<(String, String)> {
    let mut images = Vec::with_capacity(n);
    for i in 0..n {
        let tag = format!("t{i}");
        let digest = registry.push_image(repo, &[&tag], None, &format!("{repo}-{i}")).await;
        images.push((tag, digest));
    }
    images
}

async fn bare(
    url: &str,
    repo: &str,
    images: &[(String, String)],
    concurrency: usize,
) -> Result<Duration> {
    let http = reqwest::Client::new();
    let started = Instant::now();
    let results: Vec<Result<()>> = futures::stream::iter(images)
        .map(|(tag, digest)| {
            let http = http.clone();
            async move {
                http.head(format!("{url}/v2/{repo}/manifests/{tag}"))
                    .header("accept", ACCEPT)
                    .send()
                    .await?;
                http.get(format!("{url}/v2/{repo}/tags/list?n=1000")).send().await?.bytes().await?;
                let status = http
                    .delete(format!("{url}/v2/{repo}/manifests/{digest}"))
                    .send()
                    .await?
                    .status();
                anyhow::ensure!(status.as_u16() == 202, "delete answered {status}");
                Ok(())
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    results.into_iter().collect::<Result<Vec<()>>>()?;
    Ok(started.elapsed())
}

pub async fn run(args: Args) -> Result<()> {
    let registry = TestRegistry::start().await;
    let db = TestDb::create().await;
    let scheduler = Scheduler::launch("scheduler", &db.url, &[], false).await;
    let mut registries =
        v1::registry_service_client::RegistryServiceClient::new(scheduler.channel().await);
    println!(
        "scrub benchmark: {} images per measurement, one tag each; --tag-snapshot-ttl {}",
        args.images, args.tag_snapshot_ttl
    );
    let mut rows = Vec::new();
    for &p in &args.parallelism {
        let name = format!("p{p}");
        let definition = v1::Registry {
            name: name.clone(),
            url: registry.url(),
            max_parallel_deletions: p,
            ..Default::default()
        };
        registries
            .create_registry(v1::CreateRegistryRequest {
                registry: Some(definition),
                ..Default::default()
            })
            .await?;
        let ours_repo = format!("scrub/{name}");
        let bare_repo = format!("bare/{name}");
        let ours_images = seed(&registry, &ours_repo, args.images).await;
        let bare_images = seed(&registry, &bare_repo, args.images).await;

        let parallelism = p.to_string();
        let flags = [
            "--delay",
            "0s",
            "--parallelism",
            &parallelism,
            "--tag-snapshot-ttl",
            &args.tag_snapshot_ttl,
            "--metrics-addr",
            "127.0.0.1:0",
        ];
        let scrubber = Scrubber::launch(&name, &db, &scheduler, &flags, false).await;
        let served = scrubber.process.wait_for_message("serving metrics", SERVING).await;
        let metrics =
            format!("http://{}/metrics", served["addr"].as_str().context("metrics addr")?);
        let mut client = scrubber.client().await;
        // The plan of a real cleanup attempt, which the scrubber checks with
        // the scheduler before accepting it.
        let cleanup = HeldCleanup::start(&scheduler, &name, &ours_repo).await;
        let request = cleanup.plan(
            ours_images
                .iter()
                .map(|(tag, digest)| v1::ImageDeletion {
                    digest: digest.clone(),
                    tags: vec![tag.clone()],
                    delete_digest: true,
                    ..Default::default()
                })
                .collect(),
        );
        let started = Instant::now();
        client.submit_deletions(request).await?;
        cleanup.finish(&scheduler).await;
        loop {
            let status =
                client.get_scrubber_status(v1::GetScrubberStatusRequest {}).await?.into_inner();
            let count = |s: DeletionStatus| {
                status.counts.iter().find(|c| c.status() == s).map_or(0, |c| c.count)
            };
            anyhow::ensure!(count(DeletionStatus::Failed) == 0, "deletions failed");
            if count(DeletionStatus::PendingDelete) == 0 && count(DeletionStatus::Deleting) == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let ours = started.elapsed();
        let requests = registry_requests(&metrics).await? / args.images as f64;
        let theirs = bare(&registry.url(), &bare_repo, &bare_images, p as usize)
            .await
            .context("bare client")?;
        let (ours, theirs) =
            (args.images as f64 / ours.as_secs_f64(), args.images as f64 / theirs.as_secs_f64());
        println!(
            "parallelism {p}: scrubber {ours:.0} deletes/s, bare client {theirs:.0} deletes/s ({:.0}%); \
             registry requests per image: scrubber {requests:.1}, bare client {BARE_REQUESTS}",
            100.0 * ours / theirs
        );
        rows.push((p, ours, theirs, requests));
        scrubber.process.signal(nix::sys::signal::Signal::SIGTERM);
    }
    println!();
    println!(
        "| parallelism | scrubber | bare client, same requests | share | scrubber's requests per image |"
    );
    println!("|---|---|---|---|---|");
    for (p, ours, theirs, requests) in rows {
        println!(
            "| {p} | {ours:.0} deletes/s | {theirs:.0} deletes/s | {:.0}% | {requests:.1} |",
            100.0 * ours / theirs
        );
    }
    Ok(())
}
