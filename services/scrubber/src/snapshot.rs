//! What every tag of a repository reaches, shared by the deletions of that
//! repository in this process and refreshed when older than a short TTL.
//! Deleting a manifest is only safe when no unplanned tag reaches it, by
//! pointing at it or through an index (and its nested indexes), or by
//! keeping the subject of an attachment tag that reaches it; and
//! checking that means resolving every tag of the repository: once per TTL
//! instead of once per deletion. An index's children are read once per
//! digest and remembered: a digest's content never changes.
//!
//! A snapshot is aged from the moment its listing started, so a tag pushed
//! while it was being taken is at most one TTL away from being seen.
//!
//! Reading a snapshot never waits for another deletion: the current one is
//! an `Arc` taken from under a short lock, and only its refresh is
//! serialized (one listing per repository at a time). A last check that
//! finds it stale says so rather than wait inside the request's turn; a
//! busy neighbour is not staleness.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use regsweep_registry::{Client, Error, media_types};
use tokio::time::Instant;

/// Tags resolved at once while taking a snapshot.
const RESOLVE_CONCURRENCY: usize = 16;
/// Index digests whose children are remembered.
const MAX_REMEMBERED_INDEXES: usize = 100_000;
/// Deepest index nesting followed.
const MAX_DEPTH: usize = 8;

#[derive(Clone)]
struct Snapshot {
    taken: Instant,
    /// tag -> digest.
    tags: HashMap<String, String>,
}

/// A repository's current snapshot, and the lock its refresh takes.
#[derive(Default)]
struct Repository {
    current: Mutex<Option<Arc<Snapshot>>>,
    refresh: tokio::sync::Mutex<()>,
}

type Slot = Arc<Repository>;

/// The repository's current snapshot, if any, without waiting.
fn current(slot: &Repository) -> Option<Arc<Snapshot>> {
    slot.current.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

/// An index's children, each with whether it may list more manifests.
type Children = Arc<Vec<(String, bool)>>;

/// A manifest about to be deleted, and the subjects its plan says it is
/// attached to (none for an image).
#[derive(Clone, Copy, Debug)]
pub struct Target<'a> {
    pub digest: &'a str,
    pub subjects: &'a [String],
}

pub struct Snapshots {
    ttl: Duration,
    repositories: Mutex<HashMap<(String, String), Slot>>,
    /// index digest -> its children, with whether each may list more.
    children: Mutex<HashMap<String, Children>>,
}

