//! Tags evaluated per second by `tag_cleanup` against the local registry,
//! next to the registry's own capacity for the same reads measured in the
//! same run: a bare HTTP client issuing the same requests (a HEAD per tag,
//! then the manifest and its image config once per digest) at the same
//! concurrency.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::StreamExt;
use regsweep_integration_tests::TestRegistry;

use crate::previews::Previews;
use crate::stats;

#[derive(clap::Args)]
pub struct Args {
    /// Tags in the repository.
    #[arg(long, default_value_t = 2000)]
    tags: usize,
    /// Tags per image (digest).
    #[arg(long, default_value_t = 4)]
    tags_per_image: usize,
    /// Runs of each side; figures are medians.
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

/// The worker's inspection concurrency (`tag_cleanup`'s INSPECT_CONCURRENCY).
const CONCURRENCY: usize = 8;
const ACCEPT: &str =
    "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json";

async fn bare(registry: &str, repo: &str, tags: &[String]) -> Result<Duration> {
    let http = reqwest::Client::new();
    let seen = std::sync::Mutex::new(std::collections::HashSet::new());
    let started = Instant::now();
    let results: Vec<Result<()>> = futures::stream::iter(tags)
        .map(|tag| {
            let (http, seen) = (http.clone(), &seen);
            async move {
                let head = http
                    .head(format!("{registry}/v2/{repo}/manifests/{tag}"))
                    .header("accept", ACCEPT)
                    .send()
                    .await?;
                let digest = head.headers()["docker-content-digest"].to_str()?.to_string();
                let first =
                    seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.insert(digest.clone());
                if !first {
                    return Ok(());
                }
                let manifest: serde_json::Value = http
                    .get(format!("{registry}/v2/{repo}/manifests/{digest}"))
                    .header("accept", ACCEPT)
                    .send()
                    .await?
                    .json()
                    .await?;
                let config = manifest["config"]["digest"].as_str().context("config digest")?;
                http.get(format!("{registry}/v2/{repo}/blobs/{config}"))
                    .send()
                    .await?
                    .bytes()
                    .await?;
                Ok(())
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    results.into_iter().collect::<Result<Vec<()>>>()?;
    Ok(started.elapsed())
}

pub async fn run(args: Args) -> Result<()> {
    let registry = TestRegistry::start().await;
    let repo = "bench/app";
    let tags: Vec<String> = (0..args.tags).map(|i| format!("t{i:05}")).collect();
    let seeding = Instant::now();
    for (i, chunk) in tags.chunks(args.tags_per_image.max(1)).enumerate() {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let created = chrono::Utc::now() - chrono::Duration::hours(i as i64);
        registry.push_image(repo, &refs, Some(created), &format!("img{i}")).await;
    }
    println!("seeded {} tags in {:?}", tags.len(), seeding.elapsed());

    let mut previews = Previews::start(&registry.url()).await?;
    let (mut regsweep, mut raw) = (Vec::new(), Vec::new());
    for run in 1..=args.runs {
        let ours = previews.tags_per_second(repo, tags.len()).await?;
        let bare_elapsed = bare(&registry.url(), repo, &tags).await?;
        let theirs = tags.len() as f64 / bare_elapsed.as_secs_f64();
        println!(
            "run {run}: tag_cleanup {ours:.0} tags/s, bare client {theirs:.0} tags/s ({:.0}%)",
            100.0 * ours / theirs
        );
        regsweep.push(ours);
        raw.push(theirs);
    }
    let (ours, theirs) = (stats::median(&mut regsweep), stats::median(&mut raw));
    println!();
    println!(
        "| tags | concurrency | tag_cleanup (median) | bare client, same reads (median) | share |"
    );
    println!("|---|---|---|---|---|");
    println!(
        "| {} ({} per image) | {CONCURRENCY} | {ours:.0} tags/s | {theirs:.0} tags/s | {:.0}% |",
        tags.len(),
        args.tags_per_image,
        100.0 * ours / theirs
    );
    Ok(())
}
