//! Repository and tag names as the OCI distribution spec allows them,
//! checked before they reach a URL or a database.

/// Longest repository name accepted.
pub const MAX_REPOSITORY_BYTES: usize = 255;

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`
pub fn validate_repository_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_REPOSITORY_BYTES {
        return Err(format!("must be 1 to {MAX_REPOSITORY_BYTES} bytes"));
    }
    let component_ok = |c: &str| {
        let bytes = c.as_bytes();
        let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
            return false;
        }
        let mut i = 0;
        while i < bytes.len() {
            if alnum(bytes[i]) {
                i += 1;
                continue;
            }
            // A separator run: `.`, `_`, `__`, or any number of `-`.
            let start = i;
            while i < bytes.len() && !alnum(bytes[i]) {
                i += 1;
            }
            let run = &c[start..i];
            if !(run == "." || run == "_" || run == "__" || run.bytes().all(|b| b == b'-')) {
                return false;
            }
        }
        true
    };
    if name.split('/').all(component_ok) {
        Ok(())
    } else {
        Err("must be lowercase path components of a-z 0-9 joined by . _ __ or -, separated by /"
            .into())
    }
}

/// `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`
pub fn validate_tag(tag: &str) -> Result<(), String> {
    let mut bytes = tag.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
    if first_ok
        && tag.len() <= 128
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        Ok(())
    } else {
        Err("must be 1 to 128 of A-Z a-z 0-9 _ . - not starting with . or -".into())
    }
}

/// Checks a digest: `algorithm:hex`, sha256 or sha512.
pub fn validate_digest(digest: &str) -> Result<(), String> {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return Err("must be algorithm:hex".into());
    };
    let len = match algorithm {
        "sha256" => 64,
        "sha512" => 128,
        _ => return Err(format!("unsupported algorithm {algorithm:?}")),
    };
    if hex.len() == len && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        Ok(())
    } else {
        Err(format!("{algorithm} needs {len} lowercase hex digits"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names() {
        for ok in ["app", "team/app", "a.b/c__d/e--f", "x/y/z", "a-b"] {
            assert!(validate_repository_name(ok).is_ok(), "{ok}");
        }
        for bad in
            ["", "App", "team/", "/app", "a..b", "a_-b", "-a", "a b", "a/../b", &"a".repeat(256)]
        {
            assert!(validate_repository_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tags() {
        for ok in ["latest", "v1.2.3", "_x", "A-b_c"] {
            assert!(validate_tag(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".x", "-x", "a/b", &"a".repeat(129)] {
            assert!(validate_tag(bad).is_err(), "{bad}");
        }
    }
}
