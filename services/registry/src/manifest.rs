//! Manifests and indexes, OCI and Docker flavours, parsed as far as a
//! cleanup needs: the config descriptor, the children of an index, the
//! annotations.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::Error;

pub mod media_types {
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";

    /// Whether a manifest of this type lists other manifests.
    pub fn is_index(media_type: &str) -> bool {
        matches!(essence(media_type), OCI_INDEX | DOCKER_LIST)
    }

    /// Whether a manifest of this type is known to list no manifests: an
    /// image manifest. Anything else (an index, a type left out, one
    /// regsweep does not know) may list some and must be read to know.
    pub fn may_list_manifests(media_type: &str) -> bool {
        !matches!(essence(media_type), OCI_MANIFEST | DOCKER_MANIFEST)
    }

    /// A media type without its parameters.
    fn essence(media_type: &str) -> &str {
        media_type.split(';').next().unwrap_or_default().trim()
    }

    /// The `Accept` of every manifest request: without these types
    /// Distribution answers 404 MANIFEST_UNKNOWN (FACTS).
    pub const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
        application/vnd.oci.image.index.v1+json, \
        application/vnd.docker.distribution.manifest.v2+json, \
        application/vnd.docker.distribution.manifest.list.v2+json";
}

/// A content descriptor.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    #[serde(default)]
    pub size: u64,
}

/// A child of an index with its platform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlatformDescriptor {
    pub descriptor: Descriptor,
    pub os: Option<String>,
    pub architecture: Option<String>,
}

/// A parsed manifest. `subject` is the manifest it is attached to (OCI
/// 1.1), for signatures, SBOMs and attestations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Manifest {
    Image {
        digest: String,
        media_type: String,
        config: Descriptor,
        layers: Vec<Descriptor>,
        annotations: BTreeMap<String, String>,
        subject: Option<Descriptor>,
    },
    Index {
        digest: String,
        media_type: String,
        manifests: Vec<PlatformDescriptor>,
        annotations: BTreeMap<String, String>,
        subject: Option<Descriptor>,
    },
    /// A manifest with neither config nor children (Docker schema 1, or a
    /// type regsweep does not know): a leaf of the graph.
    Other {
        digest: String,
        media_type: String,
        annotations: BTreeMap<String, String>,
        subject: Option<Descriptor>,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    manifests: Option<Vec<RawChild>>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
    #[serde(default)]
    subject: Option<Descriptor>,
}

#[derive(Deserialize)]
struct RawChild {
    #[serde(flatten)]
    descriptor: Descriptor,
    #[serde(default)]
    platform: Option<RawPlatform>,
}

#[derive(Deserialize)]
struct RawPlatform {
    #[serde(default)]
    os: Option<String>,
    #[serde(default)]
    architecture: Option<String>,
}

impl Manifest {
    /// Parses a manifest body; `content_type` comes from the response when
    /// the body does not say.
    pub fn parse(body: &[u8], content_type: &str, digest: String) -> Result<Self, Error> {
        let raw: Raw = serde_json::from_slice(body)
            .map_err(|e| Error::InvalidResponse(format!("manifest {digest} is not valid: {e}")))?;
        let media_type = raw.media_type.filter(|m| !m.is_empty()).unwrap_or_else(|| {
            content_type.split(';').next().unwrap_or_default().trim().to_string()
        });
        let annotations = raw.annotations.unwrap_or_default();
        let subject = raw.subject;
        if let Some(children) = raw.manifests {
            let manifests = children
                .into_iter()
                .map(|c| PlatformDescriptor {
                    descriptor: c.descriptor,
                    os: c.platform.as_ref().and_then(|p| p.os.clone()),
                    architecture: c.platform.and_then(|p| p.architecture),
                })
                .collect();
            return Ok(Self::Index { digest, media_type, manifests, annotations, subject });
        }
        Ok(match raw.config {
            Some(config) => {
                let layers = raw.layers.unwrap_or_default();
                Self::Image { digest, media_type, config, layers, annotations, subject }
            }
            None => Self::Other { digest, media_type, annotations, subject },
        })
    }

    pub fn digest(&self) -> &str {
        match self {
            Self::Image { digest, .. }
            | Self::Index { digest, .. }
            | Self::Other { digest, .. } => digest,
        }
    }

    pub fn media_type(&self) -> &str {
        match self {
            Self::Image { media_type, .. }
            | Self::Index { media_type, .. }
            | Self::Other { media_type, .. } => media_type,
        }
    }

    pub fn annotations(&self) -> &BTreeMap<String, String> {
        match self {
            Self::Image { annotations, .. }
            | Self::Index { annotations, .. }
            | Self::Other { annotations, .. } => annotations,
        }
    }

