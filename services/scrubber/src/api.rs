//! `regsweep.v1.ScrubberService`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use regsweep_common::{FieldViolations, paging, trace};
use regsweep_proto::v1::{self, DeletionStatus, scrubber_service_server::ScrubberService};
use regsweep_registry::{
    Directory, DirectoryError, validate_digest, validate_repository_name, validate_tag,
};
use tonic::{Request, Response, Status};

use crate::error::ApiError;
use crate::limits::Limits;
use crate::plans::Plans;
use crate::store::{
    DeletionFilter, DeletionStore, LinkedManifests, NewDeletion, StoreError, Submission, TagReason,
    parse_status,
};

/// Most images in one submission.
pub const MAX_IMAGES: usize = 10_000;
/// Most tags of one image.
pub const MAX_TAGS: usize = 10_000;
/// Most manifests deleted with one image (platforms, attachments).
pub const MAX_LINKED: usize = 1_000;
/// Most subjects of one linked manifest.
pub const MAX_SUBJECTS: usize = 1_000;
/// Most ids in one restore or approval.
pub const MAX_RESTORE: usize = 1_000;
const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;
/// Hours of deletions per hour in the status (three days).
const HOURS_SHOWN: i64 = 72;

#[derive(Clone)]
pub struct ScrubberApi {
    pub store: std::sync::Arc<dyn DeletionStore>,
    pub directory: Arc<Directory>,
    pub limits: Arc<Limits>,
    pub plans: Arc<Plans>,
    pub delay: Duration,
    pub parallelism: u32,
    /// Wakes this process's idle claim loop when deletions may be due now
    /// (submitted with no delay, or approved), rather than at its next
    /// poll; other replicas find them at theirs.
    pub due: Arc<tokio::sync::Notify>,
}

/// The plan size a submission carries; all zero (unknown) when absent.
fn plan_size(size: Option<&v1::PlanSize>) -> regsweep_policy::PlanSize {
    size.map(|s| regsweep_policy::PlanSize {
        repository_tags: s.repository_tags,
        repository_images: s.repository_images,
        deleted_tags: s.deleted_tags,
        deleted_images: s.deleted_images,
        leaves_only_latest: s.leaves_only_latest,
    })
    .unwrap_or_default()
}

/// The ids of a restore or an approval, checked.
fn validate_ids(field: &str, ids: &[i64]) -> Result<(), ApiError> {
    let mut v = FieldViolations::new();
    if ids.is_empty() || ids.len() > MAX_RESTORE {
        v.add(field, format!("must hold 1 to {MAX_RESTORE} ids"));
    }
    if let Some(i) = ids.iter().position(|id| *id <= 0) {
        v.add(format!("{field}[{i}]"), "must be a deletion id");
    }
    Ok(v.into_result()?)
}

fn validate_submission(
    req: &v1::SubmitDeletionsRequest,
) -> Result<Vec<NewDeletion>, FieldViolations> {
    let mut v = FieldViolations::new();
    if req.job_id <= 0 {
        v.add("job_id", "must be a job id");
    }
    if req.attempt == 0 {
        v.add("attempt", "must be at least 1");
    }
    if req.registry.is_empty() || req.registry.len() > 64 {
        v.add("registry", "must be a registry name");
    }
    if let Err(reason) = validate_repository_name(&req.repository) {
        v.add("repository", reason);
    }
    if req.images.is_empty() || req.images.len() > MAX_IMAGES {
        v.add("images", format!("must hold 1 to {MAX_IMAGES} images"));
    }
    let mut seen = HashSet::new();
    for (i, image) in req.images.iter().enumerate().take(MAX_IMAGES) {
        if let Err(reason) = validate_digest(&image.digest) {
            v.add(format!("images[{i}].digest"), reason);
        } else if !seen.insert(image.digest.as_str()) {
            v.add(format!("images[{i}].digest"), "appears twice");
        }
        if image.tags.len() > MAX_TAGS {
            v.add(format!("images[{i}].tags"), format!("at most {MAX_TAGS} tags"));
        }
        if image.tags.is_empty() && !image.delete_digest {
            v.add(format!("images[{i}]"), "names no tag and does not delete the digest");
        }
        if let Some((j, reason)) =
            image.tags.iter().enumerate().find_map(|(j, t)| validate_tag(t).err().map(|r| (j, r)))
        {
            v.add(format!("images[{i}].tags[{j}]"), reason);
        }
        validate_linked(&mut v, i, image);
        validate_subjects(&mut v, &format!("images[{i}]"), &image.subjects);
        if image.reasons.len() > MAX_TAGS + MAX_LINKED {
            v.add(format!("images[{i}].reasons"), "more reasons than tags");
        }
    }
    v.into_result()?;
    Ok(req
        .images
        .iter()
        .map(|i| NewDeletion {
            digest: i.digest.clone(),
            tags: i.tags.clone(),
            delete_digest: i.delete_digest,
            linked: LinkedManifests {
                before: i.before.iter().map(Into::into).collect(),
                after: i.after.iter().map(Into::into).collect(),
                subjects: i.subjects.clone(),
            },
            reasons: i
                .reasons
                .iter()
                .map(|r| TagReason { tag: r.tag.clone(), rule: r.rule.clone() })
                .collect(),
        })
        .collect())
}

