//! `regsweep.v1.CronService`.

use std::sync::Arc;

use chrono::Utc;
use regsweep_common::FieldViolations;
use regsweep_proto::struct_to_json;
use regsweep_proto::v1::{self, cron_service_server::CronService};
use tonic::{Request, Response, Status};

use super::mask::UpdateMask;
use super::validate::PRIORITY_RANGE;
use crate::error::ApiError;
use crate::store::{CronRecord, JobStore, NewCron};
use crate::{kinds, schedule};

const MAX_NAME_CHARS: usize = 64;
const UPDATABLE: &[&str] = &["schedule", "kind", "args", "disabled", "priority"];

/// Serves cron definitions; the leader fires them.
#[derive(Clone)]
pub struct CronApi {
    store: Arc<dyn JobStore>,
}

impl CronApi {
    pub fn new(store: Arc<dyn JobStore>) -> Self {
        Self { store }
    }
}

fn not_found(name: &str) -> ApiError {
    ApiError::NotFound(format!("cron {name:?} not found"))
}

pub fn validate_name(name: &str, v: &mut FieldViolations) {
    validate_name_as("cron.name", name, v);
}

/// Checks a resource name (crons, registries, policies) under `field`.
pub fn validate_name_as(field: &str, name: &str, v: &mut FieldViolations) {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_CHARS
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
    if !valid {
        v.add(
            field,
            format!(
                "must be 1 to {MAX_NAME_CHARS} of a-z 0-9 - _ . starting with a letter or digit"
            ),
        );
    }
}

/// Checks a cron and computes its first firing after now.
pub fn validate(cron: &v1::Cron) -> Result<NewCron, FieldViolations> {
    let mut v = FieldViolations::new();
    validate_name(&cron.name, &mut v);
    let next_fire_at = match schedule::parse(&cron.schedule) {
        Ok(_) => schedule::next_after(&cron.schedule, Utc::now()),
        Err(reason) => {
            v.add("cron.schedule", reason);
            None
        }
    };
    let args = cron.args.as_ref().map_or_else(|| serde_json::json!({}), struct_to_json);
    if kinds::is_known(&cron.kind) {
        let mut args_v = FieldViolations::new();
        kinds::validate_args(&cron.kind, &args, &mut args_v);
        for field in args_v.fields() {
            v.add(format!("cron.{field}"), "invalid, see CreateJob's rules for this kind");
        }
    } else {
        v.add(
            "cron.kind",
            format!("unknown kind {:?}; known kinds: {}", cron.kind, kinds::KINDS.join(", ")),
        );
    }
    if !PRIORITY_RANGE.contains(&cron.priority) {
        v.add(
            "cron.priority",
            format!("must be between {} and {}", PRIORITY_RANGE.start(), PRIORITY_RANGE.end()),
        );
    }
    v.into_result()?;
    Ok(NewCron {
        name: cron.name.clone(),
        schedule: cron.schedule.trim().to_string(),
        kind: cron.kind.clone(),
        args,
        enabled: !cron.disabled,
        priority: cron.priority,
        next_fire_at: next_fire_at.unwrap_or_else(Utc::now),
    })
}

/// Applies the masked fields of `update` to `current`.
fn merge(
    current: &CronRecord,
    update: &v1::Cron,
    mask: &[String],
) -> Result<v1::Cron, FieldViolations> {
    let mask = UpdateMask::parse(mask, UPDATABLE)?;
    let has = |f: &str| mask.has(f);
    let mut merged = current.to_proto();
    if has("schedule") {
        merged.schedule.clone_from(&update.schedule);
    }
    if has("kind") {
        merged.kind.clone_from(&update.kind);
    }
    if has("args") {
        merged.args.clone_from(&update.args);
    }
    if has("disabled") {
        merged.disabled = update.disabled;
    }
    if has("priority") {
        merged.priority = update.priority;
    }
    Ok(merged)
}

#[tonic::async_trait]
impl CronService for CronApi {
    async fn create_cron(
        &self,
        request: Request<v1::CreateCronRequest>,
    ) -> Result<Response<v1::CreateCronResponse>, Status> {
        let cron = request.into_inner().cron.unwrap_or_default();
        let cron = validate(&cron).map_err(ApiError::from)?;
        let name = cron.name.clone();
        let created = self.store.create_cron(cron).await.map_err(ApiError::from)?;
        let Some(created) = created else {
            return Err(Status::already_exists(format!("cron {name:?} already exists")));
        };
        tracing::info!(cron = %name, schedule = %created.schedule, kind = %created.kind, "cron created");
        Ok(Response::new(v1::CreateCronResponse { cron: Some(created.to_proto()) }))
    }

