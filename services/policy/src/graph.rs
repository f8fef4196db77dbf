//! A repository as a graph: tags point at manifests, an index lists child
//! manifests (its platforms, or an artifact index's members), and an
//! attachment (a signature, SBOM or attestation) points at its subject,
//! through the OCI 1.1 `subject` field or by cosign's and the referrers
//! fallback's tag names. Digests are content addresses, so an honest
//! registry cannot form a cycle; a dishonest one is caught, not followed
//! forever.

use std::collections::{BTreeMap, BTreeSet};

/// What the reader learned about one manifest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ManifestLinks {
    /// Manifests an index lists.
    pub children: Vec<String>,
    /// The manifest this one is attached to (OCI 1.1 `subject`).
    pub subject: Option<String>,
    /// Its config and layers (none for an index), for the space a plan
    /// frees.
    pub blobs: Vec<crate::Blob>,
}

/// The subject digest a tag name points at by convention: cosign's
/// `sha256-<hex>.sig`, `.att` and `.sbom`, and the referrers fallback tag
/// `sha256-<hex>` (distribution-spec 1.1).
pub fn attachment_subject(tag: &str) -> Option<String> {
    let stem = tag
        .strip_suffix(".sig")
        .or_else(|| tag.strip_suffix(".att"))
        .or_else(|| tag.strip_suffix(".sbom"))
        .unwrap_or(tag);
    let (algorithm, hex) = stem.split_once('-')?;
    let length = match algorithm {
        "sha256" => 64,
        "sha512" => 128,
        _ => return None,
    };
    let lower_hex = |c: char| c.is_ascii_digit() || ('a'..='f').contains(&c);
    (hex.len() == length && hex.chars().all(lower_hex)).then(|| format!("{algorithm}:{hex}"))
}

/// The edges of a repository, by digest.
#[derive(Debug, Default)]
pub(crate) struct Graph<'a> {
    children: BTreeMap<&'a str, BTreeSet<&'a str>>,
    /// subject -> manifests attached to it.
    attachments: BTreeMap<&'a str, BTreeSet<&'a str>>,
    /// attachment -> the manifests it is attached to.
    subjects: BTreeMap<&'a str, BTreeSet<&'a str>>,
}

/// Which edges a walk follows from a manifest.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Walk {
    /// Children only.
    Children,
    /// Children and attachments.
    Everything,
}

impl<'a> Graph<'a> {
    pub(crate) fn new(manifests: &'a BTreeMap<String, ManifestLinks>) -> Self {
        let mut graph = Self::default();
        for (digest, links) in manifests {
            let children = graph.children.entry(digest).or_default();
            children.extend(links.children.iter().map(String::as_str));
            if let Some(subject) = &links.subject {
                graph.attach(digest, subject);
            }
        }
        graph
    }

    /// Records `attachment` as attached to `subject`.
    pub(crate) fn attach(&mut self, attachment: &'a str, subject: &'a str) {
        if attachment != subject {
            self.attachments.entry(subject).or_default().insert(attachment);
            self.subjects.entry(attachment).or_default().insert(subject);
        }
    }

    /// The manifests `digest` is attached to.
    pub(crate) fn subjects_of(&self, digest: &str) -> impl Iterator<Item = &'a str> + '_ {
        self.subjects.get(digest).into_iter().flatten().copied()
    }

    fn next(&self, digest: &str, walk: Walk) -> impl Iterator<Item = &'a str> + '_ {
        let children = self.children.get(digest).into_iter().flatten();
        let attached = match walk {
            Walk::Everything => self.attachments.get(digest),
            Walk::Children => None,
        };
        children.chain(attached.into_iter().flatten()).copied()
    }

