//! `RecordTagSightings`: when each tag was first seen on its digest.

use std::collections::HashSet;

use chrono::Utc;
use regsweep_common::FieldViolations;
use regsweep_proto::{timestamp_from_chrono, timestamp_to_chrono, v1};

use crate::error::ApiError;
use crate::store::catalog::CatalogStore;
use crate::store::sightings::{Sighting, SightingBatch};

/// Most sightings in one request: about 2 MB of tags and digests.
pub const MAX_SIGHTINGS: usize = 10_000;

/// Checks a request; the sightings as the store takes them.
pub fn validate(req: &v1::RecordTagSightingsRequest) -> Result<Vec<Sighting>, FieldViolations> {
    let mut v = FieldViolations::new();
    if req.registry.is_empty() {
        v.add("registry", "is required");
    }
    if let Err(reason) = regsweep_policy::validate_repository_name(&req.repository) {
        v.add("repository", reason);
    }
    if req.sightings.len() > MAX_SIGHTINGS {
        v.add("sightings", format!("at most {MAX_SIGHTINGS} per request"));
    }
    if req.forget_unseen_since.as_ref().is_some_and(|t| timestamp_to_chrono(t).is_none()) {
        v.add("forget_unseen_since", "is not a valid time");
    }
    let mut seen = HashSet::with_capacity(req.sightings.len());
    // The first bad sighting is reported: one bad batch is one mistake.
    for (i, s) in req.sightings.iter().enumerate().take(MAX_SIGHTINGS) {
        let problem = if let Err(reason) = regsweep_policy::validate_tag(&s.tag) {
            Some(("tag", reason))
        } else if let Err(reason) = regsweep_policy::validate_digest(&s.digest) {
            Some(("digest", reason))
        } else if !seen.insert(s.tag.as_str()) {
            Some(("tag", "listed twice".to_string()))
        } else {
            None
        };
        if let Some((field, reason)) = problem {
            v.add(format!("sightings[{i}].{field}"), reason);
            break;
        }
    }
    v.into_result()?;
    Ok(req
        .sightings
        .iter()
        .map(|s| Sighting { tag: s.tag.clone(), digest: s.digest.clone() })
        .collect())
}

/// Records the sightings of `req`, stamped with the scheduler's clock.
pub async fn record(
    catalog: &dyn CatalogStore,
    req: v1::RecordTagSightingsRequest,
) -> Result<v1::RecordTagSightingsResponse, ApiError> {
    let sightings = validate(&req)?;
    let registry = catalog
        .get_registry(&req.registry)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("registry {:?} not found", req.registry)))?;
    let now = Utc::now();
    let batch = SightingBatch {
        registry_id: registry.id,
        repository: &req.repository,
        sightings: &sightings,
        now,
        forget_unseen_since: req.forget_unseen_since.as_ref().and_then(timestamp_to_chrono),
    };
    let first_seen = catalog.record_sightings(batch).await?;
    Ok(v1::RecordTagSightingsResponse {
        first_seen: first_seen.into_iter().map(timestamp_from_chrono).collect(),
        seen_at: Some(timestamp_from_chrono(now)),
    })
}