    async fn get_cron(
        &self,
        request: Request<v1::GetCronRequest>,
    ) -> Result<Response<v1::GetCronResponse>, Status> {
        let name = request.into_inner().name;
        let cron = self
            .store
            .get_cron(&name)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| not_found(&name))?;
        Ok(Response::new(v1::GetCronResponse { cron: Some(cron.to_proto()) }))
    }

    async fn list_crons(
        &self,
        _request: Request<v1::ListCronsRequest>,
    ) -> Result<Response<v1::ListCronsResponse>, Status> {
        let crons = self.store.list_crons().await.map_err(ApiError::from)?;
        Ok(Response::new(v1::ListCronsResponse {
            crons: crons.iter().map(CronRecord::to_proto).collect(),
        }))
    }

    async fn update_cron(
        &self,
        request: Request<v1::UpdateCronRequest>,
    ) -> Result<Response<v1::UpdateCronResponse>, Status> {
        let req = request.into_inner();
        let update = req.cron.unwrap_or_default();
        let current = self
            .store
            .get_cron(&update.name)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| not_found(&update.name))?;
        let merged = merge(&current, &update, &req.update_mask).map_err(ApiError::from)?;
        let mut cron = validate(&merged).map_err(ApiError::from)?;
        if cron.schedule == current.schedule && cron.enabled == current.enabled {
            cron.next_fire_at = current.next_fire_at;
        }
        let updated = self
            .store
            .update_cron(cron)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| not_found(&update.name))?;
        tracing::info!(cron = %updated.name, "cron updated");
        Ok(Response::new(v1::UpdateCronResponse { cron: Some(updated.to_proto()) }))
    }

    async fn delete_cron(
        &self,
        request: Request<v1::DeleteCronRequest>,
    ) -> Result<Response<v1::DeleteCronResponse>, Status> {
        let name = request.into_inner().name;
        if !self.store.delete_cron(&name).await.map_err(ApiError::from)? {
            return Err(not_found(&name).into());
        }
        tracing::info!(cron = %name, "cron deleted");
        Ok(Response::new(v1::DeleteCronResponse {}))
    }
}

#[cfg(test)]
mod tests {
    use regsweep_proto::json_to_struct;
    use serde_json::json;

    use super::*;

    fn cron(name: &str, schedule: &str, kind: &str) -> v1::Cron {
        v1::Cron {
            name: name.into(),
            schedule: schedule.into(),
            kind: kind.into(),
            ..Default::default()
        }
    }

    #[test]
    fn validates_every_field() {
        let mut bad = cron("Bad Name", "* *", "nope");
        bad.priority = 5000;
        let errors = validate(&bad).expect_err("invalid");
        assert_eq!(
            errors.fields().collect::<Vec<_>>(),
            ["cron.name", "cron.schedule", "cron.kind", "cron.priority"]
        );

        let mut gc = cron("gc", "0 3 * * *", "joblogs_gc");
        gc.args = Some(json_to_struct(json!({"older_than_seconds": 5})));
        let errors = validate(&gc).expect_err("invalid");
        assert_eq!(errors.fields().collect::<Vec<_>>(), ["cron.args.older_than_seconds"]);

        let ok = validate(&cron("every-second", "* * * * * *", "false")).expect("valid");
        assert!(ok.enabled);
        assert!(ok.next_fire_at > Utc::now() - chrono::Duration::seconds(1));
    }

    #[test]
    fn update_mask_names_known_fields_only() {
        let current = CronRecord {
            name: "c".into(),
            schedule: "* * * * *".into(),
            kind: "false".into(),
            args: json!({}),
            enabled: true,
            priority: 0,
            next_fire_at: Utc::now(),
            last_fire_at: None,
            last_job_id: None,
            created_at: Utc::now(),
        };
        let update = v1::Cron { priority: 7, schedule: "0 0 * * *".into(), ..Default::default() };
        let merged = merge(&current, &update, &["priority".to_string()]).expect("valid mask");
        assert_eq!((merged.priority, merged.schedule.as_str()), (7, "* * * * *"));
        assert!(merge(&current, &update, &["name".to_string()]).is_err());
    }
}