    /// Everything reachable from `starts`, the starts included.
    pub(crate) fn closure(
        &self,
        starts: impl IntoIterator<Item = &'a str>,
        walk: Walk,
    ) -> BTreeSet<&'a str> {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<&'a str> = starts.into_iter().collect();
        while let Some(digest) = stack.pop() {
            if seen.insert(digest) {
                stack.extend(self.next(digest, walk).filter(|d| !seen.contains(d)));
            }
        }
        seen
    }

    /// Everything reachable from `start` by one edge or more, `start`
    /// itself only through a cycle.
    pub(crate) fn descendants(&self, start: &'a str) -> BTreeSet<&'a str> {
        self.closure(self.next(start, Walk::Children).collect::<Vec<_>>(), Walk::Children)
    }

    /// `nodes` in an order where every manifest comes before the manifests
    /// it references (an index before its children, an attachment before
    /// its subject), so a puller never meets a reference to a deleted
    /// manifest. `None` on a cycle.
    pub(crate) fn top_down(&self, nodes: &BTreeSet<&'a str>) -> Option<Vec<&'a str>> {
        // References within `nodes`: from -> to (from goes first).
        let mut edges: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for &node in nodes {
            for child in self.children.get(node).into_iter().flatten() {
                if nodes.contains(child) {
                    edges.entry(node).or_default().insert(child);
                }
            }
            for attachment in self.attachments.get(node).into_iter().flatten() {
                if nodes.contains(attachment) {
                    edges.entry(attachment).or_default().insert(node);
                }
            }
        }
        let mut waiting: BTreeMap<&str, usize> = nodes.iter().map(|&n| (n, 0)).collect();
        for to in edges.values().flatten() {
            *waiting.entry(to).or_default() += 1;
        }
        let mut ready: BTreeSet<&str> =
            waiting.iter().filter(|(_, n)| **n == 0).map(|(d, _)| *d).collect();
        let mut order = Vec::with_capacity(nodes.len());
        while let Some(node) = ready.pop_first() {
            order.push(node);
            for to in edges.get(node).into_iter().flatten() {
                let n = waiting.entry(to).or_default();
                *n -= 1;
                if *n == 0 {
                    ready.insert(to);
                }
            }
        }
        let order: Vec<&'a str> = order.into_iter().filter_map(|d| nodes.get(d).copied()).collect();
        (order.len() == nodes.len()).then_some(order)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(c: char) -> String {
        c.to_string().repeat(64)
    }

    #[test]
    fn attachment_tags_by_convention() {
        let h = hex('a');
        for tag in [format!("sha256-{h}"), format!("sha256-{h}.sig"), format!("sha256-{h}.att")] {
            assert_eq!(attachment_subject(&tag), Some(format!("sha256:{h}")), "{tag}");
        }
        assert_eq!(attachment_subject(&format!("sha256-{h}.sbom")), Some(format!("sha256:{h}")));
        let long = "b".repeat(128);
        assert_eq!(attachment_subject(&format!("sha512-{long}")), Some(format!("sha512:{long}")));
        for tag in [
            "v1".to_string(),
            format!("sha256-{}", &h[1..]),
            format!("sha256-{}", h.to_uppercase()),
            format!("sha256-{h}.txt"),
            format!("md5-{h}"),
            format!("sha256-{h}.sig.sig"),
        ] {
            assert_eq!(attachment_subject(&tag), None, "{tag}");
        }
    }

    fn graph(manifests: &[(&str, &[&str], Option<&str>)]) -> BTreeMap<String, ManifestLinks> {
        manifests
            .iter()
            .map(|(d, children, subject)| {
                let children = children.iter().map(|c| c.to_string()).collect();
                (
                    d.to_string(),
                    ManifestLinks { children, subject: subject.map(Into::into), blobs: Vec::new() },
                )
            })
            .collect()
    }

    #[test]
    fn closures_and_order() {
        let m = graph(&[
            ("index", &["amd", "arm"], None),
            ("amd", &[], None),
            ("sig", &[], Some("index")),
            ("refs", &["sbom"], None),
            ("sbom", &[], Some("index")),
        ]);
        let mut g = Graph::new(&m);
        g.attach("refs", "index");
        let all = g.closure(["index"], Walk::Everything);
        assert_eq!(
            all.into_iter().collect::<Vec<_>>(),
            ["amd", "arm", "index", "refs", "sbom", "sig"]
        );
        let children = g.closure(["index"], Walk::Children);
        assert_eq!(children.into_iter().collect::<Vec<_>>(), ["amd", "arm", "index"]);
        let nodes: BTreeSet<&str> = ["amd", "arm", "index", "refs", "sbom", "sig"].into();
        let order = g.top_down(&nodes).expect("no cycle");
        let at = |d: &str| order.iter().position(|o| *o == d).expect("present");
        assert!(at("refs") < at("sbom") && at("sbom") < at("index") && at("sig") < at("index"));
        assert!(at("index") < at("amd") && at("index") < at("arm"));
    }

    #[test]
    fn a_cycle_is_found_not_followed() {
        let m = graph(&[("a", &["b"], None), ("b", &["a"], None)]);
        let g = Graph::new(&m);
        assert_eq!(g.closure(["a"], Walk::Children).len(), 2);
        assert!(g.descendants("a").contains("a"));
        assert_eq!(g.top_down(&["a", "b"].into()), None);
    }
}
