//! What every response carries (a Content Security Policy that admits
//! only the console's own script and style), and the CSRF defences every
//! form relies on: a per-browser token in a same-site cookie that each
//! form repeats, and refusing POSTs another site's page started.

use axum::extract::{Request, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, LOCATION, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use crate::App;
use crate::error::ConsoleError;
use crate::session::{self, CSRF_COOKIE, Caller, Csrf};

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub async fn headers_and_csrf(
    State(app): State<App>,
    mut request: Request,
    next: Next,
) -> Response {
    if request.method() == Method::POST && cross_site(request.headers()) {
        return ConsoleError::Forged.into_response();
    }
    let existing = session::cookie(request.headers(), CSRF_COOKIE)
        .filter(|c| c.len() == 48 && c.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(|c| Csrf(c.to_string()));
    let fresh = existing.is_none();
    let csrf = existing.unwrap_or_else(Csrf::fresh);
    request.extensions_mut().insert(csrf.clone());
    let asked = (request.method() == Method::GET)
        .then(|| request.uri().path_and_query().map(|p| p.to_string()))
        .flatten();
    let open =
        ["/sign-in", "/assets/", "/healthz"].iter().any(|p| request.uri().path().starts_with(p));
    let mut response = if app.require_token
        && !open
        && session::cookie(request.headers(), session::TOKEN_COOKIE).is_none()
    {
        Redirect::to("/sign-in").into_response()
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    // Sent to sign in from a page: come back to it afterwards.
    if let Some(asked) = asked
        && headers.get(LOCATION).is_some_and(|l| l == "/sign-in")
        && !asked.starts_with("/sign-in")
    {
        let back: String =
            form_urlencoded::Serializer::new(String::new()).append_pair("next", &asked).finish();
        if let Ok(location) = HeaderValue::from_str(&format!("/sign-in?{back}")) {
            headers.insert(LOCATION, location);
        }
    }
    if fresh {
        app.cookies.append(headers, CSRF_COOKIE, Some(&csrf.0));
    }
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.entry(CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    response
}

/// A request another site's page made, as the browser says in
/// `Sec-Fetch-Site`. `Origin` is not compared with `Host`: a proxy in
/// front may rewrite `Host`; the CSRF token guards browsers that send
/// neither.
fn cross_site(headers: &HeaderMap) -> bool {
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    matches!(fetch_site, Some("cross-site" | "same-site"))
}

/// A form's fields, repeated keys kept (`id=1&id=2`).
pub struct Form(pub Vec<(String, String)>);

impl Form {
    /// Parses `body` and checks its `csrf` field against the caller's.
    pub fn verified(caller: &Caller, body: &[u8]) -> Result<Self, ConsoleError> {
        let fields: Vec<(String, String)> =
            form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        let sent = fields.iter().find(|(k, _)| k == "csrf").map(|(_, v)| v.as_str());
        if !sent.is_some_and(|s| caller.csrf.matches(s)) {
            return Err(ConsoleError::Forged);
        }
        Ok(Self(fields))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    pub fn all(&self, key: &str) -> impl Iterator<Item = &str> {
        self.0.iter().filter(move |(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Every `key` as an id; a value that is not one is a bad request.
    pub fn ids(&self, key: &str) -> Result<Vec<i64>, ConsoleError> {
        self.all(key)
            .map(|v| {
                v.parse().map_err(|_| ConsoleError::BadRequest(format!("{key} {v:?} is not an id")))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (k.parse().unwrap(), HeaderValue::from_static(v))).collect()
    }

    #[test]
    fn another_sites_post_is_recognised() {
        assert!(cross_site(&headers(&[("sec-fetch-site", "cross-site")])));
        assert!(cross_site(&headers(&[("sec-fetch-site", "same-site")])));
        assert!(!cross_site(&headers(&[("sec-fetch-site", "same-origin")])));
        // Behind a proxy that rewrites Host: still the same origin.
        assert!(!cross_site(&headers(&[
            ("sec-fetch-site", "same-origin"),
            ("origin", "https://console.example"),
            ("host", "regsweep-console:7072")
        ])));
        // curl and other tools send neither: the CSRF token still guards.
        assert!(!cross_site(&HeaderMap::new()));
    }
}
