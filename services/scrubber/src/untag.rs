//! Removing a tag without deleting the image it names, on registries that
//! cannot delete a tag (Distribution 2.8): the tag is pointed at a tiny
//! placeholder manifest of its own, which is then deleted by digest. Done
//! so that a failure at any step leaves the tag where it was or gone,
//! never on a placeholder:
//!
//! * the registry is first asked, with no side effect, whether it deletes
//!   manifests at all; one that does not is never written to;
//! * a placeholder whose DELETE fails is replaced by the original manifest
//!   (the image is still there: this path never deletes it);
//! * a tag found on regsweep's own placeholder (a scrubber killed between
//!   the PUT and the DELETE) is finished, or put back, on the next try;
//! * a tag counts as removed only when it no longer resolves.

use regsweep_registry::{Client, Error, media_types};

/// The annotation naming a placeholder: `REPOSITORY:TAG:UUID`.
const ANNOTATION: &str = "io.regsweep.placeholder";

/// Where a planned tag stands now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Standing {
    /// On the digest it was planned on.
    Planned,
    /// On regsweep's placeholder for it (this digest): an untag stopped
    /// half-way.
    Placeholder(String),
    /// Gone, or pushed to another image: not ours to remove.
    Elsewhere,
}

pub async fn standing(
    client: &Client,
    repo: &str,
    tag: &str,
    planned: &str,
) -> Result<Standing, Error> {
    let Some(current) = client.resolve(repo, tag).await? else { return Ok(Standing::Elsewhere) };
    if current.digest == planned {
        return Ok(Standing::Planned);
    }
    if media_types::may_list_manifests(&current.media_type) {
        return Ok(Standing::Elsewhere);
    }
    let ours = format!("{repo}:{tag}:");
    let manifest = client.manifest(repo, &current.digest).await?;
    let placeholder = manifest
        .as_ref()
        .and_then(|m| m.annotations().get(ANNOTATION))
        .is_some_and(|a| a.starts_with(&ours));
    Ok(if placeholder { Standing::Placeholder(current.digest) } else { Standing::Elsewhere })
}

/// Removes `tag`, standing as `standing`, from `planned` without deleting
/// `planned`. True when the tag is gone; false when it was not ours to
/// remove (it moved).
pub async fn untag(
    client: &Client,
    repo: &str,
    tag: &str,
    planned: &str,
    standing: Standing,
) -> Result<bool, Error> {
    let placeholder = match standing {
        Standing::Elsewhere => return Ok(false),
        Standing::Placeholder(placeholder) => placeholder,
        Standing::Planned => {
            if !client.deletes_allowed(repo).await? {
                return Err(Error::unsupported("the registry does not delete manifests"));
            }
            // The placeholder is built (its config uploaded) first, so only
            // the last look at the tag separates it from the PUT that
            // overwrites it: a push since the plan wins unless it lands in
            // that one round trip (Distribution has no conditional PUT).
            let body = placeholder(client, repo, tag).await?;
            match client.resolve(repo, tag).await? {
                Some(current) if current.digest == planned => {}
                _ => return Ok(false),
            }
            client.put_manifest(repo, tag, media_types::OCI_MANIFEST, body).await?
        }
    };
    if let Err(e) = client.delete_manifest(repo, &placeholder).await {
        put_back(client, repo, tag, planned, &placeholder).await?;
        return Err(e);
    }
    match client.resolve(repo, tag).await? {
        None => Ok(true),
        Some(current) if current.digest == placeholder => Err(Error::InvalidResponse(format!(
            "the registry still serves tag {tag} after its placeholder was deleted"
        ))),
        // Pushed again after it was removed: removed all the same.
        Some(_) => Ok(true),
    }
}

/// A new placeholder manifest of `tag`'s own, its config uploaded.
async fn placeholder(client: &Client, repo: &str, tag: &str) -> Result<Vec<u8>, Error> {
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
        "annotations": {ANNOTATION: format!("{repo}:{tag}:{}", uuid::Uuid::new_v4())},
    });
    serde_json::to_vec(&placeholder).map_err(|e| Error::InvalidResponse(e.to_string()))
}

/// Puts `tag` back on `planned` if it still stands on `placeholder`.
async fn put_back(
    client: &Client,
    repo: &str,
    tag: &str,
    planned: &str,
    placeholder: &str,
) -> Result<(), Error> {
    match client.resolve(repo, tag).await? {
        Some(current) if current.digest == placeholder => {}
        // Gone or pushed since: nothing of ours to undo.
        _ => return Ok(()),
    }
    let Some((media_type, body)) = client.raw_manifest(repo, planned).await? else {
        return Err(Error::InvalidResponse(format!(
            "cannot put tag {tag} back: {planned} is gone from the registry"
        )));
    };
    client.put_manifest(repo, tag, &media_type, body).await?;
    tracing::warn!(
        repository = repo,
        tag,
        digest = planned,
        "placeholder not deleted; tag put back"
    );
    Ok(())
}
