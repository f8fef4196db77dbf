//! First sightings for `tag_cleanup`: the worker tells the scheduler which
//! tags it read on which digests, and learns when each was first seen, the
//! age of an image whose `created` is unknown. The scheduler's clock
//! stamps them, across runs and workers.

use std::collections::HashMap;

use regsweep_policy::Inventory;
use regsweep_proto::{timestamp_to_chrono, v1};

use crate::job::JobContext;

/// Sightings per request (the scheduler takes at most 10,000).
const CHUNK: usize = 5_000;

/// Why first sightings are missing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("recording first sightings: {0}")]
    Rpc(String),
    #[error("recording first sightings: the scheduler answered {expected} times for {got} tags")]
    Mismatch { expected: usize, got: usize },
}

/// Fills `first_seen` of every tag of `inventory` that has a digest. A
/// complete read (no gaps) also makes the scheduler forget tags it no
/// longer has. A scheduler too old to record them leaves ages to
/// `created`, as before.
pub async fn fill(
    ctx: &JobContext,
    registry: &str,
    repository: &str,
    inventory: &mut Inventory,
) -> Result<(), Error> {
    let sightings: Vec<v1::TagSighting> = inventory
        .tags
        .iter()
        .filter_map(|t| Some(v1::TagSighting { tag: t.tag.clone(), digest: t.digest.clone()? }))
        .collect();
    let mut client = ctx.services().repositories();
    let mut first_seen = HashMap::with_capacity(sightings.len());
    let mut read_at = None;
    let request = |sightings: Vec<v1::TagSighting>, forget| v1::RecordTagSightingsRequest {
        registry: registry.to_string(),
        repository: repository.to_string(),
        sightings,
        forget_unseen_since: forget,
    };
    // An empty repository is read too: its old tags are forgotten.
    let chunks: Vec<&[v1::TagSighting]> =
        if sightings.is_empty() { vec![&[]] } else { sightings.chunks(CHUNK).collect() };
    for chunk in chunks {
        let response = match client.record_tag_sightings(request(chunk.to_vec(), None)).await {
            Ok(response) => response.into_inner(),
            Err(status) if status.code() == tonic::Code::Unimplemented => {
                ctx.log("the scheduler does not record first sightings: ages from `created` only");
                return Ok(());
            }
            Err(status) => return Err(Error::Rpc(status.message().to_string())),
        };
        if response.first_seen.len() != chunk.len() {
            return Err(Error::Mismatch { expected: chunk.len(), got: response.first_seen.len() });
        }
        read_at = read_at.or(response.seen_at);
        for (s, t) in chunk.iter().zip(&response.first_seen) {
            first_seen.insert(s.tag.clone(), timestamp_to_chrono(t));
        }
    }
    // Forgetting after an incomplete read would make an unread tag's
    // image look new next time: harmless, but wrong.
    if inventory.gaps.is_empty() && read_at.is_some() {
        client
            .record_tag_sightings(request(Vec::new(), read_at))
            .await
            .map_err(|s| Error::Rpc(s.message().to_string()))?;
    }
    for tag in &mut inventory.tags {
        tag.first_seen = first_seen.get(&tag.tag).copied().flatten();
    }
    Ok(())
}