/// The manifests that go with image `i`: only with its digest, each a
/// valid digest other than the image's, with valid tags, within limits.
fn validate_linked(v: &mut FieldViolations, i: usize, image: &v1::ImageDeletion) {
    let count = image.before.len() + image.after.len();
    if count > 0 && !image.delete_digest {
        v.add(format!("images[{i}]"), "linked manifests go only with a deleted digest");
    }
    if count > MAX_LINKED {
        v.add(format!("images[{i}]"), format!("at most {MAX_LINKED} linked manifests"));
        return;
    }
    let sides = [("before", &image.before), ("after", &image.after)];
    for (side, linked) in sides {
        for (j, l) in linked.iter().enumerate() {
            validate_link(v, &format!("images[{i}].{side}[{j}]"), l, &image.digest);
        }
    }
}

/// One linked manifest, at `field`, of the image `image`.
fn validate_link(v: &mut FieldViolations, field: &str, l: &v1::LinkedManifest, image: &str) {
    if let Err(reason) = validate_digest(&l.digest) {
        v.add(format!("{field}.digest"), reason);
    } else if l.digest == image {
        v.add(format!("{field}.digest"), "is the image itself");
    }
    if l.tags.len() > MAX_TAGS {
        v.add(format!("{field}.tags"), format!("at most {MAX_TAGS} tags"));
    } else if let Some((k, reason)) =
        l.tags.iter().enumerate().find_map(|(k, t)| validate_tag(t).err().map(|r| (k, r)))
    {
        v.add(format!("{field}.tags[{k}]"), reason);
    }
    validate_subjects(v, field, &l.subjects);
}

/// The subjects of the manifest at `field`: digests, within limits.
fn validate_subjects(v: &mut FieldViolations, field: &str, subjects: &[String]) {
    if subjects.len() > MAX_SUBJECTS {
        v.add(format!("{field}.subjects"), format!("at most {MAX_SUBJECTS} subjects"));
    } else if let Some((k, reason)) =
        subjects.iter().enumerate().find_map(|(k, s)| validate_digest(s).err().map(|r| (k, r)))
    {
        v.add(format!("{field}.subjects[{k}]"), reason);
    }
}

#[tonic::async_trait]
impl ScrubberService for ScrubberApi {
    async fn submit_deletions(
        &self,
        request: Request<v1::SubmitDeletionsRequest>,
    ) -> Result<Response<v1::SubmitDeletionsResponse>, Status> {
        let req = request.into_inner();
        let images = validate_submission(&req).map_err(ApiError::from)?;
        match self.directory.get(&req.registry).await {
            Ok(_) => {}
            Err(DirectoryError::Unknown(name)) => {
                return Err(ApiError::from(FieldViolations::single(
                    "registry",
                    format!("no registry named {name:?}"),
                ))
                .into());
            }
            Err(DirectoryError::Scheduler(e)) => {
                return Err(ApiError::Unavailable(format!("scheduler: {e}")).into());
            }
            // A definition whose credentials cannot be read here yet is still
            // a known registry; scrubbing will report the problem.
            Err(DirectoryError::Registry(e)) => {
                tracing::warn!(registry = %req.registry, error = %e, "registry client")
            }
        }
        let vouched = self.plans.vouch(&req).await.inspect_err(|e| {
            tracing::warn!(job_id = req.job_id, attempt = req.attempt, registry = %req.registry,
                repository = %req.repository, error = %e, "plan refused");
        })?;
        let size = plan_size(req.size.as_ref());
        let hold = regsweep_policy::hold_reason(&size, vouched.max_delete_fraction);
        if let Some(reason) = &hold {
            metrics::counter!("regsweep_plans_held_total").increment(1);
            tracing::warn!(job_id = req.job_id, registry = %req.registry, repository = %req.repository,
                policy = %vouched.policy.name, reason = %reason, "plan held for approval");
        }
        let stored = self
            .store
            .submit(&Submission {
                job_id: req.job_id,
                attempt: req.attempt,
                registry: &req.registry,
                repository: &req.repository,
                images: &images,
                delay: self.delay,
                // The rpc's span, a child of the submitting job's.
                trace_context: trace::traceparent(&tracing::Span::current()).as_deref(),
                policy: &vouched.policy,
                hold: hold.as_deref(),
            })
            .await
            .map_err(ApiError::from)?;
        tracing::info!(job_id = req.job_id, attempt = req.attempt, registry = %req.registry,
            repository = %req.repository, images = stored.len(), "deletions submitted");
        if self.delay.is_zero() && hold.is_none() && !stored.is_empty() {
            self.due.notify_one();
        }
        Ok(Response::new(v1::SubmitDeletionsResponse {
            deletions: stored.iter().map(|d| d.to_proto()).collect(),
        }))
    }

