//! Policies: the list, one policy with a live preview on any of its
//! repositories, and creating and editing one with the scheduler's
//! validation errors beside their fields and the impact of saving (what
//! the changed policy would delete now) before it is saved.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::http::header::LOCATION;
use axum::response::{Html, IntoResponse, Response};
use chrono::Utc;
use maud::{Markup, html};
use regsweep_proto::v1;
use serde::Deserialize;

use crate::App;
use crate::backend::request;
use crate::error::ConsoleError;
use crate::pages::policy_form::{self, PolicyForm, Refused, Violations};
use crate::permissions::Action;
use crate::security::Form;
use crate::session::Caller;
use crate::view;

#[derive(Debug, Default, Deserialize)]
pub struct ListFilters {
    #[serde(default)]
    registry: String,
}

pub async fn list(
    State(app): State<App>,
    caller: Caller,
    Query(f): Query<ListFilters>,
) -> Result<Html<String>, ConsoleError> {
    let message = v1::ListPoliciesRequest { registry: f.registry.clone() };
    let policies = app
        .backend
        .policies()
        .list_policies(request(&caller, message))
        .await?
        .into_inner()
        .policies;
    let body = html! {
        p { a href="/policies/new" { "New policy" } }
        @if policies.is_empty() { p { "No policies yet." } }
        @else {
            table {
                thead { tr {
                    th scope="col" { "Name" } th scope="col" { "Registry" } th scope="col" { "Selects" }
                    th scope="col" { "Priority" } th scope="col" { "Cadence" } th scope="col" { "Mode" }
                    th scope="col" { "Repositories" } th scope="col" { "Warnings" }
                } }
                tbody {
                    @for p in &policies {
                        tr {
                            td { a href=(format!("/policies/{}", p.name)) { (p.name) } }
                            td { (p.registry) }
                            td { code { (p.repository_selector) } }
                            td.num { (p.priority) }
                            td { (p.cadence) }
                            td { (mode(p)) }
                            td.num { a href=(format!("/repositories?policy={}", p.name)) { (p.repository_count) } }
                            td.warning { @for w in &p.warnings { div { (w) } } }
                        }
                    }
                }
            }
        }
    };
    Ok(view::page(&caller, "/policies", "Policies", body))
}

fn mode(p: &v1::Policy) -> Markup {
    match (p.disabled, p.dry_run) {
        (true, _) => view::badge("disabled"),
        (false, true) => view::badge("dry_run"),
        (false, false) => view::badge("live"),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct PreviewQuery {
    #[serde(default)]
    repository: String,
}

pub async fn detail(
    State(app): State<App>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<PreviewQuery>,
) -> Result<Html<String>, ConsoleError> {
    let mut policies = app.backend.policies();
    let get = v1::GetPolicyRequest { name: name.clone() };
    let policy = policies.get_policy(request(&caller, get)).await?.into_inner().policy;
    let policy = policy.ok_or_else(|| ConsoleError::NotFound(format!("policy {name}")))?;
    let preview = if q.repository.is_empty() {
        None
    } else {
        let message = v1::PreviewPolicyRequest {
            policy: name.clone(),
            repository: q.repository.clone(),
            ..Default::default()
        };
        Some(policies.preview_policy(request(&caller, message)).await?.into_inner())
    };
    let probe = async {
        let probe = request(&caller, v1::UpdatePolicyRequest::default());
        policies.update_policy(probe).await.map(drop)
    };
    let edit = app.permissions.may(&caller, Action::EditPolicy, probe).await;
    let body = html! {
        (policy_form::facts(&policy))
        @match &edit {
            Ok(()) => p { a href=(format!("/policies/{name}/edit")) { "Edit" } },
            Err(why) => p.why { "Editing: " (why) },
        }
        h2 { "Preview" }
        form.filters method="get" action=(format!("/policies/{name}")) {
            label for="repository" { "Repository" }
            input #repository name="repository" value=(q.repository) required placeholder="team/app";
            button type="submit" { "Preview" }
        }
        @if let Some(preview) = &preview { (decisions(preview)) }
    };
    Ok(view::page(&caller, "/policies", &format!("Policy {name}"), body))
}

/// A preview: each tag's keep or delete, the rule that decided it, and its
/// age; what it frees.
pub fn decisions(preview: &v1::PreviewPolicyResponse) -> Markup {
    let now = Utc::now();
    html! {
        p #preview-summary {
            "In " (preview.repository) ": deletes " (preview.delete_count) " of " (preview.decisions.len()) " tags ("
            (preview.digest_delete_count) " manifests by digest), frees " (view::bytes(preview.reclaimable_bytes)) "."
        }
        @if !preview.blocked.is_empty() { p.warning role="alert" { "Blocked: " (preview.blocked) } }
        table #decisions {
            thead { tr {
                th scope="col" { "Tag" } th scope="col" { "Decision" } th scope="col" { "Rule" }
                th scope="col" { "Age" } th scope="col" { "Kind" } th scope="col" { "Digest" }
            } }
            tbody {
                @for d in &preview.decisions {
                    @let action = view::state_name(d.action().as_str_name(), "TAG_ACTION_");
                    tr data-tag=(d.tag) data-action=(action) {
                        td { span.tag { (d.tag) } }
                        td { (view::badge(&action)) }
                        td { (d.rule) @if d.rule_position > 0 { " #" (d.rule_position) " " (d.rule_name) } @if !d.shield.is_empty() { div.muted { (d.shield) } } }
                        td { (view::ago(view::time(d.age.as_ref()), now)) @if !d.age_from.is_empty() { span.muted { " (" (d.age_from) ")" } } }
                        td { (d.kind) @if !d.follows.is_empty() { div.muted { "follows " (d.follows) } } }
                        td { code title=(d.digest) { (d.digest.get(..19).unwrap_or(&d.digest)) } }
                    }
                }
            }
        }
    }
}

