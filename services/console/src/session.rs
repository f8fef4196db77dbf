//! Who is asking: the token a person signed in with, from an HTTP-only,
//! same-site cookie, and the CSRF token every form carries.

use axum::extract::FromRequestParts;
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};

use crate::error::ConsoleError;

pub const TOKEN_COOKIE: &str = "regsweep_token";
pub const CSRF_COOKIE: &str = "regsweep_csrf";
/// Longest token accepted at sign-in.
pub const MAX_TOKEN_LEN: usize = 512;

/// How cookies are set.
#[derive(Clone, Copy, Debug)]
pub struct CookieRules {
    /// `Secure`: sent over HTTPS only.
    pub secure: bool,
}

impl CookieRules {
    /// A `Set-Cookie` value: HTTP-only, same-site (`Lax`: a link from
    /// elsewhere arrives signed in; a cross-site POST carries no cookie,
    /// and the CSRF token guards the rest), for the whole console; `None`
    /// clears it.
    pub fn set(self, name: &str, value: Option<&str>) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        let cookie = match value {
            Some(v) => format!("{name}={v}; Path=/; HttpOnly; SameSite=Lax{secure}"),
            None => format!("{name}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}"),
        };
        HeaderValue::from_str(&cookie).expect("cookie values are checked ASCII")
    }

    pub fn append(self, headers: &mut HeaderMap, name: &str, value: Option<&str>) {
        headers.append(SET_COOKIE, self.set(name, value));
    }
}

/// A cookie of the request.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// Whether `token` can be a regsweep token (and so a cookie value and a
/// header value): printable ASCII without spaces, `;` or `,`.
pub fn well_formed(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= MAX_TOKEN_LEN
        && token.bytes().all(|b| b.is_ascii_graphic() && b != b';' && b != b',')
}

/// The person asking: their token (none when the services need none, or
/// before sign-in) and this browser's CSRF token.
#[derive(Clone, Debug)]
pub struct Caller {
    token: Option<String>,
    pub csrf: Csrf,
}

impl Caller {
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    pub fn signed_in(&self) -> bool {
        self.token.is_some()
    }

    /// The same browser acting with `token` (at sign-in, before the
    /// cookie is set).
    pub fn with_token(&self, token: &str) -> Self {
        Self { token: Some(token.to_string()), csrf: self.csrf.clone() }
    }

    /// A browser not signed in.
    #[cfg(test)]
    pub fn anonymous() -> Self {
        Self { token: None, csrf: Csrf::fresh() }
    }
}

/// This browser's CSRF token: from its cookie, or made for this response
/// (the middleware sets the cookie).
#[derive(Clone, Debug)]
pub struct Csrf(pub String);

impl Csrf {
    pub fn fresh() -> Self {
        Self(hex::encode(rand::random::<[u8; 24]>()))
    }

    /// Constant-time comparison with what a form sent.
    pub fn matches(&self, sent: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), sent.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0_u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let csrf = parts
            .extensions
            .get::<Csrf>()
            .cloned()
            .ok_or_else(|| ConsoleError::BadRequest("no csrf token".into()))?;
        let token =
            cookie(&parts.headers, TOKEN_COOKIE).filter(|t| well_formed(t)).map(str::to_string);
        Ok(Self { token, csrf })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_name_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, HeaderValue::from_static("a=1; regsweep_token=t0k; b=2"));
        headers.append(COOKIE, HeaderValue::from_static("regsweep_csrf=c"));
        assert_eq!(cookie(&headers, TOKEN_COOKIE), Some("t0k"));
        assert_eq!(cookie(&headers, CSRF_COOKIE), Some("c"));
        assert_eq!(cookie(&headers, "regsweep"), None);
    }

    #[test]
    fn tokens_that_could_break_a_header_or_cookie_are_refused() {
        assert!(well_formed("rs_abc-123"));
        for bad in ["", "a b", "a;b", "a,b", "é", "a\nb"] {
            assert!(!well_formed(bad), "{bad:?}");
        }
        assert!(!well_formed(&"a".repeat(MAX_TOKEN_LEN + 1)));
    }

    #[test]
    fn csrf_tokens_compare_whole() {
        let csrf = Csrf("abc".into());
        assert!(csrf.matches("abc"));
        assert!(!csrf.matches("ab"));
        assert!(!csrf.matches("abd"));
        assert!(!csrf.matches(""));
    }
}
