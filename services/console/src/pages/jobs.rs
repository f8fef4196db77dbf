//! Jobs: a filtered, paged list, and a detail page with the log, followed
//! live while the job runs, and cancel.

use std::convert::Infallible;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::http::header::LOCATION;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use chrono::Utc;
use futures::{Stream, StreamExt};
use maud::{Markup, html};
use regsweep_proto::v1::{self, JobStatus};
use serde::Deserialize;

use crate::App;
use crate::backend::{as_caller, request};
use crate::error::ConsoleError;
use crate::permissions::Action;
use crate::security::Form;
use crate::session::Caller;
use crate::view;

const PAGE_SIZE: i32 = 50;
/// Log lines rendered with the page; the rest follow live.
const LOG_PAGE: i32 = 1000;

#[derive(Debug, Default, Deserialize)]
pub struct Filters {
    #[serde(default)]
    status: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    page: String,
}

pub async fn list(
    State(app): State<App>,
    caller: Caller,
    Query(f): Query<Filters>,
) -> Result<Html<String>, ConsoleError> {
    let statuses = match f.status.as_str() {
        "" => Vec::new(),
        name => vec![
            JobStatus::from_short_name(name)
                .ok_or_else(|| ConsoleError::BadRequest(format!("unknown job status {name:?}")))?
                .into(),
        ],
    };
    let message = v1::ListJobsRequest {
        statuses,
        kind: f.kind.clone(),
        page_size: PAGE_SIZE,
        page_token: f.page.clone(),
        ..Default::default()
    };
    let listed = app.backend.jobs().list_jobs(request(&caller, message)).await?.into_inner();
    let now = Utc::now();
    let body = html! {
        (filters(&f))
        @if listed.jobs.is_empty() {
            p { "No jobs here." }
        } @else {
            table {
                thead { tr {
                    th scope="col" { "Id" } th scope="col" { "Kind" } th scope="col" { "Status" }
                    th scope="col" { "Attempt" } th scope="col" { "Created" } th scope="col" { "Finished" }
                    th scope="col" { "Last error" }
                } }
                tbody {
                    @for j in &listed.jobs {
                        tr {
                            td.num { a href=(format!("/jobs/{}", j.id)) { (j.id) } }
                            td { (j.kind) }
                            td { (view::badge(j.status().short_name())) }
                            td.num { (j.attempt) "/" (j.max_attempts) }
                            td { (view::ago(view::time(j.created_at.as_ref()), now)) }
                            td { (view::ago(view::time(j.finished_at.as_ref()), now)) }
                            td { (j.last_error) }
                        }
                    }
                }
            }
        }
        @if !listed.next_page_token.is_empty() {
            @let next = form_urlencoded::Serializer::new(String::new())
                .append_pair("status", &f.status).append_pair("kind", &f.kind)
                .append_pair("page", &listed.next_page_token).finish();
            p { a rel="next" href=(format!("/jobs?{next}")) { "Next page" } }
        }
    };
    Ok(view::page(&caller, "/jobs", "Jobs", body))
}

const STATUSES: &[&str] = &["", "waiting", "running", "done", "error", "cancel_request", "cancel"];

fn filters(f: &Filters) -> Markup {
    html! {
        form.filters method="get" action="/jobs" {
            label for="f-status" { "Status" }
            select #f-status name="status" {
                @for s in STATUSES {
                    option value=(s) selected[*s == f.status] { @if s.is_empty() { "any" } @else { (s.replace('_', " ")) } }
                }
            }
            label for="f-kind" { "Kind" }
            input #f-kind name="kind" value=(f.kind);
            button type="submit" { "Filter" }
        }
    }
}

