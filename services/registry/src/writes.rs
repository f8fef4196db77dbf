//! Writing calls: deleting manifests by digest, and the uploads a
//! placeholder image needs (a config blob and a manifest).

use reqwest::header::LOCATION;
use reqwest::{Method, StatusCode};

use crate::client::{Call, Client, LastCheck, reference_ok, repository_ok, sha256, status_error};
use crate::{Error, validate_digest};

/// What a delete by digest found; deleting what is gone is not an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteOutcome {
    Deleted,
    NotFound,
}

impl Client {
    /// Deletes a manifest by digest (every tag pointing at it goes too).
    #[tracing::instrument(level = "debug", skip_all, fields(repository = %repository, digest = %digest))]
    pub async fn delete_manifest(
        &self,
        repository: &str,
        digest: &str,
    ) -> Result<DeleteOutcome, Error> {
        self.delete(repository, digest, None).await
    }

    async fn delete(
        &self,
        repository: &str,
        digest: &str,
        last_check: Option<LastCheck<'_>>,
    ) -> Result<DeleteOutcome, Error> {
        repository_ok(repository)?;
        validate_digest(digest)
            .map_err(|reason| Error::InvalidReference(format!("{digest:?}: {reason}")))?;
        let mut call = self.call(
            Method::DELETE,
            &format!("/v2/{repository}/manifests/{digest}"),
            format!("repository:{repository}:delete"),
        )?;
        call.last_check = last_check;
        let response = self.send(&call).await?;
        match response.status() {
            StatusCode::ACCEPTED | StatusCode::OK | StatusCode::NO_CONTENT => {
                Ok(DeleteOutcome::Deleted)
            }
            StatusCode::NOT_FOUND => Ok(DeleteOutcome::NotFound),
            _ => Err(status_error(response).await),
        }
    }

    /// Deletes a manifest by digest if `check`, made right before the
    /// request leaves (after any wait for the registry's rate limit), still
    /// says yes; `None` when it said no and nothing was sent.
    #[tracing::instrument(level = "debug", skip_all, fields(repository = %repository, digest = %digest))]
    pub async fn delete_manifest_checked(
        &self,
        repository: &str,
        digest: &str,
        check: LastCheck<'_>,
    ) -> Result<Option<DeleteOutcome>, Error> {
        match self.delete(repository, digest, Some(check)).await {
            Ok(outcome) => Ok(Some(outcome)),
            Err(Error::Withdrawn) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether the registry deletes manifests in `repository`, asked with
    /// no side effect: a DELETE of a digest that cannot exist answers 404
    /// where deletes are enabled, 405 (or 400) `UNSUPPORTED` where not.
    pub async fn deletes_allowed(&self, repository: &str) -> Result<bool, Error> {
        let nothing = format!("sha256:{}", "0".repeat(64));
        match self.delete_manifest(repository, &nothing).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_unsupported() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Stores a manifest under `reference`; returns its digest.
    #[tracing::instrument(level = "debug", skip_all, fields(repository = %repository, reference = %reference))]
    pub async fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        media_type: &str,
        body: Vec<u8>,
    ) -> Result<String, Error> {
        repository_ok(repository)?;
        reference_ok(reference)?;
        let mut call = self.call(
            Method::PUT,
            &format!("/v2/{repository}/manifests/{reference}"),
            format!("repository:{repository}:pull,push"),
        )?;
        call.content_type = Some(media_type);
        call.body = Some(&body);
        let response = self.send(&call).await?;
        if !response.status().is_success() {
            return Err(status_error(response).await);
        }
        Ok(response
            .headers()
            .get("docker-content-digest")
            .and_then(|h| h.to_str().ok())
            .map_or_else(|| sha256(&body), str::to_string))
    }

    /// Uploads a blob in one request unless the registry has it; returns
    /// its digest.
    #[tracing::instrument(level = "debug", skip_all, fields(repository = %repository, size = body.len()))]
    pub async fn upload_blob(&self, repository: &str, body: Vec<u8>) -> Result<String, Error> {
        repository_ok(repository)?;
        let digest = sha256(&body);
        let scope = format!("repository:{repository}:pull,push");
        let head =
            self.call(Method::HEAD, &format!("/v2/{repository}/blobs/{digest}"), scope.clone())?;
        if self.send(&head).await?.status().is_success() {
            return Ok(digest);
        }
        let start =
            self.call(Method::POST, &format!("/v2/{repository}/blobs/uploads/"), scope.clone())?;
        let response = self.send(&start).await?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(status_error(response).await);
        }
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|h| h.to_str().ok())
            .ok_or_else(|| Error::InvalidResponse("upload without Location".into()))?;
        let mut url = self
            .inner
            .base
            .join(location)
            .map_err(|e| Error::InvalidResponse(format!("upload location: {e}")))?;
        url.query_pairs_mut().append_pair("digest", &digest);
        let put = Call {
            method: Method::PUT,
            url,
            accept: None,
            content_type: Some("application/octet-stream"),
            body: Some(&body),
            scope,
            last_check: None,
        };
        let response = self.send(&put).await?;
        if response.status() != StatusCode::CREATED {
            return Err(status_error(response).await);
        }
        Ok(digest)
    }
}
