//! The space a plan frees: the blobs (layers and configs) of the manifests
//! it deletes that no manifest it keeps references, each counted once.
//!
//! It is an upper bound. The registry frees nothing until its garbage
//! collection runs, and that collection keeps a blob another repository
//! (or an untagged manifest, which the registry cannot list) still
//! references. It is exact for what the repository's tags reach.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::{Inventory, Plan};

/// A layer or config as a manifest references it.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Blob {
    pub digest: String,
    pub size: u64,
}

/// What a plan frees.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Reclaim {
    /// Bytes of the blobs freed, each counted once.
    pub bytes: u64,
    /// Distinct blobs freed.
    pub blobs: u64,
    /// Manifests the plan reaches whose blobs were not read (an index's
    /// child the reader skipped or could not fetch). With any, `bytes`
    /// leaves out what deleted ones hold and may count what kept ones
    /// share.
    pub unread_manifests: u64,
}

/// Every manifest of `inventory`: the ones its tags name, the ones read,
/// and the children those list.
pub fn reached_manifests(inventory: &Inventory) -> BTreeSet<&str> {
    let mut reached: BTreeSet<&str> =
        inventory.tags.iter().filter_map(|t| t.digest.as_deref()).collect();
    for (digest, links) in &inventory.manifests {
        reached.insert(digest);
        reached.extend(links.children.iter().map(String::as_str));
    }
    reached
}

/// What `plan` frees in `inventory`'s repository.
pub fn reclaimable(plan: &Plan, inventory: &Inventory) -> Reclaim {
    let deleted = plan.deleted_manifests();
    if deleted.is_empty() {
        return Reclaim::default();
    }
    let reached = reached_manifests(inventory);
    let mut kept_blobs = BTreeSet::new();
    let mut freed: BTreeMap<&str, u64> = BTreeMap::new();
    let mut unread = 0;
    for digest in reached.iter().copied().chain(deleted.iter().copied()).collect::<BTreeSet<_>>() {
        let Some(links) = inventory.manifests.get(digest) else {
            unread += 1;
            continue;
        };
        for blob in &links.blobs {
            if deleted.contains(digest) {
                freed.insert(&blob.digest, blob.size);
            } else {
                kept_blobs.insert(blob.digest.as_str());
            }
        }
    }
    freed.retain(|digest, _| !kept_blobs.contains(digest));
    // Sizes come from manifests anyone who can push writes: the total stays
    // within what a database integer holds.
    let total = freed.values().fold(0u64, |sum, size| sum.saturating_add(*size));
    Reclaim {
        bytes: total.min(i64::MAX as u64),
        blobs: freed.len() as u64,
        unread_manifests: unread,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ManifestLinks, RuleSpec, Rules, TagInput, plan};
    use chrono::{Duration, TimeZone, Utc};

    fn blob(digest: &str, size: u64) -> Blob {
        Blob { digest: digest.into(), size }
    }

    fn image(blobs: Vec<Blob>) -> ManifestLinks {
        ManifestLinks { blobs, ..ManifestLinks::default() }
    }

    fn tag(name: &str, digest: &str, days: i64) -> TagInput {
        let now = Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).single().expect("valid");
        TagInput {
            tag: name.into(),
            digest: Some(digest.into()),
            created: Some(now - Duration::days(days)),
            first_seen: None,
        }
    }

    /// Keeps the newest image; deletes the rest.
    fn keep_newest(inventory: Inventory) -> (Plan, Inventory) {
        let spec = RuleSpec { keep_n: 1, name_regex_delete: ".*".into(), ..RuleSpec::default() };
        let rules = Rules::compile(&spec).expect("valid");
        let now = Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).single().expect("valid");
        let planned = plan(&rules, inventory.clone(), now);
        (planned, inventory)
    }

    #[test]
    fn shared_layers_stay_and_each_freed_blob_counts_once() {
        let manifests = BTreeMap::from([
            // v1 and v2 share the base layer; old1 and old2 share a layer
            // no kept image uses, which is freed once.
            (
                "sha256:v2".to_string(),
                image(vec![blob("base", 100), blob("c2", 1), blob("l2", 20)]),
            ),
            (
                "sha256:v1".to_string(),
                image(vec![blob("base", 100), blob("c1", 1), blob("old", 30)]),
            ),
            ("sha256:v0".to_string(), image(vec![blob("c0", 1), blob("old", 30)])),
        ]);
        let tags =
            vec![tag("v2", "sha256:v2", 1), tag("v1", "sha256:v1", 2), tag("v0", "sha256:v0", 3)];
        let (planned, inventory) = keep_newest(Inventory { tags, manifests, gaps: Vec::new() });
        assert_eq!(planned.deleted_digests(), 2);
        let r = reclaimable(&planned, &inventory);
        assert_eq!(r, Reclaim { bytes: 1 + 30 + 1, blobs: 3, unread_manifests: 0 });
    }

    #[test]
    fn an_index_frees_its_childrens_blobs_unless_a_kept_one_shares_them() {
        let index = |children: &[&str]| ManifestLinks {
            children: children.iter().map(|c| c.to_string()).collect(),
            ..ManifestLinks::default()
        };
        let manifests = BTreeMap::from([
            ("sha256:new".to_string(), index(&["sha256:new-amd", "sha256:new-arm"])),
            ("sha256:old".to_string(), index(&["sha256:old-amd", "sha256:old-arm"])),
            ("sha256:new-amd".to_string(), image(vec![blob("amd-base", 50), blob("n1", 5)])),
            ("sha256:new-arm".to_string(), image(vec![blob("arm-base", 60), blob("n2", 6)])),
            ("sha256:old-amd".to_string(), image(vec![blob("amd-base", 50), blob("o1", 7)])),
            ("sha256:old-arm".to_string(), image(vec![blob("arm-old", 80), blob("o2", 8)])),
        ]);
        let tags = vec![tag("new", "sha256:new", 1), tag("old", "sha256:old", 9)];
        let (planned, mut inventory) = keep_newest(Inventory { tags, manifests, gaps: Vec::new() });
        let r = reclaimable(&planned, &inventory);
        assert_eq!(r, Reclaim { bytes: 7 + 80 + 8, blobs: 3, unread_manifests: 0 });

        // A child that was not read is counted as unread, never as free.
        inventory.manifests.remove("sha256:old-arm");
        let r = reclaimable(&planned, &inventory);
        assert_eq!(r, Reclaim { bytes: 7, blobs: 1, unread_manifests: 1 });
    }

    #[test]
    fn a_plan_that_deletes_nothing_frees_nothing() {
        let manifests = BTreeMap::from([("sha256:a".to_string(), image(vec![blob("x", 9)]))]);
        let tags = vec![tag("a", "sha256:a", 1)];
        let (planned, inventory) = keep_newest(Inventory { tags, manifests, gaps: Vec::new() });
        assert_eq!(reclaimable(&planned, &inventory), Reclaim::default());
    }
}