impl Snapshots {
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, repositories: Mutex::default(), children: Mutex::default() }
    }

    fn slot(&self, registry: &str, repository: &str) -> Slot {
        let mut repositories = self.repositories.lock().unwrap_or_else(PoisonError::into_inner);
        repositories.entry((registry.to_string(), repository.to_string())).or_default().clone()
    }

    /// The tags outside `planned` that keep `target` (see `keepers`), from
    /// a snapshot at most `ttl` old (counted from the start of its listing),
    /// taken anew if the one held is older.
    pub async fn reached_by(
        &self,
        client: &Client,
        registry: &str,
        repository: &str,
        target: Target<'_>,
        planned: &HashSet<&str>,
    ) -> Result<Vec<String>, Error> {
        let found = self.lookup(client, registry, repository, target, planned, None).await?;
        Ok(found.unwrap_or_default())
    }

    /// As `reached_by`, but `None` instead of taking a new snapshot: for
    /// the last check before a DELETE, which must not spend the registry's
    /// rate on a listing after its own request took its turn. A snapshot
    /// whose listing started at or after `since` (the caller's own check
    /// before its wait) counts as fresh whatever its age: where one listing
    /// takes longer than the TTL, that is as fresh as a snapshot gets.
    pub async fn reached_by_if_fresh(
        &self,
        client: &Client,
        registry: &str,
        repository: &str,
        target: Target<'_>,
        planned: &HashSet<&str>,
        since: Instant,
    ) -> Result<Option<Vec<String>>, Error> {
        self.lookup(client, registry, repository, target, planned, Some(since)).await
    }

    async fn lookup(
        &self,
        client: &Client,
        registry: &str,
        repository: &str,
        target: Target<'_>,
        planned: &HashSet<&str>,
        no_refresh_since: Option<Instant>,
    ) -> Result<Option<Vec<String>>, Error> {
        let slot = self.slot(registry, repository);
        let fresh = |s: &Snapshot| {
            s.taken.elapsed() < self.ttl || no_refresh_since.is_some_and(|since| s.taken >= since)
        };
        let snapshot = match current(&slot) {
            Some(s) if fresh(&s) => s,
            // The last check: never a listing inside the request's turn.
            _ if no_refresh_since.is_some() => return Ok(None),
            _ => {
                let _refreshing = slot.refresh.lock().await;
                // Another deletion may have refreshed it meanwhile.
                match current(&slot) {
                    Some(s) if fresh(&s) => s,
                    _ => {
                        let taken = Arc::new(self.take(client, repository).await?);
                        *slot.current.lock().unwrap_or_else(PoisonError::into_inner) =
                            Some(taken.clone());
                        taken
                    }
                }
            }
        };
        self.keepers(client, repository, &snapshot, target, planned).await.map(Some)
    }

    /// The unplanned tags that keep `target`: those reaching its digest,
    /// and those reaching a subject it is attached to, known from the plan
    /// or from an attachment tag (cosign's `.sig`, `.att`, `.sbom`, the
    /// referrers fallback `sha256-<hex>`) that reaches it. A signature goes
    /// with its image only when the image goes: a planned attachment whose
    /// subject gained a tag since planning (or is kept by a tag of another
    /// plan) is kept with it.
    async fn keepers(
        &self,
        client: &Client,
        repository: &str,
        snapshot: &Snapshot,
        target: Target<'_>,
        planned: &HashSet<&str>,
    ) -> Result<Vec<String>, Error> {
        let mut found = Vec::new();
        let mut wanted = vec![target.digest.to_string()];
        wanted.extend(target.subjects.iter().cloned());
        let mut seen = HashSet::new();
        while let Some(wanted_digest) = wanted.pop() {
            // Each subject once: a finite snapshot names finitely many.
            if !seen.insert(wanted_digest.clone()) {
                continue;
            }
            for (tag, points_at) in &snapshot.tags {
                let hit = points_at == &wanted_digest
                    || self.reaches(client, repository, points_at, &wanted_digest).await?;
                if !hit {
                    continue;
                }
                if !planned.contains(tag.as_str()) {
                    found.push(tag.clone());
                } else if let Some(subject) = regsweep_policy::attachment_subject(tag) {
                    wanted.push(subject);
                }
            }
        }
        found.sort_unstable();
        found.dedup();
        Ok(found)
    }

    /// Whether the index `from` lists `digest`, at any depth.
    async fn reaches(
        &self,
        client: &Client,
        repository: &str,
        from: &str,
        digest: &str,
    ) -> Result<bool, Error> {
        let mut frontier = vec![from.to_string()];
        let mut seen = HashSet::new();
        for _ in 0..MAX_DEPTH {
            let mut next = Vec::new();
            for index in frontier.drain(..).filter(|d| seen.insert(d.clone())) {
                let Some(children) = self.remembered(&index) else { continue };
                for (child, is_index) in children.iter() {
                    if child == digest {
                        return Ok(true);
                    }
                    if *is_index {
                        self.learn(client, repository, child).await?;
                        next.push(child.clone());
                    }
                }
            }
            if next.is_empty() {
                return Ok(false);
            }
            frontier = next;
        }
        // Deeper than any real image: assume it is reached.
        Ok(true)
    }

    fn remembered(&self, index: &str) -> Option<Children> {
        self.children.lock().unwrap_or_else(PoisonError::into_inner).get(index).cloned()
    }

    /// Reads the children of the index `digest` once.
    async fn learn(&self, client: &Client, repository: &str, digest: &str) -> Result<(), Error> {
        if self.remembered(digest).is_some() {
            return Ok(());
        }
        let children: Vec<(String, bool)> = match client.manifest(repository, digest).await? {
            Some(manifest) => manifest
                .children()
                .iter()
                .map(|c| {
                    let d = &c.descriptor;
                    (d.digest.clone(), media_types::may_list_manifests(&d.media_type))
                })
                .collect(),
            None => Vec::new(),
        };
        let mut remembered = self.children.lock().unwrap_or_else(PoisonError::into_inner);
        if remembered.len() >= MAX_REMEMBERED_INDEXES {
            remembered.clear();
        }
        remembered.insert(digest.to_string(), Arc::new(children));
        Ok(())
    }

    /// Forgets what this process removed, so later checks in the same
    /// snapshot see it gone.
    pub fn removed(&self, registry: &str, repository: &str, digest: Option<&str>, tags: &[String]) {
        let slot = self.slot(registry, repository);
        let mut current = slot.current.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = current.as_mut() {
            // In place unless a check is reading it (that check keeps the
            // snapshot it started with).
            Arc::make_mut(s)
                .tags
                .retain(|tag, d| !tags.contains(tag) && Some(d.as_str()) != digest);
        }
    }

    async fn take(&self, client: &Client, repository: &str) -> Result<Snapshot, Error> {
        let taken = Instant::now();
        let names = match client.list_tags(repository).await {
            Ok(names) => names,
            Err(Error::NotFound(_)) => Vec::new(),
            Err(e) => return Err(e),
        };
        let resolved: Vec<Result<Option<(String, String)>, Error>> = futures::stream::iter(names)
            .map(|tag| async move {
                let Some(d) = client.resolve(repository, &tag).await? else { return Ok(None) };
                if media_types::may_list_manifests(&d.media_type) {
                    self.learn(client, repository, &d.digest).await?;
                }
                Ok(Some((tag, d.digest)))
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
        Ok(Snapshot { taken, tags })
    }
}
