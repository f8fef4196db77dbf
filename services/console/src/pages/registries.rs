//! Registries: what each can do (probed), how its last catalog sync went,
//! its limits (and the last time it pushed back), and its protection.

use std::collections::HashMap;

use axum::extract::State;
use axum::response::Html;
use chrono::Utc;
use maud::{Markup, html};
use regsweep_proto::v1::{self, Support};

use crate::App;
use crate::backend::request;
use crate::error::ConsoleError;
use crate::session::Caller;
use crate::view;

pub async fn page(State(app): State<App>, caller: Caller) -> Result<Html<String>, ConsoleError> {
    let message = v1::ListRegistriesRequest {};
    let registries = app
        .backend
        .registries()
        .list_registries(request(&caller, message))
        .await?
        .into_inner()
        .registries;
    let syncs = last_syncs(&app, &caller).await?;
    let now = Utc::now();
    let body = html! {
        @if registries.is_empty() { p { "No registries yet: " code { "regsweep registries create" } "." } }
        @else {
            table {
                thead { tr {
                    th scope="col" { "Name" } th scope="col" { "URL" } th scope="col" { "Manifest deletes" }
                    th scope="col" { "Tag deletes" } th scope="col" { "Referrers API" } th scope="col" { "Checked" }
                    th scope="col" { "Last sync" }
                    th scope="col" { "Rate limit" } th scope="col" { "Parallel deletions" } th scope="col" { "Protected" }
                } }
                tbody {
                    @for r in &registries {
                        @let caps = r.capabilities.clone().unwrap_or_default();
                        tr {
                            td { (r.name) }
                            td { code { (r.url) } }
                            td { (support(caps.manifest_deletes())) }
                            td { (support(caps.tag_deletes())) }
                            td { (support(caps.referrers())) }
                            td { (view::ago(view::time(caps.checked_at.as_ref()), now)) @if !caps.detail.is_empty() { div.muted { (caps.detail) } } }
                            td.sync { (sync(syncs.get(r.name.as_str()), now)) }
                            td.num {
                                @if r.rate_limit > 0.0 { (r.rate_limit) "/s" } @else { "none" }
                                @if let Some(p) = &r.pushback {
                                    div.muted.pushback {
                                        "pushed back (" (p.status) ") at " (format!("{:.1}", p.rate)) "/s, "
                                        (view::ago(view::time(p.at.as_ref()), now))
                                    }
                                }
                            }
                            td.num { @if r.max_parallel_deletions > 0 { (r.max_parallel_deletions) } @else { "default" } }
                            td { (protection(r.protection.as_ref())) }
                        }
                    }
                }
            }
        }
    };
    Ok(view::page(&caller, "/registries", "Registries", body))
}

/// Catalog syncs looked at for the "Last sync" column, newest first.
const SYNCS_READ: i32 = 500;

/// The newest catalog sync of each registry among the last [`SYNCS_READ`].
async fn last_syncs(app: &App, caller: &Caller) -> Result<HashMap<String, v1::Job>, ConsoleError> {
    let message = v1::ListJobsRequest {
        kind: "catalog_sync".into(),
        page_size: SYNCS_READ,
        ..Default::default()
    };
    let jobs = app.backend.jobs().list_jobs(request(caller, message)).await?.into_inner().jobs;
    let mut newest = HashMap::new();
    for job in jobs {
        let args = job.args.as_ref().map(regsweep_proto::struct_to_json).unwrap_or_default();
        if let Some(registry) = args.get("registry").and_then(|r| r.as_str()) {
            newest.entry(registry.to_string()).or_insert(job);
        }
    }
    Ok(newest)
}

/// A registry's last sync: its status, when, and why it failed.
fn sync(job: Option<&v1::Job>, now: chrono::DateTime<Utc>) -> Markup {
    let Some(job) = job else {
        return html! { span.muted { "none among the last " (SYNCS_READ) } };
    };
    let when = view::time(job.finished_at.as_ref().or(job.created_at.as_ref()));
    html! {
        a href=(format!("/jobs/{}", job.id)) { (view::badge(job.status().short_name())) }
        " " (view::ago(when, now))
        @if !job.last_error.is_empty() { div.error { (job.last_error) } }
    }
}

fn support(s: Support) -> Markup {
    match s {
        Support::Yes => html! { span.badge.s-done { "yes" } },
        Support::No => html! { span.badge.s-error { "no" } },
        Support::Unspecified => html! { span.muted { "not probed" } },
    }
}

fn protection(p: Option<&v1::RegistryProtection>) -> Markup {
    let Some(p) = p else { return html! { span.muted { "nothing" } } };
    let n = p.tag_patterns.len() + p.digests.len() + p.repository_globs.len();
    html! {
        @if n == 0 { span.muted { "nothing" } }
        @for t in &p.tag_patterns { span.tag title="tag pattern" { (t) } " " }
        @for g in &p.repository_globs { span.tag title="repository glob" { (g) } " " }
        @if !p.digests.is_empty() { span.muted { (p.digests.len()) " digests" } }
    }
}
