//! The client: requests with auth and retries, and the registry calls a
//! cleanup needs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, LOCATION, RETRY_AFTER, WWW_AUTHENTICATE,
};
use reqwest::{Method, Response, StatusCode};
use sha2::{Digest as _, Sha256};

use crate::credentials::Credentials;
use crate::gate::Gate;
use crate::headers::{next_link, parse_challenge, retry_after};
use crate::manifest::{Descriptor, Manifest, media_types};
use crate::token::{self, TokenCache};
use crate::{Error, validate_digest, validate_repository_name, validate_tag};

/// Largest manifest read.
const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;
/// Largest image config read.
const MAX_CONFIG_BYTES: usize = 8 * 1024 * 1024;
/// Most pages followed for one tag list.
const MAX_PAGES: usize = 100_000;
/// Tags asked for per page by default.
const TAGS_PAGE: u32 = 1000;
/// First backoff step; doubled per retry, with jitter.
const BACKOFF_START: Duration = Duration::from_millis(100);

/// How to reach one registry.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    pub base_url: String,
    pub credentials: Credentials,
    /// Per request.
    pub timeout: Duration,
    /// Retries of one request on 429, 503 and transport errors.
    pub max_retries: u32,
    /// Cap of one wait between retries (`Retry-After` included).
    pub max_retry_wait: Duration,
    /// Tags asked for per page of a tag list.
    pub tags_page_size: u32,
    /// Paces every request (rate limits); none by default.
    pub gate: Option<Arc<dyn Gate>>,
}

impl std::fmt::Debug for dyn Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Gate")
    }
}

impl ClientConfig {
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            credentials: Credentials::Anonymous,
            timeout: Duration::from_secs(30),
            max_retries: 5,
            max_retry_wait: Duration::from_secs(60),
            tags_page_size: TAGS_PAGE,
            gate: None,
        }
    }
}

/// One tag, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagInfo {
    pub tag: String,
    pub digest: String,
    pub media_type: String,
    pub created: Option<DateTime<Utc>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteOutcome {
    Deleted,
    NotFound,
}

struct Inner {
    base: url::Url,
    base_text: String,
    http: reqwest::Client,
    /// Token requests to the registry's own origin: no redirects.
    token_own: reqwest::Client,
    /// Token requests elsewhere: no redirects, internal addresses refused.
    token_foreign: reqwest::Client,
    config: ClientConfig,
    tokens: TokenCache,
    /// The registry asked for Basic auth: send it up front from now on.
    basic: AtomicBool,
}

/// A registry client; cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

/// A request to send, rebuilt for every attempt.
struct Call<'a> {
    method: Method,
    url: url::Url,
    accept: Option<&'a str>,
    content_type: Option<&'a str>,
    body: Option<&'a [u8]>,
    /// Key of the bearer token this call needs (the token scope).
    scope: String,
}

fn pull_scope(repository: &str) -> String {
    format!("repository:{repository}:pull")
}

fn reference_ok(reference: &str) -> Result<(), Error> {
    if validate_digest(reference).is_ok() || validate_tag(reference).is_ok() {
        Ok(())
    } else {
        Err(Error::InvalidReference(format!("{reference:?} is neither a tag nor a digest")))
    }
}

fn repository_ok(repository: &str) -> Result<(), Error> {
    validate_repository_name(repository)
        .map_err(|reason| Error::InvalidReference(format!("repository {repository:?}: {reason}")))
}

async fn read_limited(response: Response, limit: usize, what: &str) -> Result<Vec<u8>, Error> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(Error::InvalidResponse(format!("{what} larger than {limit} bytes")));
    }
    let mut response = response;
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Err(Error::InvalidResponse(format!("{what} larger than {limit} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The registry's error for an unexpected status.
async fn status_error(response: Response) -> Error {
    let status = response.status().as_u16();
    let body = read_limited(response, 64 * 1024, "error body").await.unwrap_or_default();
    let first = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("errors")?.get(0).cloned());
    let text = |k: &str| {
        first.as_ref().and_then(|e| e.get(k)?.as_str().map(str::to_string)).unwrap_or_default()
    };
    Error::Status { status, code: text("code"), message: text("message") }
}

fn sha256(body: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(body)))
}

