//! The tokens file: who may call, with which roles, stored as SHA-256
//! hashes of the tokens (tokens are long random strings, so a fast hash
//! is enough; nothing in the file lets anyone call).
//!
//! ```text
//! # ROLES            NAME      SHA256 OF THE TOKEN
//! admin              alice     sha256:2c26b46b...
//! read               grafana   sha256:fcde2b2e...
//! worker,scrubber-client workers sha256:baa5a0964...
//! ```

use std::path::Path;

use sha2::{Digest, Sha256};

use super::Role;

/// One line of the file.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Shown in logs and used as the rate-limit key; never the token.
    pub name: String,
    pub roles: Vec<Role>,
    hash: [u8; 32],
}

/// The parsed file.
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    entries: Vec<Entry>,
}

/// Why a tokens file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    #[error("cannot read tokens file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("tokens file {path}, line {line}: {reason}")]
    Line { path: String, line: usize, reason: String },
}

/// `sha256:<hex>` of `token`, the form the file stores.
pub fn hash_line_value(token: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(token.as_bytes())))
}

impl Tokens {
    pub fn load(path: &Path) -> Result<Self, TokensError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|source| TokensError::Read { path: shown.clone(), source })?;
        Self::parse(&text).map_err(|(line, reason)| TokensError::Line { path: shown, line, reason })
    }

    /// Parses the file's text; errors carry the 1-based line number.
    pub fn parse(text: &str) -> Result<Self, (usize, String)> {
        let mut entries: Vec<Entry> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [roles, name, hash] = fields[..] else {
                return Err((line_no, "expected ROLES NAME sha256:HEX".into()));
            };
            let roles = roles
                .split(',')
                .map(|r| Role::parse(r).ok_or_else(|| (line_no, format!("unknown role {r:?}"))))
                .collect::<Result<Vec<_>, _>>()?;
            let hash = parse_hash(hash).ok_or_else(|| {
                (
                    line_no,
                    "the hash must be sha256: and 64 hex digits (regsweep tokens hash)".into(),
                )
            })?;
            if entries.iter().any(|e| e.name == name) {
                return Err((line_no, format!("name {name:?} is used twice")));
            }
            if entries.iter().any(|e| e.hash == hash) {
                return Err((line_no, "the same token is listed twice".into()));
            }
            entries.push(Entry { name: name.to_string(), roles, hash });
        }
        Ok(Self { entries })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry whose hash is `token`'s. Every entry is compared, in
    /// constant time, whatever matches: the time taken says nothing about
    /// which bytes were right.
    pub fn find(&self, token: &str) -> Option<&Entry> {
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for entry in &self.entries {
            if constant_time_eq(&entry.hash, &presented) {
                found = Some(entry);
            }
        }
        found
    }
}

fn parse_hash(text: &str) -> Option<[u8; 32]> {
    let hex_digits = text.strip_prefix("sha256:")?;
    let bytes = hex::decode(hex_digits).ok()?;
    bytes.try_into().ok()
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // Opaque to the optimizer, so the fold is not cut short.
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_tokens_by_hash_only() {
        let text = format!(
            "# comment\n\nadmin alice {}\nworker,scrubber-client workers {}\n",
            hash_line_value("alice-secret"),
            hash_line_value("worker-secret"),
        );
        let tokens = Tokens::parse(&text).expect("parses");
        assert_eq!(tokens.len(), 2);
        assert_eq!(tokens.find("alice-secret").map(|e| e.name.as_str()), Some("alice"));
        let workers = tokens.find("worker-secret").expect("worker");
        assert_eq!(workers.roles, [Role::Worker, Role::ScrubberClient]);
        assert!(tokens.find("alice-secreT").is_none());
        assert!(tokens.find("").is_none());
        assert!(!text.contains("alice-secret"), "the file never holds a token");
    }

    #[test]
    fn bad_lines_are_named() {
        let h = hash_line_value("t");
        for (text, line, reason) in [
            ("admin alice".to_string(), 1, "expected"),
            (format!("\nroot alice {h}"), 2, "unknown role"),
            ("admin alice sha256:abc".to_string(), 1, "64 hex"),
            (format!("admin a {h}\nread a {}", hash_line_value("u")), 2, "twice"),
            (format!("admin a {h}\nread b {h}"), 2, "same token"),
        ] {
            let (at, why) = Tokens::parse(&text).expect_err(&text);
            assert_eq!(at, line, "{text}");
            assert!(why.contains(reason), "{why}");
        }
    }
}
