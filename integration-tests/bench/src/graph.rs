//! Reading a repository's graph: tags evaluated per second by
//! `tag_cleanup` on a repository where half the images are multi-arch
//! indexes over two platforms, each signed with a cosign signature tag,
//! next to a bare HTTP client issuing the same requests in the same run
//! (per tag: a HEAD, then the manifest by digest; for an image its config;
//! for an index its linux/amd64 child and that child's config) at the same
//! concurrency.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::StreamExt;
use regsweep_integration_tests::TestRegistry;

use crate::previews::Previews;
use crate::stats;

#[derive(clap::Args)]
pub struct Args {
    /// Image tags in the repository (half of them multi-arch indexes);
    /// each index also has a signature tag.
    #[arg(long, default_value_t = 2000)]
    images: usize,
    /// Runs of each side; figures are medians.
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

/// The worker's inspection concurrency (`tag_cleanup`'s INSPECT_CONCURRENCY).
const CONCURRENCY: usize = 8;
const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";

/// Pushes `images` tags, every other one an index over two platforms with
/// a cosign signature; returns every tag.
async fn seed(registry: &TestRegistry, repo: &str, images: usize) -> Vec<String> {
    let mut tags = Vec::new();
    for i in 0..images {
        let created = Some(chrono::Utc::now() - chrono::Duration::hours(i as i64));
        let tag = format!("v{i:05}");
        if i % 2 == 0 {
            registry.push_image(repo, &[&tag], created, &tag).await;
        } else {
            let amd = registry.push_image(repo, &[], created, &format!("{tag}-amd64")).await;
            let arm = registry.push_image(repo, &[], created, &format!("{tag}-arm64")).await;
            let index = registry.push_index(repo, &tag, &[(&amd, "amd64"), (&arm, "arm64")]).await;
            registry.push_cosign_signature(repo, &index).await;
            tags.push(format!("{}.sig", index.replace(':', "-")));
        }
        tags.push(tag);
    }
    tags
}

async fn get_json(http: &reqwest::Client, url: String) -> Result<serde_json::Value> {
    Ok(http.get(url).header("accept", ACCEPT).send().await?.error_for_status()?.json().await?)
}

/// The requests `tag_cleanup` makes for one tag, made plainly.
async fn read_tag(http: &reqwest::Client, base: &str, tag: &str) -> Result<()> {
    let head = http.head(format!("{base}/manifests/{tag}")).header("accept", ACCEPT).send().await?;
    let digest = head.headers()["docker-content-digest"].to_str()?.to_string();
    let manifest = get_json(http, format!("{base}/manifests/{digest}")).await?;
    let image = match manifest["manifests"].as_array() {
        Some(children) => {
            let child = children
                .iter()
                .find(|c| c["platform"]["architecture"] == "amd64")
                .or_else(|| children.first())
                .context("a child")?;
            let digest = child["digest"].as_str().context("child digest")?;
            get_json(http, format!("{base}/manifests/{digest}")).await?
        }
        None => manifest,
    };
    let config = image["config"]["digest"].as_str().context("config digest")?;
    http.get(format!("{base}/blobs/{config}")).send().await?.error_for_status()?.bytes().await?;
    Ok(())
}

async fn bare(registry: &str, repo: &str, tags: &[String]) -> Result<Duration> {
    let http = reqwest::Client::new();
    let base = format!("{registry}/v2/{repo}");
    let started = Instant::now();
    let results: Vec<Result<()>> = futures::stream::iter(tags)
        .map(|tag| read_tag(&http, &base, tag))
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    results.into_iter().collect::<Result<Vec<()>>>()?;
    Ok(started.elapsed())
}

pub async fn run(args: Args) -> Result<()> {
    let registry = TestRegistry::start().await;
    let repo = "bench/graph";
    let seeding = Instant::now();
    let tags = seed(&registry, repo, args.images).await;
    println!("seeded {} tags in {:?}", tags.len(), seeding.elapsed());

    let mut previews = Previews::start(&registry.url()).await?;
    let (mut regsweep, mut raw, mut after) = (Vec::new(), Vec::new(), Vec::new());
    for run in 1..=args.runs {
        let timing = previews.timed(repo, tags.len()).await?;
        let ours = timing.tags_per_second;
        println!(
            "run {run}: planning {:.0} ms, then {:.0} ms more for the reclaim figure ({} bytes) \
             and the report",
            timing.planning_ms, timing.after_plan_ms, timing.reclaimable_bytes
        );
        after.push(100.0 * timing.after_plan_ms / timing.planning_ms);
        let theirs = tags.len() as f64 / bare(&registry.url(), repo, &tags).await?.as_secs_f64();
        println!(
            "run {run}: tag_cleanup {ours:.0} tags/s, bare client {theirs:.0} tags/s ({:.0}%)",
            100.0 * ours / theirs
        );
        regsweep.push(ours);
        raw.push(theirs);
    }
    let (ours, theirs) = (stats::median(&mut regsweep), stats::median(&mut raw));
    println!("after planning (median): {:.0}% of the planning time", stats::median(&mut after));
    println!();
    println!(
        "| tags | concurrency | tag_cleanup (median) | bare client, same requests (median) | share |"
    );
    println!("|---|---|---|---|---|");
    println!(
        "| {} ({} images, half indexes of 2 with a signature) | {CONCURRENCY} | {ours:.0} tags/s | {theirs:.0} tags/s | {:.0}% |",
        tags.len(),
        args.images,
        100.0 * ours / theirs
    );
    Ok(())
}