    async fn list_deletions(
        &self,
        request: Request<v1::ListDeletionsRequest>,
    ) -> Result<Response<v1::ListDeletionsResponse>, Status> {
        let req = request.into_inner();
        let mut v = FieldViolations::new();
        let limit = paging::page_size(req.page_size, DEFAULT_PAGE, MAX_PAGE, "page_size", &mut v);
        let status = match DeletionStatus::try_from(req.status) {
            Ok(DeletionStatus::Unspecified) => None,
            Ok(status) => Some(status),
            Err(_) => {
                v.add("status", format!("unknown status {}", req.status));
                None
            }
        };
        if !req.tag.is_empty()
            && let Err(reason) = validate_tag(&req.tag)
        {
            v.add("tag", reason);
        }
        let filters = format!(
            "{}|{}|{}|{}|{}",
            req.status, req.registry, req.repository, req.job_id, req.tag
        );
        let before = paging::decode_token(&req.page_token, &filters, "page_token", &mut v);
        v.into_result().map_err(ApiError::from)?;
        let filter = DeletionFilter {
            status,
            registry: (!req.registry.is_empty()).then(|| req.registry.clone()),
            repository: (!req.repository.is_empty()).then(|| req.repository.clone()),
            job_id: (req.job_id != 0).then_some(req.job_id),
            tag: (!req.tag.is_empty()).then(|| req.tag.clone()),
        };
        let page = self.store.list(&filter, before, limit).await.map_err(ApiError::from)?;
        let next_page_token = match page.last() {
            Some(last) if page.len() == limit as usize => paging::encode_token(&filters, last.id),
            _ => String::new(),
        };
        Ok(Response::new(v1::ListDeletionsResponse {
            deletions: page.iter().map(|d| d.to_proto()).collect(),
            next_page_token,
        }))
    }

    async fn restore_deletions(
        &self,
        request: Request<v1::RestoreDeletionsRequest>,
    ) -> Result<Response<v1::RestoreDeletionsResponse>, Status> {
        let ids = request.into_inner().ids;
        validate_ids("ids", &ids)?;
        let outcomes = self.store.restore(&ids).await.map_err(ApiError::from)?;
        let restored = outcomes.iter().filter(|(_, r, _)| *r).count();
        tracing::info!(requested = ids.len(), restored, "deletions restored");
        Ok(Response::new(v1::RestoreDeletionsResponse {
            outcomes: outcomes
                .into_iter()
                .map(|(id, restored, reason)| v1::RestoreOutcome { id, restored, reason })
                .collect(),
        }))
    }

    async fn approve_deletions(
        &self,
        request: Request<v1::ApproveDeletionsRequest>,
    ) -> Result<Response<v1::ApproveDeletionsResponse>, Status> {
        let ids = request.into_inner().ids;
        validate_ids("ids", &ids)?;
        let outcomes = self.store.approve(&ids).await.map_err(ApiError::from)?;
        let approved = outcomes.iter().filter(|(_, a, _)| *a).count();
        tracing::info!(requested = ids.len(), approved, "deletions approved");
        // Held past their delay, approved ones are usually due at once.
        if approved > 0 {
            self.due.notify_one();
        }
        Ok(Response::new(v1::ApproveDeletionsResponse {
            outcomes: outcomes
                .into_iter()
                .map(|(id, approved, reason)| v1::ApproveOutcome { id, approved, reason })
                .collect(),
        }))
    }