    /// The manifest this one is attached to, if any.
    pub fn subject(&self) -> Option<&Descriptor> {
        match self {
            Self::Image { subject, .. }
            | Self::Index { subject, .. }
            | Self::Other { subject, .. } => subject.as_ref(),
        }
    }

    /// The blobs an image references, config first; none for an index
    /// (its children hold theirs) or a manifest of another kind.
    pub fn blobs(&self) -> impl Iterator<Item = &Descriptor> {
        let (config, layers) = match self {
            Self::Image { config, layers, .. } => (Some(config), layers.as_slice()),
            Self::Index { .. } | Self::Other { .. } => (None, &[][..]),
        };
        config.into_iter().chain(layers)
    }

    /// The manifests an index lists; none for anything else.
    pub fn children(&self) -> &[PlatformDescriptor] {
        match self {
            Self::Index { manifests, .. } => manifests,
            Self::Image { .. } | Self::Other { .. } => &[],
        }
    }

    /// The child of an index whose creation time stands for the index:
    /// linux/amd64 when there is one, else the first.
    pub fn representative_child(&self) -> Option<&Descriptor> {
        let Self::Index { manifests, .. } = self else { return None };
        manifests
            .iter()
            .find(|m| {
                m.os.as_deref() == Some("linux") && m.architecture.as_deref() == Some("amd64")
            })
            .or_else(|| manifests.first())
            .map(|m| &m.descriptor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_and_indexes() {
        let image = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
            "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:c","size":2},
            "layers":[],"annotations":{"org.opencontainers.image.created":"2026-01-01T00:00:00Z"}}"#;
        let m = Manifest::parse(image, "", "sha256:m".into()).expect("image");
        assert!(matches!(&m, Manifest::Image { config, .. } if config.digest == "sha256:c"));
        assert_eq!(
            m.blobs().map(|b| (b.digest.as_str(), b.size)).collect::<Vec<_>>(),
            [("sha256:c", 2)]
        );
        let layered = br#"{"schemaVersion":2,"config":{"digest":"sha256:c","size":2},
            "layers":[{"digest":"sha256:l1","size":300},{"digest":"sha256:l2","size":40}]}"#;
        let m = Manifest::parse(layered, "", "sha256:n".into()).expect("image");
        let sizes: Vec<u64> = m.blobs().map(|b| b.size).collect();
        assert_eq!(sizes, [2, 300, 40]);
        let m = Manifest::parse(image, "", "sha256:m".into()).expect("image");
        assert_eq!(m.annotations()["org.opencontainers.image.created"], "2026-01-01T00:00:00Z");
        let index = br#"{"schemaVersion":2,"manifests":[
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:arm","size":1,"platform":{"os":"linux","architecture":"arm64"}},
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:amd","size":1,"platform":{"os":"linux","architecture":"amd64"}}]}"#;
        let m =
            Manifest::parse(index, "application/vnd.oci.image.index.v1+json", "sha256:i".into())
                .expect("index");
        assert_eq!(m.media_type(), media_types::OCI_INDEX);
        assert_eq!(m.representative_child().map(|d| d.digest.as_str()), Some("sha256:amd"));
        assert!(matches!(
            Manifest::parse(b"{}", "", "sha256:x".into()),
            Ok(Manifest::Other { .. })
        ));
        assert!(Manifest::parse(b"not json", "", "sha256:x".into()).is_err());
    }

    #[test]
    fn subjects_and_children() {
        let sbom = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
            "artifactType":"application/spdx+json",
            "config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:e","size":2},
            "layers":[],"subject":{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"sha256:s","size":9}}"#;
        let m = Manifest::parse(sbom, "", "sha256:m".into()).expect("artifact");
        assert_eq!(m.subject().map(|s| s.digest.as_str()), Some("sha256:s"));
        assert!(m.children().is_empty());
        let schema1 = br#"{"schemaVersion":1,"name":"app","tag":"v1","fsLayers":[]}"#;
        let m = Manifest::parse(
            schema1,
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
            "sha256:o".into(),
        )
        .expect("schema 1");
        assert!(m.children().is_empty() && m.subject().is_none());
        assert!(media_types::is_index(media_types::DOCKER_LIST));
        assert!(media_types::is_index("application/vnd.oci.image.index.v1+json; charset=utf-8"));
        assert!(media_types::may_list_manifests(""));
        assert!(!media_types::may_list_manifests(media_types::DOCKER_MANIFEST));
        assert!(!media_types::is_index(media_types::OCI_MANIFEST));
    }
}
