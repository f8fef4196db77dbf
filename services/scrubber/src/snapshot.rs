//! What every tag of a repository points at, shared by the deletions of
//! that repository in this process and refreshed when older than a short
//! TTL. Deleting a digest is only safe when no unplanned tag points at it,
//! and checking that means resolving every tag of the repository: once per
//! TTL instead of once per image. A tag re-pointed at a planned digest
//! within the TTL (plus the time a snapshot takes) before that digest's
//! deletion is the remaining window.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use regsweep_registry::{Client, Error};
use tokio::time::Instant;

/// Tags resolved at once while taking a snapshot.
const RESOLVE_CONCURRENCY: usize = 16;

struct Snapshot {
    taken: Instant,
    /// tag -> digest.
    tags: HashMap<String, String>,
}

type Slot = Arc<tokio::sync::Mutex<Option<Snapshot>>>;

pub struct Snapshots {
    ttl: Duration,
    repositories: Mutex<HashMap<(String, String), Slot>>,
}

impl Snapshots {
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, repositories: Mutex::default() }
    }

    fn slot(&self, registry: &str, repository: &str) -> Slot {
        let mut repositories = self.repositories.lock().unwrap_or_else(PoisonError::into_inner);
        repositories.entry((registry.to_string(), repository.to_string())).or_default().clone()
    }

    /// The tags outside `planned` that point at `digest`, from a snapshot
    /// at most `ttl` old.
    pub async fn other_tags(
        &self,
        client: &Client,
        registry: &str,
        repository: &str,
        digest: &str,
        planned: &[String],
    ) -> Result<Vec<String>, Error> {
        let slot = self.slot(registry, repository);
        let mut snapshot = slot.lock().await;
        if snapshot.as_ref().is_none_or(|s| s.taken.elapsed() >= self.ttl) {
            *snapshot = Some(take(client, repository).await?);
        }
        let tags = &snapshot.as_ref().map(|s| &s.tags).into_iter().flatten().collect::<Vec<_>>();
        Ok(tags
            .iter()
            .filter(|(tag, d)| d.as_str() == digest && !planned.contains(tag))
            .map(|(tag, _)| (*tag).clone())
            .collect())
    }

    /// Forgets what this process removed, so later checks in the same
    /// snapshot see it gone.
    pub async fn removed(
        &self,
        registry: &str,
        repository: &str,
        digest: Option<&str>,
        tags: &[String],
    ) {
        let slot = self.slot(registry, repository);
        let mut snapshot = slot.lock().await;
        if let Some(s) = snapshot.as_mut() {
            s.tags.retain(|tag, d| !tags.contains(tag) && Some(d.as_str()) != digest);
        }
    }
}

async fn take(client: &Client, repository: &str) -> Result<Snapshot, Error> {
    let names = match client.list_tags(repository).await {
        Ok(names) => names,
        Err(Error::NotFound(_)) => Vec::new(),
        Err(e) => return Err(e),
    };
    let resolved: Vec<Result<Option<(String, String)>, Error>> =
        futures::stream::iter(names)
            .map(|tag| async move {
                Ok(client.resolve(repository, &tag).await?.map(|d| (tag, d.digest)))
            })
            .buffer_unordered(RESOLVE_CONCURRENCY)
            .collect()
            .await;
    let mut tags = HashMap::new();
    for entry in resolved {
        if let Some((tag, digest)) = entry? {
            tags.insert(tag, digest);
        }
    }
    // Aged from its completion: a slow registry would otherwise make every
    // snapshot stale on arrival. The window is the TTL plus its duration.
    Ok(Snapshot { taken: Instant::now(), tags })
}
