//! Pending deletions with a countdown to each, restoring them (one, a
//! selection, or a whole job's plan), approving held plans, and history.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::response::Html;
use chrono::Utc;
use maud::{Markup, html};
use regsweep_proto::v1::{self, DeletionStatus};
use serde::Deserialize;

use crate::App;
use crate::backend::{May, request};
use crate::error::ConsoleError;
use crate::permissions::Action;
use crate::security::Form;
use crate::session::Caller;
use crate::view;

const PAGE_SIZE: i32 = 50;
/// Most deletions one "whole plan" action touches; the outcome page says
/// when a plan had more (act again for the rest).
const MAX_PLAN: usize = 10_000;
/// Ids per restore or approve call (the scrubber's limit).
const PER_CALL: usize = 1_000;

/// The page's query: bookmarkable filters and the page token.
#[derive(Debug, Default, Deserialize)]
pub struct Filters {
    #[serde(default)]
    status: String,
    #[serde(default)]
    registry: String,
    #[serde(default)]
    repository: String,
    /// Text, as the form sends it (`job=` when empty).
    #[serde(default)]
    job: String,
    #[serde(default)]
    page: String,
}

impl Filters {
    fn job(&self) -> Result<Option<i64>, ConsoleError> {
        match self.job.trim() {
            "" => Ok(None),
            text => text
                .parse()
                .map(Some)
                .map_err(|_| ConsoleError::BadRequest(format!("job {text:?} is not a job id"))),
        }
    }
}

fn parse_status(name: &str) -> Result<DeletionStatus, ConsoleError> {
    if name.is_empty() {
        return Ok(DeletionStatus::PendingDelete);
    }
    if name == "all" {
        return Ok(DeletionStatus::Unspecified);
    }
    DeletionStatus::from_str_name(&format!("DELETION_STATUS_{}", name.to_ascii_uppercase()))
        .ok_or_else(|| ConsoleError::BadRequest(format!("unknown deletion status {name:?}")))
}

pub async fn page(
    State(app): State<App>,
    caller: Caller,
    Query(f): Query<Filters>,
) -> Result<Html<String>, ConsoleError> {
    let status = parse_status(&f.status)?;
    let job = f.job()?;
    let listing = v1::ListDeletionsRequest {
        status: status.into(),
        registry: f.registry.clone(),
        repository: f.repository.clone(),
        job_id: job.unwrap_or(0),
        page_size: PAGE_SIZE,
        page_token: f.page.clone(),
        ..Default::default()
    };
    let mut scrubber = app.backend.scrubber();
    let listed = scrubber.list_deletions(request(&caller, listing)).await?.into_inner();
    // Asked only when the buttons would show.
    let restore = match status {
        DeletionStatus::PendingDelete => {
            let probe = probe_restore(&app, &caller);
            app.permissions.may(&caller, Action::RestoreDeletions, probe).await
        }
        _ => Err("only pending deletions can be restored".into()),
    };
    let approve = match status {
        DeletionStatus::AwaitingApproval => {
            let probe = probe_approve(&app, &caller);
            app.permissions.may(&caller, Action::ApproveDeletions, probe).await
        }
        _ => Err(String::new()),
    };
    let body = html! {
        (filters(&f, status))
        (table(&caller, &listed.deletions, &restore, &approve, status))
        @if !listed.next_page_token.is_empty() {
            p { a rel="next" href=(next_page(&f, &listed.next_page_token)) { "Next page" } }
        }
        @if let (Some(job), DeletionStatus::PendingDelete) = (job, status) {
            (whole_plan(&caller, job, &restore))
        }
    };
    Ok(view::page(&caller, "/deletions", "Deletions", body))
}

async fn probe_restore(app: &App, caller: &Caller) -> Result<(), tonic::Status> {
    let probe = v1::RestoreDeletionsRequest { ids: Vec::new() };
    app.backend.scrubber().restore_deletions(request(caller, probe)).await.map(drop)
}

async fn probe_approve(app: &App, caller: &Caller) -> Result<(), tonic::Status> {
    let probe = v1::ApproveDeletionsRequest { ids: Vec::new() };
    app.backend.scrubber().approve_deletions(request(caller, probe)).await.map(drop)
}

fn next_page(f: &Filters, token: &str) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("status", &f.status);
    query.append_pair("registry", &f.registry);
    query.append_pair("repository", &f.repository);
    query.append_pair("job", &f.job);
    query.append_pair("page", token);
    format!("/deletions?{}", query.finish())
}

