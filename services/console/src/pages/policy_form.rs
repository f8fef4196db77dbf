//! The policy form: its fields as typed, their conversion to a policy
//! (local mistakes become field errors before anything is sent), and the
//! scheduler's own field violations put back beside the fields they name.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::response::Html;
use maud::{Markup, html};
use regsweep_proto::v1::{self, AgeSource, AttachmentPolicy};
use regsweep_proto::{duration_from_std, duration_to_std};
use tonic::Code;
use tonic_types::StatusExt as _;

use crate::App;
use crate::backend::request;
use crate::error::ConsoleError;
use crate::pages::policies::decisions;
use crate::pages::rule_rows::{self, RuleRow};
use crate::security::Form;
use crate::session::Caller;
use crate::view;

/// Fields the form edits (all but name and registry, fixed once created).
const EDITABLE: &[&str] = &[
    "repository_selector",
    "cadence",
    "priority",
    "keep_n",
    "older_than",
    "name_regex_delete",
    "name_regex_keep",
    "rules",
    "attachments",
    "age_source",
    "max_delete_fraction",
    "dry_run",
];

/// Messages per form field; `""` holds those that name no field.
#[derive(Debug, Default)]
pub struct Violations(pub BTreeMap<String, Vec<String>>);

impl Violations {
    fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0.entry(field.to_string()).or_default().push(message.into());
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The scheduler's violations: `policy.rules[2].semver` belongs
    /// under the third rule's row; the preview's `repository` beside its
    /// box.
    fn from_status(status: &tonic::Status) -> Self {
        let mut v = Self::default();
        match status.get_details_bad_request() {
            Some(details) => {
                for f in details.field_violations {
                    let path = f.field.strip_prefix("policy.").unwrap_or(&f.field);
                    let field = path.split(['.', '[']).next().unwrap_or("");
                    let field = if field == "repository" { "preview_repository" } else { field };
                    let known = FIELDS.iter().any(|(name, _)| *name == field);
                    let row = path
                        .strip_prefix("rules[")
                        .and_then(|rest| rest.split(']').next())
                        .and_then(|n| n.parse().ok())
                        .map(rule_rows::key);
                    let key = match (row, known) {
                        (Some(row), _) => row,
                        (None, true) => field.to_string(),
                        (None, false) => String::new(),
                    };
                    v.add(&key, format!("{}: {}", f.field, f.description));
                }
            }
            None => v.add("", status.message()),
        }
        v
    }
}

/// Why a save or preview did not happen.
pub enum Refused {
    /// The form: shown again with the errors beside their fields.
    Invalid(Violations),
    /// Anything else (not allowed, the scheduler away).
    Failed(ConsoleError),
}

fn refused(status: tonic::Status) -> Refused {
    match status.code() {
        // The etag the form carries is no longer the policy's.
        Code::Aborted => {
            let mut v = Violations::default();
            v.add(
                "",
                "the policy was changed since this form was opened, and nothing was saved: \
                 open the policy again to see the change (your edits are still below)",
            );
            Refused::Invalid(v)
        }
        Code::InvalidArgument | Code::FailedPrecondition | Code::AlreadyExists => {
            Refused::Invalid(Violations::from_status(&status))
        }
        _ => Refused::Failed(ConsoleError::Service(status)),
    }
}

/// The form's fields as typed.
#[derive(Debug, Default, Clone)]
pub struct PolicyForm {
    pub name: String,
    pub registry: String,
    pub values: BTreeMap<&'static str, String>,
    pub live: bool,
    /// The etag of the policy as the form was opened on it: a save never
    /// overwrites a change made since.
    pub etag: String,
    pub rules: Vec<RuleRow>,
    /// Empty rule rows shown after them.
    pub blank_rules: usize,
}

/// Most empty rule rows a form asks for.
const MAX_BLANK_RULES: usize = 10;

