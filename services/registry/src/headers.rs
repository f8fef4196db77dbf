//! Parsers of the registry's response headers: `WWW-Authenticate`,
//! `Link` and `Retry-After`. Pure functions: they see untrusted input.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// An auth challenge: its scheme (`basic`, `bearer`, lower case) and
/// parameters (keys lower case).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub params: BTreeMap<String, String>,
}

/// Longest header value looked at.
const MAX_HEADER: usize = 8192;

/// Parses the first challenge of a `WWW-Authenticate` value:
/// `Bearer realm="https://auth/token",service="registry",scope="repository:a:pull"`.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.get(..MAX_HEADER.min(header.len()))?.trim();
    let (scheme, mut rest) = match header.split_once(char::is_whitespace) {
        Some((scheme, rest)) => (scheme, rest.trim_start()),
        None => (header, ""),
    };
    if scheme.is_empty() || !scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return None;
    }
    let mut params = BTreeMap::new();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let key = key.trim().to_ascii_lowercase();
        if key.is_empty() || key.contains(|c: char| c.is_whitespace() || c == ',') {
            // The start of a second challenge: stop at the first one.
            break;
        }
        let after = after.trim_start();
        let (value, remainder) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &quoted[end?..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        params.insert(key, value);
        rest = remainder.trim_start().strip_prefix(',').unwrap_or(remainder).trim_start();
    }
    Some(Challenge { scheme: scheme.to_ascii_lowercase(), params })
}

/// The target of the `rel="next"` link of a `Link` header, if any.
pub fn next_link(header: &str) -> Option<String> {
    let mut rest = header.get(..MAX_HEADER.min(header.len()))?;
    // Targets are delimited by `<>` and may hold commas and semicolons
    // themselves, so the header is walked link by link rather than split.
    loop {
        let start = rest.find('<')?;
        let end = start + rest[start..].find('>')?;
        let target = &rest[start + 1..end];
        let after = &rest[end + 1..];
        let params_end = after.find('<').unwrap_or(after.len());
        let is_next = after[..params_end].split([';', ',']).any(|p| {
            p.split_once('=').is_some_and(|(k, v)| {
                k.trim().eq_ignore_ascii_case("rel")
                    && v.trim().trim_matches('"').split_whitespace().any(|r| r == "next")
            })
        });
        // An empty target would name the page just read.
        if is_next && !target.trim().is_empty() {
            return Some(target.to_string());
        }
        rest = &after[params_end..];
    }
}

/// How long `Retry-After` asks to wait: seconds, or an HTTP date.
pub fn retry_after(header: &str, now: DateTime<Utc>) -> Option<Duration> {
    let header = header.trim();
    if let Ok(seconds) = header.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(header).ok()?.with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn bearer_and_basic_challenges() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull,push""#,
        )
        .expect("challenge");
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.example.com/token");
        assert_eq!(c.params["scope"], "repository:a/b:pull,push");
        let c = parse_challenge(r#"Basic realm="Registry Realm""#).expect("challenge");
        assert_eq!((c.scheme.as_str(), c.params["realm"].as_str()), ("basic", "Registry Realm"));
        let c = parse_challenge(r#"Bearer realm=http://x/t, service = "s\"q""#).expect("challenge");
        assert_eq!(
            (c.params["realm"].as_str(), c.params["service"].as_str()),
            ("http://x/t", "s\"q")
        );
        assert_eq!(parse_challenge("Basic").expect("bare").params.len(), 0);
        for bad in ["", "Bearer realm=\"unterminated", "Bea rer"] {
            assert!(parse_challenge(bad).is_none_or(|c| c.params.is_empty()), "{bad}");
        }
    }

    #[test]
    fn next_links() {
        assert_eq!(
            next_link(r#"</v2/_catalog?last=b&n=2>; rel="next""#).as_deref(),
            Some("/v2/_catalog?last=b&n=2")
        );
        assert_eq!(
            next_link(r#"<https://r/x>; rel="prev", <https://r/y>; rel=next"#).as_deref(),
            Some("https://r/y")
        );
        assert_eq!(
            next_link(r#"</v2/_catalog?last=a%2Cb,c;d&n=2>; rel="next""#).as_deref(),
            Some("/v2/_catalog?last=a%2Cb,c;d&n=2")
        );
        assert_eq!(
            next_link(r#"</p>; title="a, b"; rel="prev", </n>; REL="prev next""#).as_deref(),
            Some("/n")
        );
        assert_eq!(next_link("garbage"), None);
        assert_eq!(next_link("<unterminated; rel=next"), None);
        assert_eq!(next_link(r#"</x>; rel="prev""#), None);
        assert_eq!(next_link(r#"</x>; rel="nextish""#), None);
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single().expect("time");
        assert_eq!(retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(retry_after("Thu, 01 Jan 2026 00:00:05 GMT", now), Some(Duration::from_secs(5)));
        assert_eq!(retry_after("Wed, 31 Dec 2025 00:00:05 GMT", now), Some(Duration::ZERO));
        assert_eq!(retry_after("soon", now), None);
        assert_eq!(retry_after("-1", now), None);
    }
}
