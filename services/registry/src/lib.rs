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
pub use regsweep_policy::{validate_digest, validate_repository_name, validate_tag};
pub use writes::DeleteOutcome;

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
