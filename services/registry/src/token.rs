//! Bearer tokens: fetched from the realm a challenge names, cached per
//! scope until shortly before they expire.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::credentials::{Credentials, Secret};
use crate::headers::Challenge;
use crate::{Error, realm};

/// Lifetime assumed when the token server does not say (the spec's minimum).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(60);
/// A token is renewed this long before it expires.
const MARGIN: Duration = Duration::from_secs(5);
/// Largest token response read.
const MAX_TOKEN_RESPONSE: usize = 64 * 1024;

#[derive(Default)]
pub struct TokenCache {
    tokens: Mutex<HashMap<String, (Secret, Instant)>>,
}

impl TokenCache {
    pub fn get(&self, key: &str) -> Option<Secret> {
        let tokens = self.tokens.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        tokens.get(key).filter(|(_, until)| Instant::now() < *until).map(|(t, _)| t.clone())
    }

    fn put(&self, key: &str, token: Secret, lifetime: Duration) {
        let until = Instant::now() + lifetime.saturating_sub(MARGIN);
        let mut tokens = self.tokens.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        tokens.insert(key.to_string(), (token, until));
    }
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: String,
    #[serde(default)]
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// Fetches a token for `challenge` and caches it under `key`: through
/// `own` when the realm is the registry's own origin, else through
/// `foreign` (whose resolver refuses internal addresses) after [`realm::check`].
pub async fn fetch(
    own: &reqwest::Client,
    foreign: &reqwest::Client,
    registry: &url::Url,
    cache: &TokenCache,
    key: &str,
    challenge: &Challenge,
    credentials: &Credentials,
) -> Result<Secret, Error> {
    let realm = challenge
        .params
        .get("realm")
        .ok_or_else(|| Error::Unauthorized("bearer challenge without realm".into()))?;
    let mut url = url::Url::parse(realm)
        .map_err(|e| Error::Unauthorized(format!("bearer realm is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::Unauthorized(format!("bearer realm scheme {:?} refused", url.scheme())));
    }
    if let Err(e) = realm::check(&url, registry) {
        tracing::warn!(error = %e, "bearer realm refused");
        return Err(e);
    }
    let http = if realm::same_origin(&url, registry) { own } else { foreign };
    {
        let mut query = url.query_pairs_mut();
        for name in ["service", "scope"] {
            if let Some(value) = challenge.params.get(name) {
                query.append_pair(name, value);
            }
        }
    }
    let mut request = http.get(url.clone());
    if let Credentials::Basic { username, password } = credentials {
        request = request.basic_auth(username, Some(password.expose()));
    }
    let response = match request.send().await {
        Ok(response) => response,
        Err(e) => {
            let e = Error::from(e);
            // The guarded resolver's refusal is final, not a network hiccup.
            if e.to_string().contains("refusing bearer realm") {
                tracing::warn!(error = %e, "bearer realm refused");
                return Err(Error::Unauthorized(e.to_string()));
            }
            return Err(e);
        }
    };
    let status = response.status();
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        return Err(Error::Unauthorized(format!(
            "token server {} refused the credentials ({status})",
            url.host_str().unwrap_or_default()
        )));
    }
    if !status.is_success() {
        return Err(Error::Unauthorized(format!(
            "token server {} answered {status}",
            url.host_str().unwrap_or_default()
        )));
    }
    let body = response.bytes().await?;
    if body.len() > MAX_TOKEN_RESPONSE {
        return Err(Error::InvalidResponse("token response too large".into()));
    }
    let parsed: TokenResponse = serde_json::from_slice(&body)
        .map_err(|_| Error::InvalidResponse("token response is not JSON".into()))?;
    let token = if parsed.token.is_empty() { parsed.access_token } else { parsed.token };
    if token.is_empty() {
        return Err(Error::InvalidResponse("token response without token".into()));
    }
    let token = Secret::new(token);
    let lifetime =
        parsed.expires_in.map_or(DEFAULT_LIFETIME, Duration::from_secs).max(DEFAULT_LIFETIME);
    cache.put(key, token.clone(), lifetime);
    Ok(token)
}