/// (field, label), in the form's order.
const FIELDS: &[(&str, &str)] = &[
    ("name", "Name"),
    ("registry", "Registry"),
    ("repository_selector", "Repositories (glob)"),
    ("cadence", "Cadence"),
    ("priority", "Priority"),
    ("keep_n", "Keep newest"),
    ("older_than", "Delete only older than"),
    ("name_regex_delete", "Delete tags matching"),
    ("name_regex_keep", "Always keep tags matching"),
    ("rules", "Rules"),
    ("attachments", "Attachments"),
    ("age_source", "Age from"),
    ("max_delete_fraction", "Hold plans deleting more than (0-1)"),
    ("live", "Live (not a dry run)"),
    ("preview_repository", "Preview on repository"),
];

impl PolicyForm {
    pub fn from_policy(p: &v1::Policy) -> Self {
        let older = p.older_than.as_ref().and_then(duration_to_std).unwrap_or_default();
        let values = BTreeMap::from([
            ("repository_selector", p.repository_selector.clone()),
            ("cadence", p.cadence.clone()),
            ("priority", p.priority.to_string()),
            ("keep_n", p.keep_n.to_string()),
            (
                "older_than",
                if older.is_zero() {
                    "0s".into()
                } else {
                    humantime::format_duration(older).to_string()
                },
            ),
            ("name_regex_delete", p.name_regex_delete.clone()),
            ("name_regex_keep", p.name_regex_keep.clone()),
            ("attachments", p.attachments().as_str_name().to_string()),
            ("age_source", p.age_source().as_str_name().to_string()),
            ("max_delete_fraction", p.max_delete_fraction.to_string()),
        ]);
        Self {
            name: p.name.clone(),
            registry: p.registry.clone(),
            values,
            live: !p.dry_run,
            etag: p.etag.clone(),
            rules: p.rules.iter().map(RuleRow::from_proto).collect(),
            blank_rules: 1,
        }
    }

    pub fn from_fields(form: &Form) -> Self {
        let mut values = BTreeMap::new();
        for (field, _) in FIELDS {
            if let Some(v) = form.get(field) {
                values.insert(*field, v.to_string());
            }
        }
        Self {
            name: form.get("name").unwrap_or("").trim().to_string(),
            registry: form.get("registry").unwrap_or("").to_string(),
            values,
            live: form.get("live") == Some("on"),
            etag: form.get("etag").unwrap_or("").to_string(),
            rules: rule_rows::from_form(form),
            blank_rules: form
                .get("blank_rules")
                .and_then(|n| n.parse().ok())
                .unwrap_or(1)
                .min(MAX_BLANK_RULES),
        }
    }

    fn value(&self, field: &str) -> &str {
        match field {
            "name" => &self.name,
            "registry" => &self.registry,
            _ => self.values.get(field).map_or("", String::as_str),
        }
    }

    /// The policy the form describes; what cannot even be parsed is a
    /// field error here (the scheduler validates the rest).
    pub fn to_policy(&self) -> Result<v1::Policy, Violations> {
        let mut v = Violations::default();
        let int = |field: &str, v: &mut Violations| -> i32 {
            let text = self.value(field).trim();
            if text.is_empty() {
                return 0;
            }
            text.parse().unwrap_or_else(|_| {
                v.add(field, "a whole number");
                0
            })
        };
        let (priority, keep_n) = (int("priority", &mut v), int("keep_n", &mut v));
        let older_than = match self.value("older_than").trim() {
            "" => Duration::ZERO,
            text => regsweep_common::duration::parse(text).unwrap_or_else(|e| {
                v.add("older_than", e);
                Duration::ZERO
            }),
        };
        let fraction = match self.value("max_delete_fraction").trim() {
            "" => 0.0,
            text => text.parse().unwrap_or_else(|_| {
                v.add("max_delete_fraction", "a number between 0 and 1");
                0.0
            }),
        };
        let mut rules = Vec::new();
        for (n, row) in self.rules.iter().enumerate() {
            match row.to_proto() {
                Ok(rule) => rules.push(rule),
                Err(problems) => problems.into_iter().for_each(|e| v.add(&rule_rows::key(n), e)),
            }
        }
        let policy = v1::Policy {
            name: self.name.clone(),
            registry: self.registry.clone(),
            repository_selector: self.value("repository_selector").trim().to_string(),
            cadence: self.value("cadence").trim().to_string(),
            priority,
            keep_n,
            older_than: Some(duration_from_std(older_than)),
            name_regex_delete: self.value("name_regex_delete").to_string(),
            name_regex_keep: self.value("name_regex_keep").to_string(),
            rules,
            attachments: AttachmentPolicy::from_str_name(self.value("attachments"))
                .unwrap_or_default()
                .into(),
            age_source: AgeSource::from_str_name(self.value("age_source"))
                .unwrap_or_default()
                .into(),
            max_delete_fraction: fraction,
            dry_run: !self.live,
            ..Default::default()
        };
        if v.is_empty() { Ok(policy) } else { Err(v) }
    }
}

