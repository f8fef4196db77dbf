//! The client and how it sends a request: auth challenges answered,
//! 429/503 and transport errors retried. The registry calls themselves are
//! in `listing`, `images` and `writes`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::Utc;
use regsweep_common::backoff::Backoff;
use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, RETRY_AFTER, WWW_AUTHENTICATE,
};
use reqwest::{Method, Response, StatusCode};
use sha2::{Digest as _, Sha256};

use crate::credentials::Credentials;
use crate::gate::Gate;
use crate::headers::{parse_challenge, retry_after};
use crate::realm::GuardedResolver;
use crate::token::{self, TokenCache, TokenClients};
use crate::{Error, validate_digest, validate_repository_name, validate_tag};

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
    /// Records every destructive request; none by default.
    pub audit: Option<Arc<dyn crate::Audit>>,
    /// Hosts (`host` or `host:port`) a Bearer realm may be on besides the
    /// registry's own origin, over http too and inside the network (never
    /// at link-local or cloud-metadata addresses).
    pub realm_allow_list: Vec<String>,
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
            audit: None,
            realm_allow_list: Vec::new(),
        }
    }
}

pub(crate) struct Inner {
    pub(crate) base: url::Url,
    base_text: String,
    /// `host[:port]`, the registry's label in metrics (never credentials).
    host: String,
    http: reqwest::Client,
    /// Token requests: no redirects; internal addresses refused unless the
    /// realm is the registry's own or on its allow-list.
    token: TokenClients,
    pub(crate) config: ClientConfig,
    tokens: TokenCache,
    /// The registry asked for Basic auth: send it up front from now on.
    basic: AtomicBool,
}

/// A registry client; cheap to clone.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

/// A request to send, rebuilt for every attempt.
pub(crate) struct Call<'a> {
    pub(crate) method: Method,
    pub(crate) url: url::Url,
    pub(crate) accept: Option<&'a str>,
    pub(crate) content_type: Option<&'a str>,
    pub(crate) body: Option<&'a [u8]>,
    /// Key of the bearer token this call needs (the token scope).
    pub(crate) scope: String,
    /// Run right before each attempt leaves, after its wait for the gate.
    pub(crate) last_check: Option<LastCheck<'a>>,
}

/// A check made right before a request leaves, after any wait for the
/// registry's rate limit: false withdraws the request. It makes a
/// destructive request's last check its last step.
pub type LastCheck<'a> =
    &'a (dyn Fn() -> Pin<Box<dyn Future<Output = Result<bool, Error>> + Send + 'a>> + Send + Sync);

pub(crate) fn pull_scope(repository: &str) -> String {
    format!("repository:{repository}:pull")
}

pub(crate) fn reference_ok(reference: &str) -> Result<(), Error> {
    if validate_digest(reference).is_ok() || validate_tag(reference).is_ok() {
        Ok(())
    } else {
        Err(Error::InvalidReference(format!("{reference:?} is neither a tag nor a digest")))
    }
}

pub(crate) fn repository_ok(repository: &str) -> Result<(), Error> {
    validate_repository_name(repository)
        .map_err(|reason| Error::InvalidReference(format!("repository {repository:?}: {reason}")))
}

