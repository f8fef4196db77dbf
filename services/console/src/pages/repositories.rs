//! Repositories: cleanup status, governing policy and why, last cleanup,
//! what it deleted and freed, its last error; filtered and paged on the
//! server (one page of a million is as quick as one of ten).

use axum::extract::{Query, State};
use axum::response::Html;
use chrono::Utc;
use maud::{Markup, html};
use regsweep_proto::v1::{self, CleanupStatus};
use serde::Deserialize;

use crate::App;
use crate::backend::request;
use crate::error::ConsoleError;
use crate::session::Caller;
use crate::view;

const PAGE_SIZE: i32 = 100;
const STATUSES: &[&str] = &["", "unscheduled", "scheduled", "unfinished", "ongoing"];

#[derive(Debug, Default, Deserialize)]
pub struct Filters {
    #[serde(default)]
    registry: String,
    #[serde(default)]
    policy: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    page: String,
}

fn parse_status(name: &str) -> Result<CleanupStatus, ConsoleError> {
    if name.is_empty() {
        return Ok(CleanupStatus::Unspecified);
    }
    CleanupStatus::from_str_name(&format!("CLEANUP_STATUS_{}", name.to_ascii_uppercase()))
        .ok_or_else(|| ConsoleError::BadRequest(format!("unknown cleanup status {name:?}")))
}

pub async fn page(
    State(app): State<App>,
    caller: Caller,
    Query(f): Query<Filters>,
) -> Result<Html<String>, ConsoleError> {
    let message = v1::ListRepositoriesRequest {
        registry: f.registry.clone(),
        policy: f.policy.clone(),
        cleanup_status: parse_status(&f.status)?.into(),
        page_size: PAGE_SIZE,
        page_token: f.page.clone(),
    };
    let listed =
        app.backend.repositories().list_repositories(request(&caller, message)).await?.into_inner();
    let body = html! {
        (filters(&f))
        (table(&listed.repositories))
        @if !listed.next_page_token.is_empty() {
            @let next = form_urlencoded::Serializer::new(String::new())
                .append_pair("registry", &f.registry).append_pair("policy", &f.policy)
                .append_pair("status", &f.status).append_pair("page", &listed.next_page_token).finish();
            p { a rel="next" href=(format!("/repositories?{next}")) { "Next page" } }
        }
    };
    Ok(view::page(&caller, "/repositories", "Repositories", body))
}

fn filters(f: &Filters) -> Markup {
    html! {
        form.filters method="get" action="/repositories" {
            label for="f-registry" { "Registry" }
            input #f-registry name="registry" value=(f.registry);
            label for="f-policy" { "Policy" }
            input #f-policy name="policy" value=(f.policy);
            label for="f-status" { "Cleanup" }
            select #f-status name="status" {
                @for s in STATUSES {
                    option value=(s) selected[*s == f.status] { @if s.is_empty() { "any" } @else { (s) } }
                }
            }
            button type="submit" { "Filter" }
        }
    }
}

fn table(repositories: &[v1::Repository]) -> Markup {
    let now = Utc::now();
    if repositories.is_empty() {
        return html! { p { "No repositories here." } };
    }
    html! {
        table {
            thead { tr {
                th scope="col" { "Repository" } th scope="col" { "Policy" } th scope="col" { "Cleanup" }
                th scope="col" { "Last cleanup" } th scope="col" { "Deleted" } th scope="col" { "Frees" }
                th scope="col" { "Last error" }
            } }
            tbody {
                @for r in repositories {
                    @let status = view::state_name(r.cleanup_status().as_str_name(), "CLEANUP_STATUS_");
                    tr {
                        td { (r.registry) "/" (r.name) }
                        td {
                            @if r.policy.is_empty() { span.muted { "none" } }
                            @else { a href=(format!("/policies/{}", r.policy)) { (r.policy) } }
                            @if !r.policy_reason.is_empty() { div.muted { (r.policy_reason) } }
                        }
                        td { (view::badge(&status)) }
                        td {
                            (view::ago(view::time(r.cleanup_finished_at.as_ref()), now))
                            @if r.last_job_id > 0 { " " a href=(format!("/jobs/{}", r.last_job_id)) { "job " (r.last_job_id) } }
                        }
                        td.num { (r.last_deleted_count) }
                        td.num { (view::bytes(r.last_reclaimable_bytes)) }
                        td.error { (r.last_error) }
                    }
                }
            }
        }
    }
}
