//! Workers: their capacity per kind, what they run, and changing it.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::header::LOCATION;
use axum::response::{Html, IntoResponse, Response};
use chrono::Utc;
use maud::html;
use regsweep_proto::v1;

use crate::App;
use crate::backend::request;
use crate::error::ConsoleError;
use crate::permissions::Action;
use crate::security::Form;
use crate::session::Caller;
use crate::view;

/// Largest capacity the form offers to set (the scheduler has its own
/// limit and says so).
const MAX_CAPACITY: u32 = 10_000;

pub async fn page(State(app): State<App>, caller: Caller) -> Result<Html<String>, ConsoleError> {
    let mut jobs = app.backend.jobs();
    let message = v1::ListWorkersRequest { page_size: 200, ..Default::default() };
    let workers = jobs.list_workers(request(&caller, message)).await?.into_inner().workers;
    let probe = v1::SetWorkerCapacityRequest::default();
    let probe = async { jobs.set_worker_capacity(request(&caller, probe)).await.map(drop) };
    let change = app.permissions.may(&caller, Action::SetCapacity, probe).await;
    let now = Utc::now();
    let body = html! {
        @if workers.is_empty() { p { "No worker is connected." } }
        @for w in &workers {
            section.worker aria-labelledby=(format!("w-{}", w.id)) {
                h2 id=(format!("w-{}", w.id)) { (w.name) " " (view::badge(w.status().short_name())) }
                p.muted { (w.id) " · " (w.version) " · last heartbeat " (view::ago(view::time(w.last_heartbeat.as_ref()), now)) }
                form method="post" action=(format!("/workers/{}/capacity", w.id)) {
                    (view::csrf_field(&caller))
                    table {
                        thead { tr { th scope="col" { "Kind" } th scope="col" { "Running" } th scope="col" { "Capacity" } } }
                        tbody {
                            @for (kind, capacity) in &w.capacity {
                                @let id = format!("cap-{}-{kind}", w.id);
                                tr {
                                    td { label for=(id) { (kind) } }
                                    td.num { (w.running.get(kind).copied().unwrap_or(0)) }
                                    td { input #(id) type="number" min="0" max=(MAX_CAPACITY) name=(format!("capacity.{kind}")) value=(capacity) disabled[change.is_err()]; }
                                }
                            }
                        }
                    }
                    @match &change {
                        Ok(()) => button type="submit" { "Change capacity" },
                        Err(why) => { button type="submit" disabled aria-describedby=(format!("why-{}", w.id)) { "Change capacity" } span.why id=(format!("why-{}", w.id)) { (why) } }
                    }
                }
            }
        }
    };
    Ok(view::page(&caller, "/workers", "Workers", body))
}

pub async fn set_capacity(
    State(app): State<App>,
    caller: Caller,
    Path(worker_id): Path<String>,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    let form = Form::verified(&caller, &body)?;
    let mut capacity = BTreeMap::new();
    for (key, value) in &form.0 {
        let Some(kind) = key.strip_prefix("capacity.") else { continue };
        let n: u32 = value.trim().parse().map_err(|_| {
            ConsoleError::BadRequest(format!(
                "capacity of {kind} must be a whole number, not {value:?}"
            ))
        })?;
        capacity.insert(kind.to_string(), n);
    }
    let message = v1::SetWorkerCapacityRequest {
        worker_id: worker_id.clone(),
        capacity: capacity.into_iter().collect(),
    };
    app.backend.jobs().set_worker_capacity(request(&caller, message)).await?;
    tracing::info!(worker_id = %worker_id, "capacity changed from the console");
    Ok((StatusCode::SEE_OTHER, [(LOCATION, "/workers")]).into_response())
}
