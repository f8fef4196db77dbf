//! `MarkInUse` and `GetProtection`: what no policy may delete.

use std::collections::HashSet;
use std::time::Duration;

use chrono::Utc;
use regsweep_common::FieldViolations;
use regsweep_proto::{duration_to_std, timestamp_from_chrono, v1};

use crate::error::ApiError;
use crate::store::catalog::{CatalogStore, RegistryRecord};
use crate::store::in_use::InUseMarks;

/// Most images in one `MarkInUse`: about 2 MB of names and digests.
pub const MAX_MARKS: usize = 10_000;
/// Most live marks one repository may hold: a planner must see them all,
/// so more is an error, never a silent cut.
pub const MAX_LIVE_MARKS: u32 = 50_000;
const MIN_TTL: Duration = Duration::from_secs(60);
const MAX_TTL: Duration = Duration::from_secs(30 * 86_400);
const MAX_HOLDER_BYTES: usize = 128;

/// Checks the protection list of a registry definition.
pub fn validate_list(p: Option<&v1::RegistryProtection>, v: &mut FieldViolations) {
    for (field, reason) in spec(p).violations() {
        v.add(format!("registry.protection.{field}"), reason);
    }
}

/// The list as the policy crate reads it.
pub fn spec(p: Option<&v1::RegistryProtection>) -> regsweep_policy::ProtectionSpec {
    p.cloned().unwrap_or_default().into()
}

fn valid_holder(holder: &str) -> bool {
    (1..=MAX_HOLDER_BYTES).contains(&holder.len())
        && holder.bytes().all(|b| b.is_ascii_alphanumeric() || b"._:/-".contains(&b))
}

/// Checks a request; its ttl and images as the store takes them.
fn validate_marks(
    req: &v1::MarkInUseRequest,
) -> Result<(Duration, Vec<(String, String)>), FieldViolations> {
    let mut v = FieldViolations::new();
    if req.registry.is_empty() {
        v.add("registry", "is required");
    }
    if !valid_holder(&req.holder) {
        v.add("holder", format!("must be 1 to {MAX_HOLDER_BYTES} of [A-Za-z0-9._:/-]"));
    }
    let ttl = req.ttl.as_ref().and_then(duration_to_std);
    if !ttl.is_some_and(|t| (MIN_TTL..=MAX_TTL).contains(&t)) {
        v.add("ttl", "must be from 1 minute to 30 days");
    }
    if req.images.len() > MAX_MARKS {
        v.add("images", format!("at most {MAX_MARKS} per request"));
    }
    let mut seen = HashSet::with_capacity(req.images.len());
    for (i, image) in req.images.iter().enumerate().take(MAX_MARKS) {
        let problem =
            if let Err(reason) = regsweep_policy::validate_repository_name(&image.repository) {
                Some(("repository", reason))
            } else if let Err(reason) = regsweep_policy::validate_digest(&image.digest) {
                Some(("digest", reason))
            } else if !seen.insert((image.repository.as_str(), image.digest.as_str())) {
                Some(("digest", "listed twice".to_string()))
            } else {
                None
            };
        // The first bad image is reported: one bad batch is one mistake.
        if let Some((field, reason)) = problem {
            v.add(format!("images[{i}].{field}"), reason);
            break;
        }
    }
    v.into_result()?;
    let images = req.images.iter().map(|i| (i.repository.clone(), i.digest.clone())).collect();
    Ok((ttl.unwrap_or(MIN_TTL), images))
}

async fn registry(catalog: &dyn CatalogStore, name: &str) -> Result<RegistryRecord, ApiError> {
    catalog
        .get_registry(name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("registry {name:?} not found")))
}

