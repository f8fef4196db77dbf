//! Scrubbing one image: its locations serially. Each planned tag is
//! re-resolved and skipped if it moved; the digest is deleted outright only
//! when no unplanned tag reaches it (points at it, or at an index listing
//! it), else the planned tags are untagged one by one (Distribution 2.8
//! cannot delete a tag: the tag is pointed at a tiny placeholder manifest,
//! which is then deleted by digest). With the digest go its linked
//! manifests, in the plan's order: attachments before it, children after,
//! each checked again right before its DELETE. Which tags reach a manifest
//! comes from a short-lived per-repository snapshot (see `snapshot`).

use std::collections::HashSet;

use regsweep_policy::Linked;
use regsweep_registry::{Client, DeleteOutcome, Error, media_types};
use tokio::time::Instant;

use crate::snapshot::Snapshots;
use crate::store::{DeletionRecord, Finish};

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
        match client.resolve(repo, tag).await? {
            Some(current) if current.digest == d.digest => still_planned.push(tag.clone()),
            // Gone already, or re-pushed to another image: not ours to remove.
            _ => done.skipped_tags.push(tag.clone()),
        }
    }
    if d.delete_digest {
        let group = Group::of(d);
        let others = group.reached_by(client, snapshots, d, &d.digest).await?;
        if others.is_empty() {
            group.delete_linked(client, snapshots, lease, d, &d.before, &mut done).await?;
            // The last check, right before the image's own DELETE.
            let others = group.reached_by(client, snapshots, d, &d.digest).await?;
            if others.is_empty() {
                check(lease, d.id)?;
                client.delete_manifest(repo, &d.digest).await?;
                snapshots.removed(&d.registry, repo, Some(&d.digest), &still_planned).await;
                done.digest_deleted = true;
                done.deleted_tags.append(&mut still_planned);
                group.delete_linked(client, snapshots, lease, d, &d.after, &mut done).await?;
                return Ok(done);
            }
        }
        tracing::info!(repository = repo, digest = %d.digest, tags = ?others, "digest still reached, untagging only");
    }
    for tag in still_planned {
        check(lease, d.id)?;
        if untag(client, repo, &tag, &d.digest).await? {
            snapshots.removed(&d.registry, repo, None, std::slice::from_ref(&tag)).await;
            done.deleted_tags.push(tag);
        } else {
            done.skipped_tags.push(tag);
        }
    }
    Ok(done)
}

/// The tags one deletion plans to remove: its image's and its linked
/// manifests'. Any other tag that reaches a manifest keeps it.
struct Group<'a> {
    planned: HashSet<&'a str>,
}

impl<'a> Group<'a> {
    fn of(d: &'a DeletionRecord) -> Self {
        let linked = d.before.iter().chain(&d.after).flat_map(|l| l.tags.iter());
        Self { planned: d.tags.iter().chain(linked).map(String::as_str).collect() }
    }

    async fn reached_by(
        &self,
        client: &Client,
        snapshots: &Snapshots,
        d: &DeletionRecord,
        digest: &str,
    ) -> Result<Vec<String>, Error> {
        snapshots.reached_by(client, &d.registry, &d.repository, digest, &self.planned).await
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
            let others = self.reached_by(client, snapshots, d, &l.digest).await?;
            if !others.is_empty() {
                tracing::info!(repository = repo, digest = %l.digest, tags = ?others, "linked manifest still reached, kept");
                done.skipped_tags.extend(l.tags.iter().cloned());
                continue;
            }
            let mut tags = Vec::new();
            for tag in &l.tags {
                match client.resolve(repo, tag).await? {
                    Some(current) if current.digest == l.digest => tags.push(tag.clone()),
                    _ => done.skipped_tags.push(tag.clone()),
                }
            }
            check(lease, d.id)?;
            client.delete_manifest(repo, &l.digest).await?;
            snapshots.removed(&d.registry, repo, Some(&l.digest), &tags).await;
            done.deleted_tags.append(&mut tags);
            done.linked_deleted.push(l.digest.clone());
        }
        Ok(())
    }
}

/// Removes `tag` without touching the image it names: points it at a
/// placeholder manifest of its own and deletes that. False when the tag
/// moved in the meantime (left alone).
async fn untag(client: &Client, repo: &str, tag: &str, digest: &str) -> Result<bool, Error> {
    // Re-resolve right before overwriting: a push since the plan wins.
    match client.resolve(repo, tag).await? {
        Some(current) if current.digest == digest => {}
        _ => return Ok(false),
    }
    let config = b"{}".to_vec();
    let config_size = config.len();
    let config_digest = client.upload_blob(repo, config).await?;
    // A unique annotation gives each placeholder its own digest, so two
    // untags never share (and never delete) one placeholder.
    let placeholder = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_types::OCI_MANIFEST,
        "config": {"mediaType": media_types::OCI_CONFIG, "digest": config_digest, "size": config_size},
        "layers": [],
        "annotations": {"io.regsweep.placeholder": format!("{repo}:{tag}:{}", uuid::Uuid::new_v4())},
    });
    let body =
        serde_json::to_vec(&placeholder).map_err(|e| Error::InvalidResponse(e.to_string()))?;
    let placeholder_digest =
        client.put_manifest(repo, tag, media_types::OCI_MANIFEST, body).await?;
    match client.delete_manifest(repo, &placeholder_digest).await? {
        DeleteOutcome::Deleted | DeleteOutcome::NotFound => Ok(true),
    }
}