    async fn list_registry_requests(
        &self,
        request: Request<v1::ListRegistryRequestsRequest>,
    ) -> Result<Response<v1::ListRegistryRequestsResponse>, Status> {
        let ids = request.into_inner().deletion_ids;
        validate_ids("deletion_ids", &ids)?;
        let requests = self.store.requests(&ids).await.map_err(ApiError::from)?;
        Ok(Response::new(v1::ListRegistryRequestsResponse {
            requests: requests.iter().map(|r| r.to_proto()).collect(),
        }))
    }

    async fn get_scrubber_status(
        &self,
        _request: Request<v1::GetScrubberStatusRequest>,
    ) -> Result<Response<v1::GetScrubberStatusResponse>, Status> {
        let (counts, oldest) = self.store.status().await.map_err(ApiError::from)?;
        let since = chrono::Utc::now() - chrono::Duration::hours(HOURS_SHOWN);
        let hours = self.store.finished_per_hour(since).await.map_err(ApiError::from)?;
        Ok(Response::new(v1::GetScrubberStatusResponse {
            counts: counts
                .into_iter()
                .map(|(status, count)| {
                    Ok(v1::StatusCount { status: parse_status(&status)?.into(), count })
                })
                .collect::<Result<_, StoreError>>()
                .map_err(ApiError::from)?,
            oldest_due_pending_seconds: oldest,
            parallelism: self.parallelism,
            registries: self.limits.snapshot(),
            finished_per_hour: hours
                .into_iter()
                .map(|h| v1::HourCount {
                    hour: Some(regsweep_proto::timestamp_from_chrono(h.hour)),
                    deleted: h.deleted,
                    failed: h.failed,
                })
                .collect(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(digest: &str, tags: &[&str]) -> v1::ImageDeletion {
        v1::ImageDeletion {
            digest: digest.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            delete_digest: false,
            ..Default::default()
        }
    }

    #[test]
    fn submissions_name_every_bad_field() {
        let good = format!("sha256:{}", "a".repeat(64));
        let req = v1::SubmitDeletionsRequest {
            job_id: 0,
            attempt: 0,
            registry: String::new(),
            repository: "Bad".into(),
            images: vec![
                image("sha256:short", &["v1"]),
                image(&good, &["bad tag"]),
                image(&good, &[]),
            ],
            size: None,
        };
        let fields: Vec<String> =
            validate_submission(&req).expect_err("invalid").fields().map(String::from).collect();
        assert_eq!(
            fields,
            [
                "job_id",
                "attempt",
                "registry",
                "repository",
                "images[0].digest",
                "images[1].tags[0]",
                "images[2].digest",
                "images[2]"
            ]
        );
        let ok = v1::SubmitDeletionsRequest {
            job_id: 1,
            attempt: 1,
            registry: "local".into(),
            repository: "team/app".into(),
            images: vec![image(&good, &["v1"])],
            size: None,
        };
        assert_eq!(validate_submission(&ok).expect("valid").len(), 1);
    }

    #[test]
    fn linked_subjects_are_digests_within_limits() {
        let digest = |n: u32| format!("sha256:{n:064x}");
        let linked = |subjects: Vec<String>| v1::LinkedManifest {
            digest: digest(2),
            subjects,
            ..Default::default()
        };
        let mut with_links = image(&digest(1), &["v1"]);
        with_links.delete_digest = true;
        with_links.before = vec![linked(vec![digest(1), "sha256:short".into()])];
        with_links.after = vec![linked((0..=1_000).map(digest).collect())];
        with_links.subjects = vec!["sha256:".into()];
        let mut req = v1::SubmitDeletionsRequest {
            job_id: 1,
            attempt: 1,
            registry: "local".into(),
            repository: "team/app".into(),
            images: vec![with_links],
            size: None,
        };
        let fields: Vec<String> =
            validate_submission(&req).expect_err("invalid").fields().map(String::from).collect();
        let expected = [
            "images[0].before[0].subjects[1]",
            "images[0].after[0].subjects",
            "images[0].subjects[0]",
        ];
        assert_eq!(fields, expected);
        req.images[0].before = vec![linked(vec![digest(1)])];
        req.images[0].after = Vec::new();
        req.images[0].subjects = vec![digest(3)];
        let valid = validate_submission(&req).expect("valid");
        assert_eq!(valid[0].linked.before[0].subjects, [digest(1)]);
        assert_eq!(valid[0].linked.subjects, [digest(3)]);
    }
}
