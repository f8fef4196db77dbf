//! regsweep's client for OCI Distribution registries: the few calls a
//! cleanup needs (catalog, tags, manifests, blobs, deletes), with Basic and
//! Bearer auth and retries that honour `Retry-After`.

mod audit;
mod capabilities;
mod client;
mod credentials;
mod directory;
mod error;
mod gate;
mod graph;
mod headers;
mod images;
mod listing;
mod manifest;
mod realm;
mod token;
mod writes;

pub use audit::{Audit, Outgoing};
pub use capabilities::{Capabilities, Support};
pub use client::{Client, ClientConfig, LastCheck};
pub use credentials::{CredentialRef, Credentials, Secret};
pub use directory::{Directory, DirectoryError, GateFactory};
pub use error::Error;
pub use gate::Gate;
pub use graph::RepositoryReader;
pub use headers::{Challenge, next_link, parse_challenge, retry_after};
pub use images::TagInfo;
pub use manifest::{Descriptor, Manifest, PlatformDescriptor, media_types};
pub use regsweep_policy::{validate_repository_name, validate_tag};
pub use writes::DeleteOutcome;

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
    fn digests() {
        assert!(validate_digest(&format!("sha256:{}", "a".repeat(64))).is_ok());
        for bad in ["", "sha256", "sha256:abc", "md5:aa", &format!("sha256:{}", "A".repeat(64))] {
            assert!(validate_digest(bad).is_err(), "{bad}");
        }
    }
}