pub async fn registries(app: &App, caller: &Caller) -> Result<Vec<String>, ConsoleError> {
    let listed = app
        .backend
        .registries()
        .list_registries(request(caller, v1::ListRegistriesRequest {}))
        .await?;
    Ok(listed.into_inner().registries.into_iter().map(|r| r.name).collect())
}

/// Creates (no `name`) or updates the policy.
pub async fn save(
    app: &App,
    caller: &Caller,
    name: Option<&str>,
    form: &PolicyForm,
) -> Result<(), Refused> {
    let policy = form.to_policy().map_err(Refused::Invalid)?;
    let mut policies = app.backend.policies();
    let answer = match name {
        None => {
            let live = form.live;
            let message =
                v1::CreatePolicyRequest { policy: Some(policy), live, ..Default::default() };
            policies.create_policy(request(caller, message)).await.map(drop)
        }
        Some(_) => {
            let update_mask = EDITABLE.iter().map(|f| f.to_string()).collect();
            let message = v1::UpdatePolicyRequest {
                policy: Some(policy),
                update_mask,
                etag: form.etag.clone(),
                ..Default::default()
            };
            policies.update_policy(request(caller, message)).await.map(drop)
        }
    };
    answer.map_err(refused)?;
    tracing::info!(policy = %form.name, "policy saved from the console");
    Ok(())
}

/// What the form's policy would do now to one repository, unsaved.
pub async fn preview(
    app: &App,
    caller: &Caller,
    form: &PolicyForm,
) -> Result<v1::PreviewPolicyResponse, Refused> {
    let mut policy = form.to_policy().map_err(Refused::Invalid)?;
    if policy.registry.is_empty() && !form.name.is_empty() {
        // Editing: the registry is the stored policy's.
        let get = v1::GetPolicyRequest { name: form.name.clone() };
        let stored =
            app.backend.policies().get_policy(request(caller, get)).await.map_err(refused)?;
        policy.registry = stored.into_inner().policy.map(|p| p.registry).unwrap_or_default();
    }
    let repository = form.value("preview_repository").trim().to_string();
    if repository.is_empty() {
        let mut v = Violations::default();
        v.add("preview_repository", "name a repository of the policy's registry to preview");
        return Err(Refused::Invalid(v));
    }
    let message =
        v1::PreviewPolicyRequest { policy: String::new(), repository, draft: Some(policy) };
    let preview =
        app.backend.policies().preview_policy(request(caller, message)).await.map_err(refused)?;
    Ok(preview.into_inner())
}

/// The stored policy, read-only.
pub fn facts(p: &v1::Policy) -> Markup {
    let form = PolicyForm::from_policy(p);
    html! {
        dl.facts {
            dt { "Registry" } dd { (p.registry) }
            @for (field, label) in &FIELDS[2..FIELDS.len() - 2] {
                @let value = form.value(field);
                @if !value.is_empty() { dt { (label) } dd { code { (value) } } }
            }
            dt { "Mode" } dd { @if p.dry_run { "dry run" } @else { "live" } @if p.disabled { ", disabled" } }
            dt { "Repositories" } dd { a href=(format!("/repositories?policy={}", p.name)) { (p.repository_count) } }
            dt { "Revision" } dd { code { (p.revision) } }
            @for w in &p.warnings { dt { "Warning" } dd.warning { (w) } }
        }
        @if !p.rules.is_empty() {
            h2 { "Rules" }
            pre { (serde_json::to_string_pretty(&p.rules).unwrap_or_default()) }
        }
    }
}

