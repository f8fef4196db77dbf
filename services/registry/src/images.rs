//! Reading images: what a tag or digest points at, its manifest, and when
//! the image was created.

use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use sha2::{Digest as _, Sha512};

use crate::client::{
    Client, pull_scope, read_limited, reference_ok, repository_ok, sha256, status_error,
};
use crate::manifest::{Descriptor, Manifest, media_types};
use crate::{Error, validate_digest};

/// Largest manifest read.
const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;
/// Largest image config read.
const MAX_CONFIG_BYTES: usize = 8 * 1024 * 1024;

/// One tag, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagInfo {
    pub tag: String,
    pub digest: String,
    pub media_type: String,
    pub created: Option<DateTime<Utc>>,
}

impl Client {
    /// A HEAD or GET of a manifest with every manifest type accepted; `None`
    /// on 404, the registry's error on any other failure.
    async fn manifest_request(
        &self,
        method: Method,
        repository: &str,
        reference: &str,
    ) -> Result<Option<reqwest::Response>, Error> {
        repository_ok(repository)?;
        reference_ok(reference)?;
        let mut call = self.call(
            method,
            &format!("/v2/{repository}/manifests/{reference}"),
            pull_scope(repository),
        )?;
        call.accept = Some(media_types::ACCEPT);
        let response = self.send(&call).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !response.status().is_success() {
            return Err(status_error(response).await);
        }
        Ok(Some(response))
    }

    /// The descriptor a tag or digest points at; `None` when absent.
    #[tracing::instrument(level = "debug", skip_all, fields(repository = %repository, reference = %reference))]
    pub async fn resolve(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Option<Descriptor>, Error> {
        let Some(response) = self.manifest_request(Method::HEAD, repository, reference).await?
        else {
            return Ok(None);
        };
        let header = |name: &str| {
            response.headers().get(name).and_then(|h| h.to_str().ok()).map(str::to_string)
        };
        let digest = header("docker-content-digest").ok_or_else(|| {
            Error::InvalidResponse("manifest HEAD without Docker-Content-Digest".into())
        })?;
        Ok(Some(Descriptor {
            media_type: header("content-type").unwrap_or_default(),
            digest,
            size: response.content_length().unwrap_or_default(),
        }))
    }

    /// Reads and parses a manifest; `None` when absent.
    #[tracing::instrument(level = "debug", skip_all, fields(repository = %repository, reference = %reference))]
    pub async fn manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Option<Manifest>, Error> {
        let Some(response) = self.manifest_request(Method::GET, repository, reference).await?
        else {
            return Ok(None);
        };
        let header = |name: &str| {
            response.headers().get(name).and_then(|h| h.to_str().ok()).map(str::to_string)
        };
        let content_type = header("content-type").unwrap_or_default();
        let announced = header("docker-content-digest");
        let body = read_limited(response, MAX_MANIFEST_BYTES, "manifest").await?;
        let computed = sha256(&body);
        if validate_digest(reference).is_ok() {
            let actual = if reference.starts_with("sha512:") {
                format!("sha512:{}", hex::encode(Sha512::digest(&body)))
            } else {
                computed.clone()
            };
            if actual != reference {
                return Err(Error::InvalidResponse(format!(
                    "manifest {reference} has digest {actual}"
                )));
            }
        }
        let digest = announced.unwrap_or(computed);
        Manifest::parse(&body, &content_type, digest).map(Some)
    }

    /// A manifest's media type and exact bytes (to put back where it was);
    /// `None` when absent.
    pub async fn raw_manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Option<(String, Vec<u8>)>, Error> {
        let Some(response) = self.manifest_request(Method::GET, repository, reference).await?
        else {
            return Ok(None);
        };
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|h| h.to_str().ok())
            .unwrap_or(media_types::OCI_MANIFEST)
            .to_string();
        let body = read_limited(response, MAX_MANIFEST_BYTES, "manifest").await?;
        if reference.starts_with("sha256:") && sha256(&body) != reference {
            return Err(Error::InvalidResponse(format!("manifest {reference} has another digest")));
        }
        Ok(Some((content_type, body)))
    }

    /// Creation time of the image `manifest` describes: an image's config
    /// `created`, else its `org.opencontainers.image.created` annotation; an
    /// index's own annotation, else that of its linux/amd64 (or first)
    /// child, at most two levels down. `None` when unknown or unparseable.
    #[tracing::instrument(level = "debug", skip_all, fields(repository = %repository, digest = %manifest.digest()))]
    pub async fn created(
        &self,
        repository: &str,
        manifest: &Manifest,
    ) -> Result<Option<DateTime<Utc>>, Error> {
        let mut current = manifest.clone();
        for _ in 0..3 {
            let annotated = current
                .annotations()
                .get("org.opencontainers.image.created")
                .and_then(|c| DateTime::parse_from_rfc3339(c).ok())
                .map(|c| c.with_timezone(&Utc));
            match &current {
                Manifest::Image { config, .. } => {
                    return Ok(self.config_created(repository, config).await?.or(annotated));
                }
                Manifest::Other { .. } => return Ok(annotated),
                Manifest::Index { .. } => {
                    if annotated.is_some() {
                        return Ok(annotated);
                    }
                    let Some(child) = current.representative_child() else { return Ok(None) };
                    let digest = child.digest.clone();
                    match self.manifest(repository, &digest).await? {
                        Some(next) => current = next,
                        None => return Ok(None),
                    }
                }
            }
        }
        Ok(None)
    }

    /// The `created` of an image config blob.
    async fn config_created(
        &self,
        repository: &str,
        config: &Descriptor,
    ) -> Result<Option<DateTime<Utc>>, Error> {
        if validate_digest(&config.digest).is_err() || config.media_type == media_types::OCI_EMPTY {
            return Ok(None);
        }
        let call = self.call(
            Method::GET,
            &format!("/v2/{repository}/blobs/{}", config.digest),
            pull_scope(repository),
        )?;
        let response = self.send(&call).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !response.status().is_success() {
            return Err(status_error(response).await);
        }
        let body = read_limited(response, MAX_CONFIG_BYTES, "image config").await?;
        Ok(serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("created")?.as_str().map(str::to_string))
            .and_then(|c| DateTime::parse_from_rfc3339(&c).ok())
            .map(|c| c.with_timezone(&Utc)))
    }

    /// Digest, type and creation time of one tag; `None` if it is gone.
    #[tracing::instrument(level = "debug", skip_all, fields(repository = %repository, tag = %tag))]
    pub async fn inspect_tag(&self, repository: &str, tag: &str) -> Result<Option<TagInfo>, Error> {
        let Some(manifest) = self.manifest(repository, tag).await? else { return Ok(None) };
        let created = self.created(repository, &manifest).await?;
        Ok(Some(TagInfo {
            tag: tag.to_string(),
            digest: manifest.digest().to_string(),
            media_type: manifest.media_type().to_string(),
            created,
        }))
    }
}