const STATUSES: &[&str] = &[
    "pending_delete",
    "awaiting_approval",
    "deleting",
    "deleted",
    "restored",
    "failed",
    "cancelled",
    "all",
];

fn filters(f: &Filters, status: DeletionStatus) -> Markup {
    let current = view::state_name(status.as_str_name(), "DELETION_STATUS_");
    let current = if status == DeletionStatus::Unspecified { "all".to_string() } else { current };
    html! {
        form.filters method="get" action="/deletions" {
            label for="f-status" { "Status" }
            select #f-status name="status" {
                @for s in STATUSES {
                    option value=(s) selected[*s == current] { (s.replace('_', " ")) }
                }
            }
            label for="f-registry" { "Registry" }
            input #f-registry name="registry" value=(f.registry);
            label for="f-repository" { "Repository" }
            input #f-repository name="repository" value=(f.repository);
            label for="f-job" { "Job" }
            input #f-job name="job" inputmode="numeric" value=(f.job);
            button type="submit" { "Filter" }
        }
    }
}

/// A button that is disabled, and says why, when the caller may not.
fn action(label: &str, formaction: &str, allowed: &May, id: &str) -> Markup {
    match allowed {
        Ok(()) => html! { button type="submit" formaction=(formaction) { (label) } },
        Err(why) => html! {
            button type="submit" formaction=(formaction) disabled aria-describedby=(id) { (label) }
            span #(id) .why { (why) }
        },
    }
}

fn table(
    caller: &Caller,
    deletions: &[v1::Deletion],
    restore: &May,
    approve: &May,
    status: DeletionStatus,
) -> Markup {
    let now = Utc::now();
    if deletions.is_empty() {
        return html! { p { "No deletions here." } };
    }
    html! {
        form method="post" action="/deletions/restore" {
            (view::csrf_field(caller))
            table.deletions {
                thead { tr {
                    th scope="col" { span.visually-hidden { "Select" } }
                    th scope="col" { "Id" } th scope="col" { "Repository" } th scope="col" { "Image" }
                    th scope="col" { "Why" } th scope="col" { "Job" } th scope="col" { "Status" }
                    th scope="col" { "When" } th scope="col" { "Registry answer" }
                } }
                tbody { @for d in deletions { (row(d, now)) } }
            }
            div.actions {
                @if status == DeletionStatus::PendingDelete {
                    (action("Restore selected", "/deletions/restore", restore, "restore-why"))
                }
                @if status == DeletionStatus::AwaitingApproval {
                    (action("Approve selected", "/deletions/approve", approve, "approve-why"))
                }
            }
        }
    }
}

fn row(d: &v1::Deletion, now: chrono::DateTime<Utc>) -> Markup {
    let image = d.image.clone().unwrap_or_default();
    let status = view::state_name(d.status().as_str_name(), "DELETION_STATUS_");
    let short = image.digest.get(..19).unwrap_or(&image.digest);
    html! {
        tr id=(format!("deletion-{}", d.id)) {
            td { input type="checkbox" name="id" value=(d.id) id=(format!("sel-{}", d.id))
                aria-label=(format!("select deletion {}", d.id)); }
            td.num { (d.id) }
            td { (d.registry) "/" (d.repository) }
            td { code title=(image.digest) { (short) } @for t in &image.tags { " " span.tag { (t) } } }
            td {
                @for r in &image.reasons { div { span.tag { (r.tag) } " " (r.rule) } }
                @if !d.policy.is_empty() { div.muted { "policy " (d.policy) } }
            }
            td { a href=(format!("/jobs/{}", d.job_id)) { (d.job_id) } }
            td { (view::badge(&status)) }
            td {
                @match d.status() {
                    DeletionStatus::PendingDelete => (view::countdown(view::time(d.delete_after.as_ref()), now)),
                    _ => (view::ago(view::time(d.finished_at.as_ref()).or(view::time(d.submitted_at.as_ref())), now)),
                }
            }
            td { (answer(d)) }
        }
    }
}

/// What the registry answered (or why nothing was asked yet).
fn answer(d: &v1::Deletion) -> Markup {
    html! {
        @if !d.deleted_tags.is_empty() { div { "untagged " @for t in &d.deleted_tags { span.tag { (t) } " " } } }
        @if d.digest_deleted { div { "manifest deleted" } }
        @if !d.skipped_tags.is_empty() { div.muted { "kept (moved or re-pushed): " @for t in &d.skipped_tags { span.tag { (t) } " " } } }
        @if !d.error.is_empty() { div.error { (d.error) } }
        @if !d.hold_reason.is_empty() { div.warning { "held: " (d.hold_reason) } }
        @if d.attempts > 1 { div.muted { (d.attempts) " attempts" } }
    }
}

