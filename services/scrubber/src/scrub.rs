//! Scrubbing one image: its locations serially. Each planned tag is
//! re-resolved and skipped if it moved; the digest is deleted outright only
//! when no unplanned tag reaches it (points at it, or at an index listing
//! it), else the planned tags are untagged one by one (Distribution 2.8
//! cannot delete a tag: the tag is pointed at a tiny placeholder manifest,
//! which is then deleted by digest). With the digest go its linked
//! manifests, in the plan's order: attachments before it, children after,
//! each checked again right before its DELETE. Which tags reach a manifest
//! comes from a short-lived per-repository snapshot (see `snapshot`).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};

use regsweep_policy::Linked;
use regsweep_registry::{Client, Error};
use tokio::time::Instant;

use crate::snapshot::{Snapshots, Target};
use crate::store::{DeletionRecord, Finish};
use crate::untag::{self, Standing};

/// Why a scrub stopped before finishing.
#[derive(Debug, thiserror::Error)]
pub enum ScrubError {
    #[error("lease expired")]
    LeaseLost,
    #[error(transparent)]
    Registry(#[from] Error),
}

/// What a scrub did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Scrubbed {
    pub deleted_tags: Vec<String>,
    pub skipped_tags: Vec<String>,
    pub digest_deleted: bool,
    /// Manifests deleted with the image (its attachments and children).
    pub linked_deleted: Vec<String>,
}

impl Scrubbed {
    pub fn into_finish(self) -> Finish {
        Finish::Deleted {
            deleted_tags: self.deleted_tags,
            skipped_tags: self.skipped_tags,
            digest_deleted: self.digest_deleted,
        }
    }
}

/// The lease a scrub acts under: checked before every destructive call.
pub trait Lease: Send + Sync {
    /// When this replica's hold on the deletion ends, by the local clock.
    fn valid_until(&self, id: i64) -> Option<Instant>;
}

fn check(lease: &dyn Lease, id: i64) -> Result<(), ScrubError> {
    match lease.valid_until(id) {
        Some(until) if Instant::now() < until => Ok(()),
        _ => Err(ScrubError::LeaseLost),
    }
}

pub async fn scrub(
    client: &Client,
    snapshots: &Snapshots,
    lease: &dyn Lease,
    d: &DeletionRecord,
) -> Result<Scrubbed, ScrubError> {
    let repo = d.repository.as_str();
    let mut done = Scrubbed::default();
    let mut still_planned = Vec::new();
    for tag in &d.tags {
        match untag::standing(client, repo, tag, &d.digest).await? {
            Standing::Planned => still_planned.push(tag.clone()),
            // An untag stopped half-way: finished first, whatever follows.
            placeholder @ Standing::Placeholder(_) => {
                check(lease, d.id)?;
                if untag::untag(client, repo, tag, &d.digest, placeholder).await? {
                    snapshots.removed(&d.registry, repo, None, std::slice::from_ref(tag));
                    done.deleted_tags.push(tag.clone());
                } else {
                    done.skipped_tags.push(tag.clone());
                }
            }
            // Gone already, or re-pushed to another image: not ours to remove.
            Standing::Elsewhere => done.skipped_tags.push(tag.clone()),
        }
    }
    if d.delete_digest {
        let group = Group::of(d);
        let others = group.reached_by(client, snapshots, d, &d.digest).await?;
        if others.is_empty() {
            group.delete_linked(client, snapshots, lease, d, &d.before, &mut done).await?;
            if group.delete_unreached(client, snapshots, lease, d, &d.digest).await? {
                snapshots.removed(&d.registry, repo, Some(&d.digest), &still_planned);
                done.digest_deleted = true;
                done.deleted_tags.append(&mut still_planned);
                group.delete_linked(client, snapshots, lease, d, &d.after, &mut done).await?;
                return Ok(done);
            }
        }
        tracing::info!(repository = repo, digest = %d.digest, "digest still reached, untagging only");
    }
    for tag in still_planned {
        check(lease, d.id)?;
        if untag::untag(client, repo, &tag, &d.digest, Standing::Planned).await? {
            snapshots.removed(&d.registry, repo, None, std::slice::from_ref(&tag));
            done.deleted_tags.push(tag);
        } else {
            done.skipped_tags.push(tag);
        }
    }
    Ok(done)
}

/// Verdicts of a last check.
const CLEAR: u8 = 0;
const REACHED: u8 = 1;
const STALE: u8 = 2;
const LEASE_LOST: u8 = 3;
/// Last checks that may find the snapshot stale before a deletion gives up.
const MAX_STALE_CHECKS: usize = 5;

/// The tags one deletion plans to remove: its image's and its linked
/// manifests'. Any other tag that reaches a manifest keeps it, as does one
/// that keeps a subject the plan says the manifest is attached to.
struct Group<'a> {
    planned: HashSet<&'a str>,
    /// The image and each linked manifest -> the subjects it is attached
    /// to.
    subjects: HashMap<&'a str, &'a [String]>,
}