pub async fn new_form(
    State(app): State<App>,
    caller: Caller,
) -> Result<Html<String>, ConsoleError> {
    let registries = policy_form::registries(&app, &caller).await?;
    Ok(policy_form::page(
        &caller,
        None,
        &PolicyForm::default(),
        &registries,
        &Violations::default(),
        None,
    ))
}

pub async fn edit_form(
    State(app): State<App>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Html<String>, ConsoleError> {
    let get = v1::GetPolicyRequest { name: name.clone() };
    let policy =
        app.backend.policies().get_policy(request(&caller, get)).await?.into_inner().policy;
    let policy = policy.ok_or_else(|| ConsoleError::NotFound(format!("policy {name}")))?;
    let form = PolicyForm::from_policy(&policy);
    Ok(policy_form::page(&caller, Some(&name), &form, &[], &Violations::default(), None))
}

pub async fn create(
    State(app): State<App>,
    caller: Caller,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    submit(app, caller, None, body).await
}

pub async fn update(
    State(app): State<App>,
    caller: Caller,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    submit(app, caller, Some(name), body).await
}

/// Saves the form, or previews it (`action=preview`): the impact of
/// saving, without saving. Errors go beside their fields.
async fn submit(
    app: App,
    caller: Caller,
    name: Option<String>,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    let fields = Form::verified(&caller, &body)?;
    let mut form = PolicyForm::from_fields(&fields);
    if let Some(name) = &name {
        form.name = name.clone();
    }
    let registries = match name {
        None => policy_form::registries(&app, &caller).await?,
        Some(_) => Vec::new(),
    };
    if fields.get("action") == Some("add_rule") {
        // Shown again with one more empty rule row; nothing is sent.
        form.blank_rules += 1;
        let none = Violations::default();
        return Ok(policy_form::page(&caller, name.as_deref(), &form, &registries, &none, None)
            .into_response());
    }
    let outcome = match fields.get("action") {
        Some("preview") => policy_form::preview(&app, &caller, &form).await.map(Some),
        _ => policy_form::save(&app, &caller, name.as_deref(), &form).await.map(|()| None),
    };
    match outcome {
        Ok(None) => Ok((StatusCode::SEE_OTHER, [(LOCATION, format!("/policies/{}", form.name))])
            .into_response()),
        Ok(Some(preview)) => Ok(policy_form::page(
            &caller,
            name.as_deref(),
            &form,
            &registries,
            &Violations::default(),
            Some(&preview),
        )
        .into_response()),
        Err(Refused::Invalid(violations)) => {
            let page =
                policy_form::page(&caller, name.as_deref(), &form, &registries, &violations, None);
            Ok((StatusCode::BAD_REQUEST, page).into_response())
        }
        Err(Refused::Failed(e)) => Err(e),
    }
}