fn input(
    form: &PolicyForm,
    field: &str,
    violations: &Violations,
    locked: bool,
    registries: &[String],
) -> Markup {
    let errors = violations.0.get(field);
    let described = errors.map(|_| format!("err-{field}"));
    let id = format!("p-{field}");
    let value = form.value(field);
    let control = match field {
        "rules" => {
            let rows = rule_rows::render(&form.rules, form.blank_rules.min(MAX_BLANK_RULES), |n| {
                violations.0.get(&rule_rows::key(n))
            });
            return html! {
                input type="hidden" name="blank_rules" value=(form.blank_rules);
                (rows)
                @if let Some(errors) = errors {
                    div.error id=(described.unwrap_or_default()) role="alert" { @for e in errors { div { (e) } } }
                }
            };
        }
        "live" => {
            html! { input #(id) type="checkbox" name="live" checked[form.live] aria-describedby=[described.clone()]; }
        }
        "registry" if !locked && !registries.is_empty() => html! {
            select #(id) name="registry" aria-describedby=[described.clone()] {
                @for r in registries { option value=(r) selected[r == value] { (r) } }
            }
        },
        "attachments" => select(
            &id,
            field,
            value,
            "ATTACHMENT_POLICY_",
            &[
                AttachmentPolicy::DeleteWithSubject.as_str_name(),
                AttachmentPolicy::Keep.as_str_name(),
            ],
        ),
        "age_source" => select(
            &id,
            field,
            value,
            "AGE_SOURCE_",
            &[
                AgeSource::Auto.as_str_name(),
                AgeSource::Created.as_str_name(),
                AgeSource::FirstSeen.as_str_name(),
            ],
        ),
        _ => {
            html! { input #(id) name=(field) value=(value) readonly[locked] aria-invalid=[errors.map(|_| "true")] aria-describedby=[described.clone()]; }
        }
    };
    let label = FIELDS.iter().find(|(f, _)| *f == field).map_or(field, |(_, l)| l);
    html! {
        div.field {
            label for=(id) { (label) }
            (control)
            @if let Some(errors) = errors {
                div.error id=(described.unwrap_or_default()) role="alert" { @for e in errors { div { (e) } } }
            }
        }
    }
}

fn select(id: &str, field: &str, value: &str, prefix: &str, options: &[&str]) -> Markup {
    let shown: Vec<String> =
        options.iter().map(|o| view::state_name(o, prefix).replace('_', " ")).collect();
    let mut choices = vec![("", "default")];
    choices.extend(options.iter().copied().zip(shown.iter().map(String::as_str)));
    view::select(id, field, None, value, &choices)
}

pub fn page(
    caller: &Caller,
    name: Option<&str>,
    form: &PolicyForm,
    registries: &[String],
    violations: &Violations,
    preview: Option<&v1::PreviewPolicyResponse>,
) -> Html<String> {
    let action = name.map_or("/policies/new".to_string(), |n| format!("/policies/{n}/edit"));
    let body = html! {
        @if let Some(general) = violations.0.get("") {
            div.error role="alert" #form-errors { @for e in general { p { (e) } } }
        }
        form.policy method="post" action=(action) {
            (view::csrf_field(caller))
            @if name.is_some() { input type="hidden" name="etag" value=(form.etag); }
            @for (field, _) in FIELDS {
                (input(form, field, violations, name.is_some() && matches!(*field, "name" | "registry"), registries))
            }
            div.actions {
                button type="submit" name="action" value="save" { "Save" }
                button type="submit" name="action" value="preview" { "Preview the impact of saving" }
            }
        }
        @if let Some(preview) = preview { h2 { "If saved" } (decisions(preview)) }
    };
    let title = name.map_or("New policy".to_string(), |n| format!("Edit policy {n}"));
    view::page(caller, "/policies", &title, body)
}