impl<'a> Group<'a> {
    fn of(d: &'a DeletionRecord) -> Self {
        let linked = || d.before.iter().chain(&d.after);
        let tags = linked().flat_map(|l| l.tags.iter());
        let image = (d.digest.as_str(), d.subjects.as_slice());
        Self {
            planned: d.tags.iter().chain(tags).map(String::as_str).collect(),
            subjects: linked()
                .map(|l| (l.digest.as_str(), l.subjects.as_slice()))
                .chain(std::iter::once(image))
                .collect(),
        }
    }

    /// `digest` as the last checks see it: with the subjects it goes with.
    fn target<'d>(&'d self, digest: &'d str) -> Target<'d> {
        Target { digest, subjects: self.subjects.get(digest).copied().unwrap_or_default() }
    }

    async fn reached_by(
        &self,
        client: &Client,
        snapshots: &Snapshots,
        d: &DeletionRecord,
        digest: &str,
    ) -> Result<Vec<String>, Error> {
        let target = self.target(digest);
        snapshots.reached_by(client, &d.registry, &d.repository, target, &self.planned).await
    }

    /// Deletes `digest` if no unplanned tag reaches it, checked as the last
    /// step before the DELETE leaves (after the wait for the registry's
    /// rate limit); false when one does and nothing was sent. A snapshot
    /// gone stale during the wait is taken anew outside the request's turn,
    /// and the request waits for a new one.
    async fn delete_unreached(
        &self,
        client: &Client,
        snapshots: &Snapshots,
        lease: &dyn Lease,
        d: &DeletionRecord,
        digest: &str,
    ) -> Result<bool, ScrubError> {
        for _ in 0..MAX_STALE_CHECKS {
            let since = Instant::now();
            if !self.reached_by(client, snapshots, d, digest).await?.is_empty() {
                return Ok(false);
            }
            let verdict = AtomicU8::new(CLEAR);
            let last_check =
                || -> Pin<Box<dyn Future<Output = Result<bool, Error>> + Send + '_>> {
                    Box::pin(async {
                        let seen = self.verdict(client, snapshots, lease, d, digest, since).await?;
                        verdict.store(seen, Ordering::Relaxed);
                        Ok(seen == CLEAR)
                    })
                };
            let deleted =
                client.delete_manifest_checked(&d.repository, digest, &last_check).await?;
            match verdict.load(Ordering::Relaxed) {
                LEASE_LOST => return Err(ScrubError::LeaseLost),
                STALE => continue,
                REACHED => {
                    tracing::info!(repository = %d.repository, digest, "reached at the last check, kept");
                    return Ok(false);
                }
                _ => return Ok(deleted.is_some()),
            }
        }
        Err(ScrubError::Registry(Error::InvalidResponse(
            "the tag snapshot went stale at every last check; the registry is too slow for --tag-snapshot-ttl".into(),
        )))
    }

    /// The last check's verdict on `digest`, from the snapshot as it is.
    async fn verdict(
        &self,
        client: &Client,
        snapshots: &Snapshots,
        lease: &dyn Lease,
        d: &DeletionRecord,
        digest: &str,
        since: Instant,
    ) -> Result<u8, Error> {
        if check(lease, d.id).is_err() {
            return Ok(LEASE_LOST);
        }
        let (registry, repository) = (&d.registry, &d.repository);
        let target = self.target(digest);
        let found = snapshots
            .reached_by_if_fresh(client, registry, repository, target, &self.planned, since)
            .await?;
        Ok(match found {
            None => STALE,
            Some(others) if others.is_empty() => CLEAR,
            Some(_) => REACHED,
        })
    }

    /// Deletes `linked` in order, each only if no unplanned tag reaches it
    /// right before its DELETE. A tag of it that moved elsewhere stays.
    async fn delete_linked(
        &self,
        client: &Client,
        snapshots: &Snapshots,
        lease: &dyn Lease,
        d: &DeletionRecord,
        linked: &[Linked],
        done: &mut Scrubbed,
    ) -> Result<(), ScrubError> {
        let repo = d.repository.as_str();
        for l in linked {
            let mut tags = Vec::new();
            for tag in &l.tags {
                match client.resolve(repo, tag).await? {
                    Some(current) if current.digest == l.digest => tags.push(tag.clone()),
                    _ => done.skipped_tags.push(tag.clone()),
                }
            }
            if !self.delete_unreached(client, snapshots, lease, d, &l.digest).await? {
                done.skipped_tags.append(&mut tags);
                continue;
            }
            snapshots.removed(&d.registry, repo, Some(&l.digest), &tags);
            done.deleted_tags.append(&mut tags);
            done.linked_deleted.push(l.digest.clone());
        }
        Ok(())
    }
}
