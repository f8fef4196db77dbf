//! Reading a repository's graph for the planner, cheaply: a HEAD per tag
//! (all a digest needs; Docker Hub counts a GET as a pull), one GET per
//! distinct manifest however many tags name it, an index's children from
//! the index body already read, and nested indexes followed after the
//! tags. Anything that cannot be read is a gap, and a plan with a gap
//! deletes nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use regsweep_policy::{Blob, Inventory, ManifestLinks, TagInput};
use tokio::sync::OnceCell;

use crate::manifest::media_types;
use crate::{Client, Error, Manifest};

/// Most manifests read for one repository beyond its tags' own: a bound
/// on what a hostile index can make a cleanup fetch.
const MAX_NESTED: usize = 10_000;

/// What one manifest contributes to the graph.
#[derive(Debug)]
struct Node {
    links: ManifestLinks,
    created: Option<DateTime<Utc>>,
    /// Children that are indexes themselves: read after the tags.
    nested: Vec<String>,
}

type Cell = Arc<OnceCell<Result<Option<Arc<Node>>, Error>>>;

/// Reads one repository's tags into an `Inventory`. `read_tag` may run
/// concurrently; `finish` follows nested indexes and hands the result over.
pub struct RepositoryReader {
    client: Client,
    repository: String,
    nodes: Mutex<HashMap<String, Cell>>,
}

impl RepositoryReader {
    pub fn new(client: Client, repository: impl Into<String>) -> Self {
        Self { client, repository: repository.into(), nodes: Mutex::default() }
    }

    /// The tag with its digest and creation time; `None` when it is gone.
    pub async fn read_tag(&self, tag: &str) -> Result<Option<TagInput>, Error> {
        let Some(descriptor) = self.client.resolve(&self.repository, tag).await? else {
            return Ok(None);
        };
        let Some(node) = self.node(&descriptor.digest).await? else {
            // Deleted between the HEAD and the GET: gone too.
            return Ok(None);
        };
        Ok(Some(TagInput {
            tag: tag.to_string(),
            digest: Some(descriptor.digest),
            created: node.created,
            first_seen: None,
        }))
    }

    /// One manifest by digest, read once.
    async fn node(&self, digest: &str) -> Result<Option<Arc<Node>>, Error> {
        let cell = {
            let mut nodes = self.nodes.lock().unwrap_or_else(PoisonError::into_inner);
            nodes.entry(digest.to_string()).or_default().clone()
        };
        cell.get_or_init(|| self.fetch(digest)).await.clone()
    }

    async fn fetch(&self, digest: &str) -> Result<Option<Arc<Node>>, Error> {
        let Some(manifest) = self.client.manifest(&self.repository, digest).await? else {
            return Ok(None);
        };
        let created = self.client.created(&self.repository, &manifest).await?;
        Ok(Some(Arc::new(node(&manifest, created))))
    }

    /// The inventory of `tags` (as `read_tag` returned them, or `None` with
    /// the reason a tag could not be read), after following nested indexes.
    pub async fn finish(&self, tags: Vec<Result<TagInput, (String, String)>>) -> Inventory {
        let mut inventory = Inventory::default();
        for tag in tags {
            match tag {
                Ok(tag) => inventory.tags.push(tag),
                Err((tag, reason)) => {
                    inventory.gaps.push(format!("tag {tag} could not be read: {reason}"));
                    inventory.tags.push(TagInput { tag, ..TagInput::default() });
                }
            }
        }
        let mut pending: BTreeSet<String> =
            self.known().values().flat_map(|n| n.nested.clone()).collect();
        let mut fetched = 0;
        while let Some(digest) = pending.pop_first() {
            if self.known().contains_key(&digest) {
                continue;
            }
            fetched += 1;
            if fetched > MAX_NESTED {
                inventory.gaps.push(format!("more than {MAX_NESTED} nested manifests"));
                break;
            }
            match self.node(&digest).await {
                Ok(Some(node)) => pending.extend(node.nested.iter().cloned()),
                // An index may list a manifest the repository lacks: no edge.
                Ok(None) => {}
                Err(e) => inventory.gaps.push(format!("manifest {digest} could not be read: {e}")),
            }
        }
        inventory.manifests =
            self.known().into_iter().map(|(digest, node)| (digest, node.links.clone())).collect();
        inventory
    }

    /// Reads the manifests `inventory` reaches but did not read (the
    /// children of an index no tag names), `concurrency` at a time, for
    /// their blobs alone: a GET each, no config read. The space a plan
    /// frees needs them; planning does not. One that cannot be read stays
    /// out, and the reclaim figure counts it as unread.
    pub async fn read_blobs(&self, inventory: &mut Inventory, concurrency: usize) {
        use futures::StreamExt as _;
        let unread: Vec<String> = regsweep_policy::reached_manifests(inventory)
            .into_iter()
            .filter(|d| !inventory.manifests.contains_key(*d))
            .map(str::to_string)
            .collect();
        let read: Vec<(String, Option<ManifestLinks>)> = futures::stream::iter(unread)
            .map(|digest| async move {
                let manifest = self.client.manifest(&self.repository, &digest).await;
                let links = manifest.ok().flatten().map(|m| node(&m, None).links);
                (digest, links)
            })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
        for (digest, links) in read {
            if let Some(links) = links {
                inventory.manifests.insert(digest, links);
            }
        }
    }

    /// Every manifest read successfully so far.
    fn known(&self) -> BTreeMap<String, Arc<Node>> {
        let nodes = self.nodes.lock().unwrap_or_else(PoisonError::into_inner);
        nodes
            .iter()
            .filter_map(|(digest, cell)| {
                Some((digest.clone(), cell.get()?.as_ref().ok()?.clone()?))
            })
            .collect()
    }
}

fn node(manifest: &Manifest, created: Option<DateTime<Utc>>) -> Node {
    let children = manifest.children();
    let nested = children
        .iter()
        .filter(|c| media_types::may_list_manifests(&c.descriptor.media_type))
        .map(|c| c.descriptor.digest.clone())
        .collect();
    Node {
        links: ManifestLinks {
            children: children.iter().map(|c| c.descriptor.digest.clone()).collect(),
            subject: manifest.subject().map(|s| s.digest.clone()),
            blobs: manifest
                .blobs()
                .map(|b| Blob { digest: b.digest.clone(), size: b.size })
                .collect(),
        },
        created,
        nested,
    }
}