pub async fn detail(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Html<String>, ConsoleError> {
    let mut jobs = app.backend.jobs();
    let job = jobs.get_job(request(&caller, v1::GetJobRequest { id })).await?.into_inner().job;
    let job = job.ok_or_else(|| ConsoleError::NotFound(format!("job {id}")))?;
    let logs = v1::GetJobLogsRequest { id, page_size: LOG_PAGE, ..Default::default() };
    let logs = jobs.get_job_logs(request(&caller, logs)).await?.into_inner();
    let terminal = job.status().is_terminal();
    let cancel = if terminal {
        Err("the job has ended".to_string())
    } else {
        let probe = v1::CancelJobRequest { id: 0, reason: String::new() };
        let probe = async { jobs.cancel_job(request(&caller, probe)).await.map(drop) };
        app.permissions.may(&caller, Action::CancelJob, probe).await
    };
    let now = Utc::now();
    let body = html! {
        dl.facts {
            dt { "Kind" } dd { (job.kind) }
            dt { "Status" } dd #job-status { (view::badge(job.status().short_name())) }
            dt { "Attempt" } dd { (job.attempt) " of " (job.max_attempts) }
            dt { "Worker" } dd { (job.worker_id) }
            dt { "Created" } dd { (view::ago(view::time(job.created_at.as_ref()), now)) }
            dt { "Finished" } dd { (view::ago(view::time(job.finished_at.as_ref()), now)) }
            @if !job.last_error.is_empty() { dt { "Last error" } dd.error { (job.last_error) } }
        }
        form.cancel method="post" action=(format!("/jobs/{id}/cancel")) {
            (view::csrf_field(&caller))
            @match &cancel {
                Ok(()) => button type="submit" { "Cancel job" },
                Err(why) => { button type="submit" disabled aria-describedby="cancel-why" { "Cancel job" } span #cancel-why .why { (why) } }
            }
        }
        h2 { "Log" }
        @let follow = (!terminal).then(|| format!("/jobs/{id}/log?from={}", logs.follow_token));
        pre #log tabindex="0" aria-live="polite" data-follow=[follow] {
            @for line in &logs.lines { (log_line(line)) }
        }
        @if !logs.next_page_token.is_empty() {
            p.muted { "The first " (LOG_PAGE) " lines; " code { "regsweep jobs logs " (id) } " prints all." }
        }
    };
    Ok(view::page(&caller, "/jobs", &format!("Job {id}"), body))
}

fn log_line(line: &v1::JobLogLine) -> Markup {
    let at = view::time(line.time.as_ref())
        .map(|t| t.format("%H:%M:%S").to_string())
        .unwrap_or_default();
    html! { span.line { span.at { (at) } " " (line.text) "\n" } }
}

pub async fn cancel(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<i64>,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    Form::verified(&caller, &body)?;
    let message = v1::CancelJobRequest { id, reason: "cancelled from the console".into() };
    app.backend.jobs().cancel_job(request(&caller, message)).await?;
    tracing::info!(job_id = id, "cancel from the console");
    Ok((StatusCode::SEE_OTHER, [(LOCATION, format!("/jobs/{id}"))]).into_response())
}

#[derive(Debug, Deserialize)]
pub struct Follow {
    /// Where the page's lines ended (`GetJobLogsResponse.follow_token`).
    #[serde(default)]
    from: String,
}

/// Where a browser is in the log: the token a message of the tail started
/// at, and how many of its lines it has. Each line's event id says so
/// (`<token>.<count>`), so a reconnecting browser (`Last-Event-ID`)
/// resumes after the last line it got, rereading at most one message.
fn resume_at(headers: &HeaderMap, follow: Follow) -> (String, usize) {
    let last = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    let parsed = last
        .and_then(|id| id.rsplit_once('.'))
        .and_then(|(token, count)| Some((token.to_string(), count.parse::<usize>().ok()?)));
    parsed.unwrap_or((follow.from, 0))
}

/// The log as server-sent events from where the page (or the browser's
/// last event) left it: one `line` event per line, and `end` with the
/// final status.
pub async fn log_stream(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<i64>,
    Query(follow): Query<Follow>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ConsoleError> {
    let (mut start, mut skip) = resume_at(&headers, follow);
    let mut tail = app.backend.jobs();
    let message =
        as_caller(&caller, v1::TailJobLogsRequest { id, attempt: 0, page_token: start.clone() });
    let stream = tail.tail_job_logs(message).await?.into_inner();
    let events = stream.flat_map(move |item| {
        let events: Vec<Event> = match item {
            Ok(response) => {
                let skipped = skip.min(response.lines.len());
                skip -= skipped;
                let count = response.lines.len();
                let mut events = Vec::new();
                for (k, line) in response.lines.iter().enumerate().skip(skipped) {
                    let at = view::time(line.time.as_ref())
                        .map(|t| t.format("%H:%M:%S").to_string())
                        .unwrap_or_default();
                    let id = if k + 1 == count {
                        format!("{}.0", response.next_page_token)
                    } else {
                        format!("{start}.{}", k + 1)
                    };
                    events.push(
                        Event::default().event("line").id(id).data(format!("{at} {}", line.text)),
                    );
                }
                start.clone_from(&response.next_page_token);
                if response.status().is_terminal() {
                    events.push(Event::default().event("end").data(response.status().short_name()));
                }
                events
            }
            // A scheduler stopping, or gone mid-stream (its connection cut:
            // tonic reports `Unknown`, which the scheduler itself never
            // answers): ending the stream has the browser connect again,
            // from its last event.
            Err(status) if is_gone(&status) => Vec::new(),
            Err(status) => vec![Event::default().event("failed").data(status.message())],
        };
        futures::stream::iter(events.into_iter().map(Ok))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// Whether a log stream failed because its scheduler went away rather than
/// answered: `Unavailable` (stopping, unreachable) or `Unknown` (the
/// connection cut mid-stream; the scheduler maps every error it answers
/// to a code of its own, never `Unknown`).
fn is_gone(status: &tonic::Status) -> bool {
    matches!(status.code(), tonic::Code::Unavailable | tonic::Code::Unknown)
}
