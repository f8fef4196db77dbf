//! The console on a large catalog: time to first byte and full load of
//! the overview and the repositories page over 1,000,000 repositories,
//! from a plain HTTP client and in headless Chromium, next to the gRPC
//! call the repositories page makes, measured in the same run.

use std::time::{Duration, Instant};

use regsweep_integration_tests::browser::Browser;
use regsweep_integration_tests::selection::SelectionProbe;
use regsweep_integration_tests::{Console, Scheduler, Scrubber, TestDb};
use regsweep_proto::v1;

use crate::stats::{median, percentile};

#[derive(clap::Args)]
pub struct Args {
    /// Repositories in the catalog.
    #[arg(long, default_value_t = 1_000_000)]
    repositories: u64,
    /// Requests timed per page.
    #[arg(long, default_value_t = 30)]
    samples: usize,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// (time to first byte, full body) of GET `url`, `n` times.
async fn http_samples(
    http: &reqwest::Client,
    url: &str,
    n: usize,
) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    let (mut first, mut full) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        let started = Instant::now();
        let response = http.get(url).send().await?;
        anyhow::ensure!(response.status().is_success(), "{url}: {}", response.status());
        first.push(ms(started.elapsed()));
        response.bytes().await?;
        full.push(ms(started.elapsed()));
    }
    Ok((first, full))
}

/// (time to first byte, load event) of `url` in the browser, `n` times.
async fn browser_samples(browser: &Browser, url: &str, n: usize) -> (Vec<f64>, Vec<f64>) {
    let (mut first, mut load) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        browser.goto(url).await;
        let timing = browser
            .script(
                "const t = performance.getEntriesByType('navigation')[0];\
                 return [t.responseStart - t.startTime, t.loadEventEnd - t.startTime];",
            )
            .await;
        first.push(timing[0].as_f64().unwrap_or(f64::NAN));
        load.push(timing[1].as_f64().unwrap_or(f64::NAN));
    }
    (first, load)
}

fn row(what: &str, mut first: Vec<f64>, mut full: Vec<f64>) {
    println!(
        "{what:<44} {:>9.1}ms {:>9.1}ms {:>9.1}ms {:>9.1}ms",
        median(&mut first),
        percentile(&mut first, 95.0),
        median(&mut full),
        percentile(&mut full, 95.0)
    );
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let db = TestDb::create().await;
    let started = Instant::now();
    SelectionProbe::populate(&db, args.repositories, 4).await;
    println!(
        "console: {} repositories inserted in {:.1}s",
        args.repositories,
        started.elapsed().as_secs_f64()
    );
    let scheduler = Scheduler::launch("scheduler", &db.url, &[], false).await;
    let scrubber = Scrubber::start("scrubber", &db, &scheduler, &[]).await;
    let console = Console::start(&scheduler.url, &scrubber.url).await;
    // Nagle and delayed ACKs would add 40 ms to every small response.
    let http = reqwest::Client::builder().tcp_nodelay(true).build()?;
    let c = console.url.as_str();
    // A page deep in the catalog: ten pages on.
    let mut repositories = scheduler.repositories().await;
    let mut token = String::new();
    for _ in 0..10 {
        let request =
            v1::ListRepositoriesRequest { page_size: 100, page_token: token, ..Default::default() };
        token = repositories.list_repositories(request).await?.into_inner().next_page_token;
    }
    let deep = format!("{c}/repositories?page={token}");
    println!(
        "{:<44} {:>11} {:>11} {:>11} {:>11}",
        "", "first p50", "first p95", "full p50", "full p95"
    );
    // Warm the connections and the database's cache alike for everyone.
    http_samples(&http, &format!("{c}/repositories"), 3).await?;
    let mut grpc = Vec::with_capacity(args.samples);
    for _ in 0..args.samples {
        let request = v1::ListRepositoriesRequest { page_size: 100, ..Default::default() };
        let started = Instant::now();
        repositories.list_repositories(request).await?;
        grpc.push(ms(started.elapsed()));
    }
    row("ListRepositories (gRPC, 100 rows; the peer)", grpc.clone(), grpc);
    for (what, url) in [
        ("overview (http)", format!("{c}/")),
        ("repositories (http)", format!("{c}/repositories")),
        ("repositories, 10 pages on (http)", deep.clone()),
    ] {
        let (first, full) = http_samples(&http, &url, args.samples).await?;
        row(what, first, full);
    }
    let browser = Browser::start().await;
    for (what, url) in [
        ("overview (chromium)", format!("{c}/")),
        ("repositories (chromium)", format!("{c}/repositories")),
        ("repositories, 10 pages on (chromium)", deep),
    ] {
        let (first, load) = browser_samples(&browser, &url, args.samples).await;
        row(what, first, load);
    }
    browser.quit().await;
    Ok(())
}
