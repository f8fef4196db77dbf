//! What every tag of a repository reaches, shared by the deletions of that
//! repository in this process and refreshed when older than a short TTL.
//! Deleting a manifest is only safe when no unplanned tag reaches it, by
//! pointing at it or through an index (and its nested indexes), or by
//! keeping the subject of an attachment tag that reaches it; and
//! checking that means resolving every tag of the repository: once per TTL
//! instead of once per deletion. An index's children are read once per
//! digest and remembered: a digest's content never changes.
//!
//! A repository's first snapshot lists the tags; each is resolved the
//! first time a check needs it, and the answer is shared by every later
//! check of that snapshot. A check needs every tag outside its plan, and
//! the planned attachment tags (whose subjects it follows); a planned tag
//! of any other name cannot keep anything, so it is never resolved for
//! that check. A one-image repository is then checked with a listing
//! alone. A refresh resolves every tag before it replaces the snapshot, as
//! a check made before the refresh resolved its own needs on the old one:
//! its last check, which resolves nothing, can then use the new one as it
//! stands rather than find it unresolved and wait for another turn.
//!
//! A snapshot is aged from the moment its listing started, so a tag pushed
//! while it was being taken is at most one TTL away from being seen. A tag
//! resolved later than the listing is only fresher for it.
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

/// A listed tag's digest, once a check needed it: `None` inside when the
/// tag was gone by then.
type Resolution = Arc<tokio::sync::OnceCell<Option<String>>>;

#[derive(Clone)]
struct Snapshot {
    taken: Instant,
    /// tag -> digest, resolved on first need.
    tags: HashMap<String, Resolution>,
}

impl Snapshot {
    /// The tags a check with `planned` must know the digest of.
    fn needed<'s>(
        &'s self,
        planned: &'s HashSet<&str>,
    ) -> impl Iterator<Item = (&'s str, &'s Resolution)> {
        self.tags.iter().map(|(tag, r)| (tag.as_str(), r)).filter(|(tag, _)| {
            !planned.contains(tag) || regsweep_policy::attachment_subject(tag).is_some()
        })
    }
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
                    replaced => {
                        let eager = replaced.is_some();
                        let taken = Arc::new(self.take(client, repository, eager).await?);
                        *slot.current.lock().unwrap_or_else(PoisonError::into_inner) =
                            Some(taken.clone());
                        taken
                    }
                }
            }
        };
        if no_refresh_since.is_some() {
            // The last check resolves nothing either. Its own check
            // resolved its needs on this snapshot, or a refresh resolved
            // every tag; a tag still unresolved is never taken as absent.
            if snapshot.needed(planned).any(|(_, r)| !r.initialized()) {
                return Ok(None);
            }
        } else {
            self.resolve(client, repository, &snapshot, planned).await?;
        }
        self.keepers(client, repository, &snapshot, target, planned).await.map(Some)
    }

    /// Resolves the tags of `snapshot` a check with `planned` needs and no
    /// earlier check resolved.
    async fn resolve(
        &self,
        client: &Client,
        repository: &str,
        snapshot: &Snapshot,
        planned: &HashSet<&str>,
    ) -> Result<(), Error> {
        // Owned, so the stream below holds no closure over borrowed pairs
        // (which the task's `Send` bound cannot see through).
        let unresolved: Vec<(String, Resolution)> = snapshot
            .needed(planned)
            .filter(|(_, r)| !r.initialized())
            .map(|(tag, r)| (tag.to_string(), r.clone()))
            .collect();
        let mut resolving = futures::stream::iter(unresolved)
            .map(|(tag, resolution)| async move {
                resolution.get_or_try_init(|| self.resolve_tag(client, repository, &tag)).await?;
                Ok::<_, Error>(())
            })
            .buffer_unordered(RESOLVE_CONCURRENCY);
        while let Some(resolved) = resolving.next().await {
            resolved?;
        }
        Ok(())
    }

    /// What `tag` points at now; an index's children are learnt with it.
    async fn resolve_tag(
        &self,
        client: &Client,
        repository: &str,
        tag: &str,
    ) -> Result<Option<String>, Error> {
        let Some(d) = client.resolve(repository, tag).await? else { return Ok(None) };
        if media_types::may_list_manifests(&d.media_type) {
            self.learn(client, repository, &d.digest).await?;
        }
        Ok(Some(d.digest))
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
        // Unresolved tags are planned ones no check of this plan needs;
        // a tag gone by its resolution reaches nothing.
        let mut resolved = Vec::with_capacity(snapshot.tags.len());
        for (tag, resolution) in &snapshot.tags {
            if let Some(Some(points_at)) = resolution.get() {
                resolved.push((tag, points_at));
            }
        }
        while let Some(wanted_digest) = wanted.pop() {
            // Each subject once: a finite snapshot names finitely many.
            if !seen.insert(wanted_digest.clone()) {
                continue;
            }
            for &(tag, points_at) in &resolved {
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
            Arc::make_mut(s).tags.retain(|tag, resolution| {
                let points_at = resolution.get().and_then(Option::as_deref);
                !tags.contains(tag) && (digest.is_none() || points_at != digest)
            });
        }
    }

    /// Lists the repository's tags. A refresh (`eager`) resolves every
    /// one before it replaces the old snapshot; a repository's first
    /// snapshot resolves none yet.
    async fn take(
        &self,
        client: &Client,
        repository: &str,
        eager: bool,
    ) -> Result<Snapshot, Error> {
        let taken = Instant::now();
        let names = match client.list_tags(repository).await {
            Ok(names) => names,
            Err(Error::NotFound(_)) => Vec::new(),
            Err(e) => return Err(e),
        };
        let tags = names.into_iter().map(|tag| (tag, Resolution::default())).collect();
        let snapshot = Snapshot { taken, tags };
        if eager {
            self.resolve(client, repository, &snapshot, &HashSet::new()).await?;
        }
        Ok(snapshot)
    }
}