fn whole_plan(caller: &Caller, job: i64, restore: &May) -> Markup {
    html! {
        form.plan method="post" action="/deletions/restore" {
            (view::csrf_field(caller))
            input type="hidden" name="job" value=(job);
            (action(&format!("Restore every pending deletion of job {job}"), "/deletions/restore", restore, "plan-why"))
        }
    }
}

/// Every pending deletion of `job` (paged through, up to `MAX_PLAN`).
async fn plan_ids(
    app: &App,
    caller: &Caller,
    job: i64,
    status: DeletionStatus,
) -> Result<Vec<i64>, ConsoleError> {
    let mut ids = Vec::new();
    let mut page_token = String::new();
    loop {
        let listing = v1::ListDeletionsRequest {
            status: status.into(),
            job_id: job,
            page_size: 1000,
            page_token,
            ..Default::default()
        };
        let page =
            app.backend.scrubber().list_deletions(request(caller, listing)).await?.into_inner();
        ids.extend(page.deletions.iter().map(|d| d.id));
        if page.next_page_token.is_empty() || ids.len() >= MAX_PLAN {
            ids.truncate(MAX_PLAN);
            return Ok(ids);
        }
        page_token = page.next_page_token;
    }
}

/// The deletions a restore or approve form names: ticked ids, plus every
/// deletion in `status` of each whole plan (`job`) it names.
async fn selected(
    app: &App,
    caller: &Caller,
    body: &Bytes,
    status: DeletionStatus,
) -> Result<Vec<i64>, ConsoleError> {
    let form = Form::verified(caller, body)?;
    let mut ids = form.ids("id")?;
    for job in form.ids("job")? {
        ids.extend(plan_ids(app, caller, job, status).await?);
    }
    if ids.is_empty() {
        return Err(ConsoleError::BadRequest("select at least one deletion".into()));
    }
    Ok(ids)
}

pub async fn restore(
    State(app): State<App>,
    caller: Caller,
    body: Bytes,
) -> Result<Html<String>, ConsoleError> {
    let ids = selected(&app, &caller, &body, DeletionStatus::PendingDelete).await?;
    let mut rows: Vec<(i64, bool, String)> = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(PER_CALL) {
        let message = v1::RestoreDeletionsRequest { ids: chunk.to_vec() };
        let answer = app.backend.scrubber().restore_deletions(request(&caller, message)).await?;
        rows.extend(answer.into_inner().outcomes.into_iter().map(|o| (o.id, o.restored, o.reason)));
    }
    Ok(outcome_page(&caller, "Restored", &rows))
}

pub async fn approve(
    State(app): State<App>,
    caller: Caller,
    body: Bytes,
) -> Result<Html<String>, ConsoleError> {
    let ids = selected(&app, &caller, &body, DeletionStatus::AwaitingApproval).await?;
    let mut rows: Vec<(i64, bool, String)> = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(PER_CALL) {
        let message = v1::ApproveDeletionsRequest { ids: chunk.to_vec() };
        let answer = app.backend.scrubber().approve_deletions(request(&caller, message)).await?;
        rows.extend(answer.into_inner().outcomes.into_iter().map(|o| (o.id, o.approved, o.reason)));
    }
    Ok(outcome_page(&caller, "Approved", &rows))
}

fn outcome_page(caller: &Caller, done: &str, rows: &[(i64, bool, String)]) -> Html<String> {
    let ok = rows.iter().filter(|r| r.1).count();
    tracing::info!(action = %done.to_lowercase(), done = ok, asked = rows.len(), "deletions acted on from the console");
    let body = html! {
        p role="status" #outcome { (done) " " (ok) " of " (rows.len()) "." }
        @if rows.len() >= MAX_PLAN {
            p.warning { "A plan acts on at most " (MAX_PLAN) " deletions at once: act again for the rest." }
        }
        table {
            thead { tr { th scope="col" { "Deletion" } th scope="col" { "Outcome" } } }
            tbody {
                @for (id, yes, reason) in rows {
                    tr { td.num { (id) } td { @if *yes { (done.to_lowercase()) } @else { "not " (done.to_lowercase()) ": " (reason) } } }
                }
            }
        }
        p { a href="/deletions" { "Back to the pending deletions" } }
    };
    view::page(caller, "/deletions", done, body)
}