/// Marks the images of `req` in use until its ttl from now.
pub async fn mark(
    catalog: &dyn CatalogStore,
    req: v1::MarkInUseRequest,
) -> Result<v1::MarkInUseResponse, ApiError> {
    let (ttl, images) = validate_marks(&req)?;
    let registry = registry(catalog, &req.registry).await?;
    let now = Utc::now();
    let expires_at = now + chrono::Duration::from_std(ttl).unwrap_or_default();
    let marks = InUseMarks {
        registry_id: registry.id,
        holder: &req.holder,
        images: &images,
        now,
        expires_at,
        replace: req.replace,
    };
    let outcome = catalog.mark_in_use(marks).await?;
    tracing::info!(registry = %registry.name, holder = %req.holder, marked = outcome.marked,
        released = outcome.released, %expires_at, "images marked in use");
    Ok(v1::MarkInUseResponse {
        marked: u32::try_from(outcome.marked).unwrap_or(u32::MAX),
        released: u32::try_from(outcome.released).unwrap_or(u32::MAX),
        expires_at: Some(timestamp_from_chrono(expires_at)),
    })
}

/// What may not be deleted from one repository now.
pub async fn get(
    catalog: &dyn CatalogStore,
    req: v1::GetProtectionRequest,
) -> Result<v1::GetProtectionResponse, ApiError> {
    let mut v = FieldViolations::new();
    if req.registry.is_empty() {
        v.add("registry", "is required");
    }
    if let Err(reason) = regsweep_policy::validate_repository_name(&req.repository) {
        v.add("repository", reason);
    }
    v.into_result()?;
    let registry = registry(catalog, &req.registry).await?;
    let now = Utc::now();
    let marks = catalog.live_marks(registry.id, &req.repository, now, MAX_LIVE_MARKS + 1).await?;
    if marks.len() > MAX_LIVE_MARKS as usize {
        return Err(ApiError::FailedPrecondition(format!(
            "repository {:?} has more than {MAX_LIVE_MARKS} digests in use; nothing is planned \
             until marks lapse or are released",
            req.repository
        )));
    }
    let repository_glob =
        registry.protection.repository_glob(&req.repository).unwrap_or_default().to_string();
    Ok(v1::GetProtectionResponse {
        protection: Some((&registry.protection).into()),
        repository_glob,
        in_use: marks
            .into_iter()
            .map(|m| v1::InUseMark {
                digest: m.digest,
                holder: m.holder,
                expires_at: Some(timestamp_from_chrono(m.expires_at)),
            })
            .collect(),
        now: Some(timestamp_from_chrono(now)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

    fn request() -> v1::MarkInUseRequest {
        v1::MarkInUseRequest {
            registry: "r".into(),
            holder: "prod-eu/cluster-1".into(),
            ttl: Some(regsweep_proto::duration_from_std(Duration::from_secs(3600))),
            images: vec![v1::ImageReference { repository: "team/app".into(), digest: D.into() }],
            replace: false,
        }
    }

    fn fields(req: &v1::MarkInUseRequest) -> Vec<String> {
        validate_marks(req)
            .err()
            .map(|v| v.fields().map(String::from).collect())
            .unwrap_or_default()
    }

    #[test]
    fn every_field_is_checked() {
        assert!(fields(&request()).is_empty());
        let bad = v1::MarkInUseRequest {
            registry: String::new(),
            holder: "a b".into(),
            ttl: None,
            images: vec![v1::ImageReference { repository: "Team".into(), digest: "x".into() }],
            replace: false,
        };
        assert_eq!(fields(&bad), ["registry", "holder", "ttl", "images[0].repository"]);
        let mut twice = request();
        twice.images.push(twice.images[0].clone());
        assert_eq!(fields(&twice), ["images[1].digest"]);
        let mut short = request();
        short.ttl = Some(regsweep_proto::duration_from_std(Duration::from_secs(59)));
        assert_eq!(fields(&short), ["ttl"]);
        let mut long = request();
        long.holder = "h".repeat(MAX_HOLDER_BYTES + 1);
        assert_eq!(fields(&long), ["holder"]);
    }

    #[test]
    fn protection_lists_name_the_bad_entry() {
        let mut v = FieldViolations::new();
        let list = v1::RegistryProtection {
            tag_patterns: vec!["ok".into(), "(".into()],
            digests: vec![D.into()],
            repository_globs: vec![],
        };
        validate_list(Some(&list), &mut v);
        assert_eq!(v.fields().collect::<Vec<_>>(), ["registry.protection.tag_patterns[1]"]);
    }
}
