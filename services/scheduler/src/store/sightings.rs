//! When regsweep first saw each tag on the digest it points at: the age of
//! an image whose `created` cannot be believed. The rule lives here once;
//! the stores differ only in how a batch reaches the database (`unnest`
//! on PostgreSQL, one statement per row on SQLite's single writer).

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::StoreError;

/// A tag read pointing at a manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sighting {
    pub tag: String,
    pub digest: String,
}

/// One part of one read of a repository.
#[derive(Clone, Copy, Debug)]
pub struct SightingBatch<'a> {
    pub registry_id: i64,
    pub repository: &'a str,
    /// Each tag at most once.
    pub sightings: &'a [Sighting],
    /// The scheduler's clock, never the caller's.
    pub now: DateTime<Utc>,
    /// Forget the repository's tags not seen since then (the last part of
    /// a read that listed every tag).
    pub forget_unseen_since: Option<DateTime<Utc>>,
}

/// What a conflict on (registry, repository, tag) does, in both dialects:
/// the same digest keeps its first sighting; another digest is a new
/// image under that tag and is seen anew.
pub(crate) const UPSERT: &str = "ON CONFLICT (registry_id, repository, tag) DO UPDATE SET
         first_seen = CASE WHEN tag_sightings.digest = excluded.digest
                           THEN tag_sightings.first_seen ELSE excluded.first_seen END,
         digest = excluded.digest,
         last_seen = excluded.last_seen";

/// Forgets the tags of a repository a complete read no longer found.
pub(crate) const FORGET: &str =
    "DELETE FROM tag_sightings WHERE registry_id = $1 AND repository = $2 AND last_seen < $3";

/// Forgets the repositories a complete catalog no longer lists.
pub(crate) const FORGET_REMOVED: &str = "DELETE FROM tag_sightings
     WHERE registry_id = $1
       AND NOT EXISTS (SELECT 1 FROM repositories r
                       WHERE r.registry_id = tag_sightings.registry_id
                         AND r.name = tag_sightings.repository)";

/// The first sightings in the order of `batch`, from what the upsert
/// returned by tag.
pub(crate) fn in_order(
    batch: &SightingBatch<'_>,
    mut returned: HashMap<String, DateTime<Utc>>,
) -> Result<Vec<DateTime<Utc>>, StoreError> {
    batch
        .sightings
        .iter()
        .map(|s| {
            returned.remove(&s.tag).ok_or_else(|| {
                StoreError::Corrupt(format!("no sighting returned for tag {:?}", s.tag))
            })
        })
        .collect()
}
