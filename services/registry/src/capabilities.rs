//! What a registry allows, found with probes that change nothing: a DELETE
//! of a digest that cannot exist, a DELETE of a tag that cannot exist, and a
//! referrers listing of a digest that cannot exist.

use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::client::{Client, pull_scope, repository_ok, status_error};

/// Whether a registry was found to allow something.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Support {
    /// Not found out (not probed, or the probe failed: see `detail`).
    #[default]
    Unknown,
    Yes,
    No,
}

/// What a registry allows, as probed in one repository.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Capabilities {
    /// Manifest deletes by digest.
    pub manifest_deletes: Support,
    /// Deleting a tag directly (distribution-spec 1.1 DELETE by tag).
    pub tag_deletes: Support,
    /// The referrers API (`GET /v2/<name>/referrers/<digest>`).
    pub referrers: Support,
    /// The repository probed.
    pub repository: String,
    /// Why something is unknown; empty when every probe answered.
    pub detail: String,
}

/// A digest no manifest has.
fn nothing() -> String {
    format!("sha256:{}", "0".repeat(64))
}

impl Capabilities {
    fn note(&mut self, what: &str, e: &Error) {
        if !self.detail.is_empty() {
            self.detail.push_str("; ");
        }
        self.detail.push_str(&format!("{what}: {e}"));
    }
}

impl Client {
    /// Probes what the registry allows in `repository` (which need not
    /// exist); nothing is changed. A probe that fails leaves its answer
    /// unknown, with the reason in `detail`.
    pub async fn capabilities(&self, repository: &str) -> Capabilities {
        let mut found = Capabilities { repository: repository.into(), ..Default::default() };
        match self.deletes_allowed(repository).await {
            Ok(true) => found.manifest_deletes = Support::Yes,
            Ok(false) => found.manifest_deletes = Support::No,
            Err(e) => found.note("manifest deletes", &e),
        }
        // A registry without deletes deletes no tag either.
        if found.manifest_deletes == Support::No {
            found.tag_deletes = Support::No;
        } else {
            match self.tag_deletes_allowed(repository).await {
                Ok(allowed) => found.tag_deletes = yes_no(allowed),
                Err(e) => found.note("tag deletes", &e),
            }
        }
        match self.serves_referrers(repository).await {
            Ok(served) => found.referrers = yes_no(served),
            Err(e) => found.note("referrers", &e),
        }
        found
    }

    /// DELETE of a tag that cannot exist: 404 where tags can be deleted,
    /// 400 (Distribution 2.8: `DIGEST_INVALID`) or 405 where not.
    async fn tag_deletes_allowed(&self, repository: &str) -> Result<bool, Error> {
        repository_ok(repository)?;
        let tag = format!("regsweep-probe-{:016x}", rand::random::<u64>());
        let call = self.call(
            Method::DELETE,
            &format!("/v2/{repository}/manifests/{tag}"),
            format!("repository:{repository}:delete"),
        )?;
        let response = self.send(&call).await?;
        match response.status() {
            StatusCode::NOT_FOUND | StatusCode::ACCEPTED => Ok(true),
            StatusCode::BAD_REQUEST | StatusCode::METHOD_NOT_ALLOWED => Ok(false),
            _ => Err(status_error(response).await),
        }
    }

    /// The referrers listing of a digest nothing refers to: 200 (an empty
    /// index) where the API is served, 404 where not.
    async fn serves_referrers(&self, repository: &str) -> Result<bool, Error> {
        repository_ok(repository)?;
        let path = format!("/v2/{repository}/referrers/{}", nothing());
        let call = self.call(Method::GET, &path, pull_scope(repository))?;
        let response = self.send(&call).await?;
        match response.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(status_error(response).await),
        }
    }
}

fn yes_no(allowed: bool) -> Support {
    if allowed { Support::Yes } else { Support::No }
}

impl From<Support> for regsweep_proto::v1::Support {
    fn from(s: Support) -> Self {
        match s {
            Support::Unknown => Self::Unspecified,
            Support::Yes => Self::Yes,
            Support::No => Self::No,
        }
    }
}

impl From<&Capabilities> for regsweep_proto::v1::RegistryCapabilities {
    fn from(c: &Capabilities) -> Self {
        Self {
            manifest_deletes: regsweep_proto::v1::Support::from(c.manifest_deletes).into(),
            tag_deletes: regsweep_proto::v1::Support::from(c.tag_deletes).into(),
            referrers: regsweep_proto::v1::Support::from(c.referrers).into(),
            repository: c.repository.clone(),
            detail: c.detail.clone(),
            checked_at: None,
        }
    }
}