impl Client {
    pub fn new(config: ClientConfig) -> Result<Self, Error> {
        let text = config.base_url.trim_end_matches('/').to_string();
        let base =
            url::Url::parse(&text).map_err(|e| Error::InvalidConfig(format!("base url: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none_or(str::is_empty) {
            return Err(Error::InvalidConfig("base url must be http(s)://host[:port]".into()));
        }
        if base.query().is_some() || base.fragment().is_some() || !base.username().is_empty() {
            return Err(Error::InvalidConfig(
                "base url must have no user, query or fragment".into(),
            ));
        }
        let build = |redirects: reqwest::redirect::Policy, guarded: bool| {
            let builder = reqwest::Client::builder();
            let builder = if guarded {
                builder.dns_resolver(std::sync::Arc::new(crate::realm::GuardedResolver))
            } else {
                builder
            };
            builder
                .timeout(config.timeout)
                .connect_timeout(Duration::from_secs(10))
                .redirect(redirects)
                .user_agent(concat!("regsweep/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| Error::InvalidConfig(format!("http client: {e}")))
        };
        let http = build(reqwest::redirect::Policy::limited(5), false)?;
        // Credentials go to the realm only, never where it redirects, and a
        // foreign realm only to addresses outside the network.
        let token_own = build(reqwest::redirect::Policy::none(), false)?;
        let token_foreign = build(reqwest::redirect::Policy::none(), true)?;
        Ok(Self {
            inner: Arc::new(Inner {
                base,
                base_text: text,
                http,
                token_own,
                token_foreign,
                config,
                tokens: TokenCache::default(),
                basic: AtomicBool::new(false),
            }),
        })
    }

    pub fn base_url(&self) -> &str {
        &self.inner.base_text
    }

    fn url(&self, path: &str) -> Result<url::Url, Error> {
        self.inner.base.join(path).map_err(|e| Error::InvalidReference(format!("{path}: {e}")))
    }

    fn backoff(&self, retry: u32) -> Duration {
        let base = BACKOFF_START.saturating_mul(1 << retry.min(16));
        let jittered = base.mul_f64(0.5 + rand::random::<f64>());
        jittered.min(self.inner.config.max_retry_wait)
    }

    /// Sends `call`, answering auth challenges once and retrying 429, 503
    /// and (for idempotent methods) transport errors.
    async fn send(&self, call: &Call<'_>) -> Result<Response, Error> {
        let inner = &self.inner;
        let idempotent = call.method != Method::POST;
        let mut retries = 0;
        let mut challenged = false;
        loop {
            let mut request = inner.http.request(call.method.clone(), call.url.clone());
            let mut headers = HeaderMap::new();
            if let Some(accept) = call.accept {
                headers.insert(
                    ACCEPT,
                    accept.parse().map_err(|_| Error::InvalidConfig("accept".into()))?,
                );
            }
            if let Some(content_type) = call.content_type {
                headers.insert(
                    CONTENT_TYPE,
                    content_type
                        .parse()
                        .map_err(|_| Error::InvalidReference("media type".into()))?,
                );
            }
            request = request.headers(headers);
            if let Some(body) = call.body {
                request = request.body(body.to_vec());
            }
            if let Some(token) = inner.tokens.get(&call.scope) {
                request = request.header(AUTHORIZATION, format!("Bearer {}", token.expose()));
            } else if let (true, Credentials::Basic { username, password }) =
                (inner.basic.load(Ordering::Relaxed), &inner.config.credentials)
            {
                request = request.basic_auth(username, Some(password.expose()));
            }
            if let Some(gate) = &inner.config.gate {
                gate.acquire().await;
            }
            let sent = request.send().await;
            if let Some(gate) = &inner.config.gate {
                gate.observe(sent.as_ref().map_or(0, |r| r.status().as_u16()));
            }
            let response = match sent {
                Ok(response) => response,
                Err(e) if idempotent && retries < inner.config.max_retries => {
                    tracing::debug!(error = %e, retries, "registry request failed, retrying");
                    tokio::time::sleep(self.backoff(retries)).await;
                    retries += 1;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let status = response.status();
            tracing::debug!(method = %call.method, path = call.url.path(), status = status.as_u16(), "registry call");
            match status {
                StatusCode::UNAUTHORIZED if !challenged => {
                    challenged = true;
                    let challenge = response
                        .headers()
                        .get(WWW_AUTHENTICATE)
                        .and_then(|h| h.to_str().ok())
                        .and_then(parse_challenge)
                        .ok_or_else(|| {
                            Error::Unauthorized("401 without a usable WWW-Authenticate".into())
                        })?;
                    match challenge.scheme.as_str() {
                        "basic" => {
                            if inner.config.credentials == Credentials::Anonymous {
                                return Err(Error::Unauthorized(
                                    "registry wants credentials, none configured".into(),
                                ));
                            }
                            inner.basic.store(true, Ordering::Relaxed);
                        }
                        "bearer" => {
                            token::fetch(
                                &inner.token_own,
                                &inner.token_foreign,
                                &inner.base,
                                &inner.tokens,
                                &call.scope,
                                &challenge,
                                &inner.config.credentials,
                            )
                            .await?;
                        }
                        other => {
                            return Err(Error::Unauthorized(format!(
                                "unsupported auth scheme {other:?}"
                            )));
                        }
                    }
                }
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    return Err(Error::Unauthorized(format!(
                        "{status} for {} {}",
                        call.method,
                        call.url.path()
                    )));
                }
                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                    if retries >= inner.config.max_retries {
                        return Err(Error::RateLimited { retries });
                    }
                    let asked = response
                        .headers()
                        .get(RETRY_AFTER)
                        .and_then(|h| h.to_str().ok())
                        .and_then(|h| retry_after(h, Utc::now()));
                    let wait = asked.map_or_else(
                        || self.backoff(retries),
                        |w| w.min(inner.config.max_retry_wait),
                    );
                    tracing::debug!(%status, ?wait, retries, "registry asked to slow down");
                    tokio::time::sleep(wait).await;
                    retries += 1;
                }
                _ => return Ok(response),
            }
        }
    }

    fn call<'a>(&self, method: Method, path: &str, scope: String) -> Result<Call<'a>, Error> {
        Ok(Call {
            method,
            url: self.url(path)?,
            accept: None,
            content_type: None,
            body: None,
            scope,
        })
    }

    pub async fn ping(&self) -> Result<(), Error> {
        let response = self.send(&self.call(Method::GET, "/v2/", String::new())?).await?;
        if response.status().is_success() { Ok(()) } else { Err(status_error(response).await) }
    }

    /// One page of the catalog and the cursor of the next (`None` at the end).
    pub async fn catalog_page(
        &self,
        n: u32,
        cursor: Option<&str>,
    ) -> Result<(Vec<String>, Option<String>), Error> {
        let mut call = self.call(Method::GET, "/v2/_catalog", "registry:catalog:*".into())?;
        call.url.query_pairs_mut().append_pair("n", &n.to_string());
        if let Some(last) = cursor {
            call.url.query_pairs_mut().append_pair("last", last);
        }
        let response = self.send(&call).await?;
        if !response.status().is_success() {
            return Err(status_error(response).await);
        }
        let next = self.next_cursor(&response, "last");
        let body = read_limited(response, MAX_MANIFEST_BYTES, "catalog page").await?;
        let names = string_list(&body, "repositories")?;
        Ok((names, next))
    }

    /// The `param` of the next link (`last`), when there is a next page.
    fn next_cursor(&self, response: &Response, param: &str) -> Option<String> {
        let link = response.headers().get("link")?.to_str().ok()?;
        let next = self.inner.base.join(&next_link(link)?).ok()?;
        next.query_pairs().find(|(k, _)| k == param).map(|(_, v)| v.into_owned())
    }

    /// Every tag of `repository`, following pages.
    pub async fn list_tags(&self, repository: &str) -> Result<Vec<String>, Error> {
        repository_ok(repository)?;
        let mut tags = Vec::new();
        let mut last: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut call = self.call(
                Method::GET,
                &format!("/v2/{repository}/tags/list"),
                pull_scope(repository),
            )?;
            let n = self.inner.config.tags_page_size.max(1);
            call.url.query_pairs_mut().append_pair("n", &n.to_string());
            if let Some(last) = &last {
                call.url.query_pairs_mut().append_pair("last", last);
            }
            let response = self.send(&call).await?;
            if response.status() == StatusCode::NOT_FOUND {
                return Err(Error::NotFound(format!("repository {repository}")));
            }
            if !response.status().is_success() {
                return Err(status_error(response).await);
            }
            let next = self.next_cursor(&response, "last");
            let body = read_limited(response, MAX_MANIFEST_BYTES, "tag list").await?;
            tags.extend(string_list(&body, "tags")?);
            match next {
                // A registry that sends us back where we were would loop.
                Some(next) if last.as_deref() != Some(next.as_str()) => last = Some(next),
                _ => return Ok(tags),
            }
        }
        Err(Error::InvalidResponse(format!("more than {MAX_PAGES} pages of tags")))
    }

    /// The descriptor a tag or digest points at; `None` when absent.
    pub async fn resolve(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Option<Descriptor>, Error> {
        repository_ok(repository)?;
        reference_ok(reference)?;
        let mut call = self.call(
            Method::HEAD,
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
    pub async fn manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Option<Manifest>, Error> {
        repository_ok(repository)?;
        reference_ok(reference)?;
        let mut call = self.call(
            Method::GET,
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
        let header = |name: &str| {
            response.headers().get(name).and_then(|h| h.to_str().ok()).map(str::to_string)
        };
        let content_type = header("content-type").unwrap_or_default();
        let announced = header("docker-content-digest");
        let body = read_limited(response, MAX_MANIFEST_BYTES, "manifest").await?;
        let computed = sha256(&body);
        if validate_digest(reference).is_ok()
            && reference.starts_with("sha256:")
            && computed != reference
        {
            return Err(Error::InvalidResponse(format!(
                "manifest {reference} has digest {computed}"
            )));
        }
        let digest = announced.unwrap_or(computed);
        Manifest::parse(&body, &content_type, digest).map(Some)
    }

    /// Creation time of the image `manifest` describes (see the crate docs).
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

    /// Deletes a manifest by digest (every tag pointing at it goes too).
    pub async fn delete_manifest(
        &self,
        repository: &str,
        digest: &str,
    ) -> Result<DeleteOutcome, Error> {
        repository_ok(repository)?;
        validate_digest(digest)
            .map_err(|reason| Error::InvalidReference(format!("{digest:?}: {reason}")))?;
        let call = self.call(
            Method::DELETE,
            &format!("/v2/{repository}/manifests/{digest}"),
            format!("repository:{repository}:delete"),
        )?;
        let response = self.send(&call).await?;
        match response.status() {
            StatusCode::ACCEPTED | StatusCode::OK | StatusCode::NO_CONTENT => {
                Ok(DeleteOutcome::Deleted)
            }
            StatusCode::NOT_FOUND => Ok(DeleteOutcome::NotFound),
            _ => Err(status_error(response).await),
        }
    }

    /// Stores a manifest under `reference`; returns its digest.
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
        };
        let response = self.send(&put).await?;
        if response.status() != StatusCode::CREATED {
            return Err(status_error(response).await);
        }
        Ok(digest)
    }
}

/// `{"<key>": ["a", "b"]}`, where `null` means none.
fn string_list(body: &[u8], key: &str) -> Result<Vec<String>, Error> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| Error::InvalidResponse(format!("{key} list: {e}")))?;
    match value.get(key) {
        None | Some(serde_json::Value::Null) => Ok(Vec::new()),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| Error::InvalidResponse(format!("{key}: not a string")))
            })
            .collect(),
        Some(_) => Err(Error::InvalidResponse(format!("{key} is not a list"))),
    }
}
