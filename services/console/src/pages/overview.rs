//! Whether cleanup is healthy, at a glance: the queue, the workers, the
//! scrubber's pending deletions and each registry's concurrency and rate.

use axum::extract::State;
use axum::response::Html;
use chrono::{DateTime, Utc};
use maud::{Markup, html};
use regsweep_proto::v1;

use crate::App;
use crate::backend::request;
use crate::error::ConsoleError;
use crate::session::Caller;
use crate::view;

pub async fn page(State(app): State<App>, caller: Caller) -> Result<Html<String>, ConsoleError> {
    let mut queue_client = app.backend.jobs();
    let mut workers = app.backend.jobs();
    let mut scrubber = app.backend.scrubber();
    let mut repositories = app.backend.repositories();
    let (queued, workers, status, cleanups) = tokio::join!(
        queue_client.get_queue_status(request(&caller, v1::GetQueueStatusRequest {})),
        workers.list_workers(request(
            &caller,
            v1::ListWorkersRequest { page_size: 100, ..Default::default() }
        )),
        scrubber.get_scrubber_status(request(&caller, v1::GetScrubberStatusRequest {})),
        repositories.get_cleanup_status(request(&caller, v1::GetCleanupStatusRequest {})),
    );
    let now = Utc::now();
    // The scheduler's answers decide whether the page can be shown at
    // all (a token it refuses signs in again); the scrubber's only its
    // own section.
    let queued = queued?.into_inner();
    let workers = workers?.into_inner();
    let cleanups = cleanups?.into_inner();
    let body = html! {
        section aria-labelledby="cleanups-h" {
            h2 #cleanups-h { "Cleanups" }
            (cleanup_status(&cleanups))
        }
        section aria-labelledby="queue-h" {
            h2 #queue-h { "Queue" }
            (queue(&queued))
        }
        section aria-labelledby="workers-h" {
            h2 #workers-h { "Workers" }
            (workers_table(&workers.workers, now))
        }
        section aria-labelledby="scrubber-h" {
            h2 #scrubber-h { "Deletions" }
            @match status {
                Ok(status) => (scrubber_status(&status.into_inner())),
                Err(e) => p.error role="alert" { "the scrubber did not answer: " (e.message()) },
            }
        }
    };
    Ok(view::page(&caller, "/", "Overview", body))
}

/// Statuses the queue table counts as running.
const RUNNING: &[&str] = &["running", "cancel_request"];

fn queue(q: &v1::GetQueueStatusResponse) -> Markup {
    let count = |k: &v1::KindQueue, statuses: &[&str]| -> i64 {
        statuses.iter().filter_map(|s| k.jobs.get(*s)).sum()
    };
    let live: Vec<&v1::KindQueue> =
        q.kinds.iter().filter(|k| count(k, &["waiting"]) + count(k, RUNNING) > 0).collect();
    html! {
        @if live.is_empty() {
            p { "No job is waiting or running." }
        } @else {
            table #queue {
                thead { tr {
                    th scope="col" { "Kind" } th scope="col" { "Waiting" } th scope="col" { "Due" }
                    th scope="col" { "Oldest due has waited" } th scope="col" { "Running" }
                } }
                tbody {
                    @for k in &live {
                        tr {
                            td { a href=(format!("/jobs?kind={}", k.kind)) { (k.kind) } }
                            td.num { a href=(format!("/jobs?kind={}&status=waiting", k.kind)) { (count(k, &["waiting"])) } }
                            td.num { (k.due) }
                            td { @if k.due > 0 { (view::span(chrono::Duration::milliseconds((k.oldest_due_seconds * 1000.0) as i64))) } @else { span.muted { "—" } } }
                            td.num { a href=(format!("/jobs?kind={}&status=running", k.kind)) { (count(k, RUNNING)) } }
                        }
                    }
                }
            }
        }
    }
}

fn cleanup_status(c: &v1::GetCleanupStatusResponse) -> Markup {
    html! {
        p #cleanups {
            (c.running) " running of a capacity of " (c.capacity) "; "
            a href="/repositories?status=scheduled" { (c.waiting) " waiting" } "."
        }
        @if c.overdue > 0 {
            p.warning role="status" {
                (c.overdue) " overdue, the longest for "
                (view::span(chrono::Duration::seconds(c.max_overdue_seconds as i64))) "."
            }
        }
    }
}

fn workers_table(workers: &[v1::WorkerInfo], now: DateTime<Utc>) -> Markup {
    let live = workers.iter().filter(|w| w.status() == v1::WorkerStatus::Alive).count();
    html! {
        p { (live) " connected." }
        @if !workers.is_empty() {
            table {
                thead { tr { th scope="col" { "Name" } th scope="col" { "Status" } th scope="col" { "Running / capacity" } th scope="col" { "Last heartbeat" } } }
                tbody {
                    @for w in workers {
                        tr {
                            td title=(w.id) { (w.name) }
                            td { (view::badge(w.status().short_name())) }
                            td {
                                @for (kind, capacity) in &w.capacity {
                                    span.kind { (kind) " " (w.running.get(kind).copied().unwrap_or(0)) "/" (capacity) } " "
                                }
                            }
                            td { (view::ago(view::time(w.last_heartbeat.as_ref()), now)) }
                        }
                    }
                }
            }
        }
    }
}

