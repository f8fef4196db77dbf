//! Page sizes and opaque page tokens for list rpcs.
//!
//! A token is a keyset cursor bound to the filters it was issued for: reusing
//! it with other filters is an error rather than a silently wrong page.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::FieldViolations;

/// Checks a request's `page_size`: 0 means `default`, otherwise it must be
/// in `1..=max`. Records a violation on `field` and returns `default` when
/// it is out of range.
pub fn page_size(value: i32, default: u32, max: u32, field: &str, v: &mut FieldViolations) -> u32 {
    match u32::try_from(value) {
        Ok(0) => default,
        Ok(n) if n <= max => n,
        _ => {
            v.add(field, format!("must be between 1 and {max} (0 for the default {default})"));
            default
        }
    }
}

/// Builds a page token for the page after `cursor` under `filters`.
pub fn encode_token(filters: &str, cursor: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1:{:016x}:{cursor}", fingerprint(filters)))
}

/// Reads a page token. Empty means the first page (`None`). A token that is
/// malformed or was issued for other filters records a violation on `field`.
pub fn decode_token(
    token: &str,
    filters: &str,
    field: &str,
    v: &mut FieldViolations,
) -> Option<i64> {
    if token.is_empty() {
        return None;
    }
    let parsed = URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| {
            let mut parts = text.splitn(3, ':');
            let (Some("v1"), Some(hash), Some(cursor)) = (parts.next(), parts.next(), parts.next())
            else {
                return None;
            };
            Some((u64::from_str_radix(hash, 16).ok()?, cursor.parse::<i64>().ok()?))
        });
    match parsed {
        Some((hash, cursor)) if hash == fingerprint(filters) => Some(cursor),
        Some(_) => {
            v.add(field, "was issued for other filters");
            None
        }
        None => {
            v.add(field, "is not a token this server issued");
            None
        }
    }
}

/// FNV-1a: stable across builds and versions, unlike `DefaultHasher`.
fn fingerprint(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_size_bounds() {
        let mut v = FieldViolations::new();
        assert_eq!(page_size(0, 50, 1000, "page_size", &mut v), 50);
        assert_eq!(page_size(1, 50, 1000, "page_size", &mut v), 1);
        assert_eq!(page_size(1000, 50, 1000, "page_size", &mut v), 1000);
        assert!(v.is_empty());
        page_size(1001, 50, 1000, "page_size", &mut v);
        page_size(-1, 50, 1000, "page_size", &mut v);
        assert_eq!(v.fields().collect::<Vec<_>>(), ["page_size", "page_size"]);
    }

    #[test]
    fn tokens_round_trip_and_bind_to_filters() {
        let mut v = FieldViolations::new();
        let token = encode_token("status=done", 42);
        assert_eq!(decode_token(&token, "status=done", "page_token", &mut v), Some(42));
        assert_eq!(decode_token("", "status=done", "page_token", &mut v), None);
        assert!(v.is_empty());
        assert_eq!(decode_token(&token, "status=error", "page_token", &mut v), None);
        assert_eq!(decode_token("garbage!", "", "page_token", &mut v), None);
        assert_eq!(
            decode_token(&URL_SAFE_NO_PAD.encode("v1:zz:1"), "", "page_token", &mut v),
            None
        );
        assert_eq!(v.fields().count(), 3);
    }
}