pub(crate) async fn read_limited(
    response: Response,
    limit: usize,
    what: &str,
) -> Result<Vec<u8>, Error> {
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
pub(crate) async fn status_error(response: Response) -> Error {
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

pub(crate) fn sha256(body: &[u8]) -> String {
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
        if base.query().is_some()
            || base.fragment().is_some()
            || !base.username().is_empty()
            || base.password().is_some()
        {
            return Err(Error::InvalidConfig(
                "base url must have no user, query or fragment".into(),
            ));
        }
        let build = |redirects: reqwest::redirect::Policy, guard: Option<GuardedResolver>| {
            let builder = reqwest::Client::builder();
            let builder = match guard {
                Some(resolver) => builder.dns_resolver(Arc::new(resolver)),
                None => builder,
            };
            builder
                .timeout(config.timeout)
                .connect_timeout(Duration::from_secs(10))
                .redirect(redirects)
                .user_agent(concat!("regsweep/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| Error::InvalidConfig(format!("http client: {e}")))
        };
        let http = build(reqwest::redirect::Policy::limited(5), None)?;
        // Credentials go to the realm only, never where it redirects, and a
        // foreign realm only to addresses outside the network.
        let none = reqwest::redirect::Policy::none;
        let token = TokenClients {
            own: build(none(), None)?,
            allowed: build(none(), Some(GuardedResolver { inside: true }))?,
            foreign: build(none(), Some(GuardedResolver { inside: false }))?,
            allow_list: config.realm_allow_list.iter().map(|h| h.to_ascii_lowercase()).collect(),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                host: match (base.host_str(), base.port()) {
                    (Some(host), Some(port)) => format!("{host}:{port}"),
                    (host, None) => host.unwrap_or_default().to_string(),
                    (None, Some(_)) => String::new(),
                },
                base,
                base_text: text,
                http,
                token,
                config,
                tokens: TokenCache::default(),
                basic: AtomicBool::new(false),
            }),
        })
    }

    pub fn base_url(&self) -> &str {
        &self.inner.base_text
    }

    pub(crate) fn url(&self, path: &str) -> Result<url::Url, Error> {
        self.inner.base.join(path).map_err(|e| Error::InvalidReference(format!("{path}: {e}")))
    }

    fn backoff(&self, retry: u32) -> Duration {
        Backoff::new(BACKOFF_START, self.inner.config.max_retry_wait).delay(retry)
    }

    /// Sends `call`, answering auth challenges once and retrying 429, 503
    /// and (for idempotent methods) transport errors.
    #[tracing::instrument(
        name = "registry_request",
        skip_all,
        fields(method = %call.method, path = call.url.path(), status = tracing::field::Empty)
    )]
    pub(crate) async fn send(&self, call: &Call<'_>) -> Result<Response, Error> {
        let idempotent = call.method != Method::POST;
        let max_retries = self.inner.config.max_retries;
        let mut retries = 0;
        let mut challenged = false;
        loop {
            let request = self.request(call)?;
            let response = match self.exchange(call, request).await? {
                Ok(response) => response,
                Err(e) if idempotent && retries < max_retries => {
                    tracing::debug!(error = %e, retries, "registry request failed, retrying");
                    tokio::time::sleep(self.backoff(retries)).await;
                    retries += 1;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let status = response.status();
            tracing::Span::current().record("status", status.as_u16());
            tracing::debug!(status = status.as_u16(), retries, "registry answered");
            match status {
                StatusCode::UNAUTHORIZED if !challenged => {
                    challenged = true;
                    self.answer_challenge(call, &response).await?;
                }
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    return Err(Error::Unauthorized(format!(
                        "{status} for {} {}",
                        call.method,
                        call.url.path()
                    )));
                }
                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                    if retries >= max_retries {
                        return Err(Error::RateLimited { retries });
                    }
                    let wait = self.slow_down_wait(&response, retries);
                    tracing::debug!(%status, ?wait, retries, "registry asked to slow down");
                    tokio::time::sleep(wait).await;
                    retries += 1;
                }
                _ => return Ok(response),
            }
        }
    }

    /// One attempt of `call` as a request: headers, body and whatever
    /// credentials the registry asked for so far.
    fn request(&self, call: &Call<'_>) -> Result<reqwest::RequestBuilder, Error> {
        let inner = &self.inner;
        let mut headers = HeaderMap::new();
        if let Some(accept) = call.accept {
            let accept = accept.parse().map_err(|_| Error::InvalidConfig("accept".into()))?;
            headers.insert(ACCEPT, accept);
        }
        if let Some(content_type) = call.content_type {
            let content_type =
                content_type.parse().map_err(|_| Error::InvalidReference("media type".into()))?;
            headers.insert(CONTENT_TYPE, content_type);
        }
        let mut request =
            inner.http.request(call.method.clone(), call.url.clone()).headers(headers);
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
        Ok(request)
    }

    /// Sends one attempt through the gate, after the caller's last check,
    /// recording a destructive request before it leaves and its answer
    /// after. The outer error stops the call; the inner one is the
    /// transport's, which the caller may retry.
    async fn exchange(
        &self,
        call: &Call<'_>,
        request: reqwest::RequestBuilder,
    ) -> Result<Result<Response, reqwest::Error>, Error> {
        let inner = &self.inner;
        if let Some(gate) = &inner.config.gate {
            gate.acquire().await;
        }
        if let Some(check) = call.last_check
            && !check().await?
        {
            return Err(Error::Withdrawn);
        }
        let audited = match &inner.config.audit {
            Some(audit) if crate::audit::is_destructive(&call.method, call.url.path()) => {
                let outgoing =
                    crate::Outgoing { method: call.method.as_str(), path: call.url.path() };
                Some((audit, audit.sending(outgoing).await?))
            }
            _ => None,
        };
        let sent = request.send().await;
        let code = sent.as_ref().map_or(0, |r| r.status().as_u16());
        if let Some((audit, id)) = audited {
            audit.answered(id, code).await;
        }
        if let Some(gate) = &inner.config.gate {
            gate.observe(code);
        }
        metrics::counter!(
            "regsweep_registry_requests_total",
            "registry" => inner.host.clone(),
            "method" => call.method.to_string(),
            // 0: no answer (connection refused, timeout).
            "code" => code.to_string(),
        )
        .increment(1);
        Ok(sent)
    }

    /// Answers a 401: remembers that the registry wants basic credentials,
    /// or fetches a bearer token for the call's scope.
    async fn answer_challenge(&self, call: &Call<'_>, response: &Response) -> Result<(), Error> {
        let inner = &self.inner;
        let challenge = response
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|h| h.to_str().ok())
            .and_then(parse_challenge)
            .ok_or_else(|| Error::Unauthorized("401 without a usable WWW-Authenticate".into()))?;
        match challenge.scheme.as_str() {
            "basic" => {
                if inner.config.credentials == Credentials::Anonymous {
                    return Err(Error::Unauthorized(
                        "registry wants credentials, none configured".into(),
                    ));
                }
                inner.basic.store(true, Ordering::Relaxed);
                Ok(())
            }
            "bearer" => {
                let credentials = &inner.config.credentials;
                let scope = &call.scope;
                token::fetch(
                    &inner.token,
                    &inner.base,
                    &inner.tokens,
                    scope,
                    &challenge,
                    credentials,
                )
                .await?;
                Ok(())
            }
            other => Err(Error::Unauthorized(format!("unsupported auth scheme {other:?}"))),
        }
    }

    /// How long to wait after a 429 or 503: what `Retry-After` asked for,
    /// capped, or the backoff when it asked for nothing readable.
    fn slow_down_wait(&self, response: &Response, retries: u32) -> Duration {
        let asked = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| retry_after(h, Utc::now()));
        asked.map_or_else(|| self.backoff(retries), |w| w.min(self.inner.config.max_retry_wait))
    }

    pub(crate) fn call<'a>(
        &self,
        method: Method,
        path: &str,
        scope: String,
    ) -> Result<Call<'a>, Error> {
        Ok(Call {
            method,
            url: self.url(path)?,
            accept: None,
            content_type: None,
            body: None,
            scope,
            last_check: None,
        })
    }
}