fn scrubber_status(status: &v1::GetScrubberStatusResponse) -> Markup {
    html! {
        ul.counts {
            @for c in &status.counts {
                @let name = view::state_name(c.status().as_str_name(), "DELETION_STATUS_");
                li { a href=(format!("/deletions?status={name}")) { (view::badge(&name)) " " (c.count) } }
            }
        }
        div #deletions-chart data-refresh="/charts/deletions" { (chart(&status.finished_per_hour, Utc::now())) }
        @if status.oldest_due_pending_seconds > 0.0 {
            p.warning { "The oldest due deletion has waited "
                (view::span(chrono::Duration::seconds(status.oldest_due_pending_seconds as i64))) "." }
        }
        p { "Deleting up to " (status.parallelism) " at once." }
        @if !status.registries.is_empty() {
            table {
                thead { tr { th scope="col" { "Registry" } th scope="col" { "In flight" } th scope="col" { "Concurrency" } th scope="col" { "Rate limit" } } }
                tbody {
                    @for r in &status.registries {
                        tr {
                            td { (r.registry) }
                            td.num { (r.in_flight) }
                            td.num { (r.concurrency) " of " (r.max_concurrency) }
                            td.num { @if r.rate_limit > 0.0 { (r.rate_limit) "/s" } @else { "none" } }
                        }
                    }
                }
            }
        }
    }
}

/// Hours the chart shows, oldest on the left.
const HOURS: i64 = 72;
const BAR: i64 = 10;
const HEIGHT: i64 = 80;

/// Deletions per hour over the last three days as an SVG bar chart
/// (rendered here: no script or library), deleted below, failed on top.
pub fn chart(hours: &[v1::HourCount], now: DateTime<Utc>) -> Markup {
    let start = now.timestamp() / 3600 * 3600 - (HOURS - 1) * 3600;
    let mut bars = vec![(0_i64, 0_i64); HOURS as usize];
    for h in hours {
        let Some(at) = view::time(h.hour.as_ref()) else { continue };
        let slot = (at.timestamp() - start).div_euclid(3600);
        if let Some(bar) = usize::try_from(slot).ok().and_then(|i| bars.get_mut(i)) {
            *bar = (h.deleted, h.failed);
        }
    }
    let most = bars.iter().map(|(d, f)| d + f).max().unwrap_or(0).max(1);
    let (deleted, failed): (i64, i64) = bars.iter().fold((0, 0), |(a, b), (d, f)| (a + d, b + f));
    let scale = |n: i64| n * HEIGHT / most;
    let summary =
        format!("Deletions per hour over the last 3 days: {deleted} deleted, {failed} failed");
    html! {
        svg.chart viewBox=(format!("0 0 {} {}", HOURS * BAR, HEIGHT)) role="img" aria-labelledby="chart-title" {
            title #chart-title { (summary) }
            @for (i, (d, f)) in bars.iter().enumerate() {
                @let x = i as i64 * BAR;
                @let hour = DateTime::from_timestamp(start + i as i64 * 3600, 0).unwrap_or_default();
                g {
                    title { (hour.format("%a %H:00 UTC")) ": " (d) " deleted, " (f) " failed" }
                    rect.deleted x=(x) y=(HEIGHT - scale(*d)) width=(BAR - 2) height=(scale(*d)) {}
                    rect.failed x=(x) y=(HEIGHT - scale(*d) - scale(*f)) width=(BAR - 2) height=(scale(*f)) {}
                }
            }
        }
        p.muted #chart-summary { (summary) "; the tallest hour " (most) "." }
    }
}

/// The chart alone, for the overview's script to refresh it in place.
pub async fn chart_fragment(
    State(app): State<App>,
    caller: Caller,
) -> Result<Html<String>, ConsoleError> {
    let status = app
        .backend
        .scrubber()
        .get_scrubber_status(request(&caller, v1::GetScrubberStatusRequest {}))
        .await?;
    Ok(Html(chart(&status.into_inner().finished_per_hour, Utc::now()).into_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hour(at: DateTime<Utc>, deleted: i64, failed: i64) -> v1::HourCount {
        v1::HourCount { hour: Some(regsweep_proto::timestamp_from_chrono(at)), deleted, failed }
    }

    #[test]
    fn bars_stand_at_their_hour_and_old_hours_fall_off() {
        let now = DateTime::parse_from_rfc3339("2026-12-03T12:34:00Z").expect("time").to_utc();
        let this_hour =
            DateTime::parse_from_rfc3339("2026-12-03T12:00:00Z").expect("time").to_utc();
        let hours = [
            hour(this_hour - chrono::Duration::hours(100), 50, 0),
            hour(this_hour - chrono::Duration::hours(1), 10, 2),
            hour(this_hour, 20, 0),
        ];
        let svg = chart(&hours, now).into_string();
        assert!(svg.contains("30 deleted, 2 failed"), "the summary counts the window only: {svg}");
        assert!(svg.contains("Thu 12:00 UTC: 20 deleted, 0 failed"), "{svg}");
        assert!(svg.contains("Thu 11:00 UTC: 10 deleted, 2 failed"), "{svg}");
        // The last bar is this hour, at full height (the tallest).
        let last = (HOURS - 1) * BAR;
        assert!(svg.contains(&format!("x=\"{last}\" y=\"0\" width=\"8\" height=\"80\"")), "{svg}");
    }
}
