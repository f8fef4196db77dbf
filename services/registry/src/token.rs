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
/// A token is renewed this long before it expires (at most a quarter of
/// its life).
const MARGIN: Duration = Duration::from_secs(5);
/// Longest a token is kept, whatever the server says: an untrusted
/// `expires_in` must not overflow the clock arithmetic.
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);
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
        let lifetime = lifetime.min(MAX_LIFETIME);
        let until = Instant::now() + lifetime.saturating_sub(MARGIN.min(lifetime / 4));
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

/// The HTTP clients a token is fetched through, none following redirects.
pub struct TokenClients {
    /// For the registry's own origin.
    pub own: reqwest::Client,
    /// For hosts on the registry's realm allow-list: its resolver refuses
    /// only link-local and metadata addresses.
    pub allowed: reqwest::Client,
    /// For any other realm: its resolver refuses internal addresses.
    pub foreign: reqwest::Client,
    pub allow_list: Vec<String>,
}

/// Fetches a token for `challenge` and caches it under `key`, through the
/// client for the realm's kind, after [`realm::check`].
pub async fn fetch(
    clients: &TokenClients,
    registry: &url::Url,
    cache: &TokenCache,
    key: &str,
    challenge: &Challenge,
    credentials: &Credentials,
) -> Result<Secret, Error> {
    let (url, http) = token_endpoint(clients, registry, challenge)?;
    let mut request = http.get(url.clone());
    if let Credentials::Basic { username, password } = credentials {
        request = request.basic_auth(username, Some(password.expose()));
    }
    let response = match request.send().await {
        Ok(response) => response,
        Err(e) => {
            // The guarded resolver's refusal is final, not a network hiccup.
            if let Some(refused) = realm::refused(&e) {
                tracing::warn!(host = %refused.host, class = %refused.class, "bearer realm refused");
                return Err(Error::Unauthorized(refused.to_string()));
            }
            return Err(Error::from(e));
        }
    };
    let (token, lifetime) = read_token(response, &url).await?;
    cache.put(key, token.clone(), lifetime);
    Ok(token)
}

/// The token URL a challenge names, with its `service` and `scope`, and the
/// client allowed to reach it: the registry's own, the allow-listed one, or
/// the foreign one that refuses private addresses.
fn token_endpoint<'c>(
    clients: &'c TokenClients,
    registry: &url::Url,
    challenge: &Challenge,
) -> Result<(url::Url, &'c reqwest::Client), Error> {
    let realm = challenge
        .params
        .get("realm")
        .ok_or_else(|| Error::Unauthorized("bearer challenge without realm".into()))?;
    let mut url = url::Url::parse(realm)
        .map_err(|e| Error::Unauthorized(format!("bearer realm is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::Unauthorized(format!("bearer realm scheme {:?} refused", url.scheme())));
    }
    if let Err(e) = realm::check(&url, registry, &clients.allow_list) {
        tracing::warn!(error = %e, "bearer realm refused");
        return Err(e);
    }
    let http = if realm::same_origin(&url, registry) {
        &clients.own
    } else if realm::allowed(&url, &clients.allow_list) {
        &clients.allowed
    } else {
        &clients.foreign
    };
    {
        let mut query = url.query_pairs_mut();
        for name in ["service", "scope"] {
            if let Some(value) = challenge.params.get(name) {
                query.append_pair(name, value);
            }
        }
    }
    Ok((url, http))
}

/// The token a token server answered and how long to keep it.
async fn read_token(
    response: reqwest::Response,
    url: &url::Url,
) -> Result<(Secret, Duration), Error> {
    let status = response.status();
    let host = url.host_str().unwrap_or_default();
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        return Err(Error::Unauthorized(format!(
            "token server {host} refused the credentials ({status})"
        )));
    }
    if !status.is_success() {
        return Err(Error::Unauthorized(format!("token server {host} answered {status}")));
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
    // A short lifetime is taken at its word: a token kept too long costs a
    // 401 and a new token on every request until it is replaced.
    let lifetime = parsed.expires_in.map_or(DEFAULT_LIFETIME, Duration::from_secs);
    Ok((Secret::new(token), lifetime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_are_taken_at_their_word_within_bounds() {
        let cache = TokenCache::default();
        cache.put("kept", Secret::new("a"), DEFAULT_LIFETIME);
        cache.put("expired", Secret::new("b"), Duration::ZERO);
        // A hostile `expires_in` would overflow `Instant + Duration`.
        cache.put("forever", Secret::new("c"), Duration::from_secs(u64::MAX));
        assert_eq!(cache.get("kept").map(|t| t.expose().to_string()).as_deref(), Some("a"));
        assert!(cache.get("expired").is_none());
        assert!(cache.get("forever").is_some());
        assert!(cache.get("unknown").is_none());
    }
}
