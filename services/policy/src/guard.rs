//! The blast-radius guard: a plan that deletes too much of a repository at
//! once is held for a person to approve rather than run on its own. A
//! wrong regex, a clock gone back or an unreadable `created` fail this
//! way: everything looks old, or everything matches.

use std::collections::BTreeSet;

use crate::{Action, Plan};

/// The share of a repository's tags or images a plan may delete without
/// approval when its policy sets none.
pub const DEFAULT_MAX_DELETE_FRACTION: f64 = 0.5;

/// How much of a repository a whole plan deletes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlanSize {
    pub repository_tags: u64,
    pub repository_images: u64,
    pub deleted_tags: u64,
    pub deleted_images: u64,
    /// The only tag the plan leaves is `latest`.
    pub leaves_only_latest: bool,
}

impl PlanSize {
    /// The size of `plan` over the repository its decisions cover.
    pub fn of(plan: &Plan) -> Self {
        let digests = |keep: fn(&Action) -> bool| -> BTreeSet<&str> {
            plan.decisions
                .iter()
                .filter(|d| keep(&d.action))
                .filter_map(|d| d.digest.as_deref())
                .collect()
        };
        let all = digests(|_| true);
        let kept = digests(|a| *a == Action::Keep);
        let kept_tags: Vec<&str> = plan
            .decisions
            .iter()
            .filter(|d| d.action == Action::Keep)
            .map(|d| d.tag.as_str())
            .collect();
        Self {
            repository_tags: plan.decisions.len() as u64,
            repository_images: all.len() as u64,
            deleted_tags: plan.deleted_tags() as u64,
            // An image is gone when no kept tag names its digest.
            deleted_images: all.difference(&kept).count() as u64,
            leaves_only_latest: kept_tags == ["latest"],
        }
    }
}

/// The fraction a policy allows: its own when set (0 < f <= 1), else the
/// default.
pub fn max_delete_fraction(configured: f64) -> f64 {
    if configured > 0.0 && configured <= 1.0 { configured } else { DEFAULT_MAX_DELETE_FRACTION }
}

/// Why a plan of `size` must wait for approval under `max_fraction` (as
/// [`max_delete_fraction`] resolves it), or `None` when it may run. At 1
/// the guard is off.
pub fn hold_reason(size: &PlanSize, max_fraction: f64) -> Option<String> {
    let max_fraction = max_delete_fraction(max_fraction);
    if max_fraction >= 1.0 || size.deleted_tags == 0 && size.deleted_images == 0 {
        return None;
    }
    if size.repository_tags == 0 {
        return Some("the plan does not say how large the repository is".into());
    }
    let share = |part: u64, whole: u64| part as f64 / whole.max(1) as f64;
    let percent = max_fraction * 100.0;
    if share(size.deleted_tags, size.repository_tags) > max_fraction {
        return Some(format!(
            "deletes {} of {} tags, more than {percent:.0}%",
            size.deleted_tags, size.repository_tags
        ));
    }
    if share(size.deleted_images, size.repository_images) > max_fraction {
        return Some(format!(
            "deletes {} of {} images, more than {percent:.0}%",
            size.deleted_images, size.repository_images
        ));
    }
    if size.leaves_only_latest && size.deleted_tags > 0 {
        return Some(format!("deletes every tag but latest ({} tags)", size.deleted_tags));
    }
    None
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn size(tags: u64, images: u64, deleted_tags: u64, deleted_images: u64) -> PlanSize {
        PlanSize {
            repository_tags: tags,
            repository_images: images,
            deleted_tags,
            deleted_images,
            leaves_only_latest: false,
        }
    }

    #[test]
    fn half_may_go_more_is_held() {
        assert_eq!(hold_reason(&size(10, 10, 5, 5), 0.0), None);
        assert_eq!(
            hold_reason(&size(10, 10, 6, 6), 0.0).as_deref(),
            Some("deletes 6 of 10 tags, more than 50%")
        );
        // Few tags but most images: a multi-tagged survivor hides the rest.
        assert_eq!(
            hold_reason(&size(10, 4, 3, 3), 0.0).as_deref(),
            Some("deletes 3 of 4 images, more than 50%")
        );
        assert_eq!(hold_reason(&size(10, 10, 6, 6), 0.7), None);
    }

    #[test]
    fn leaving_only_latest_is_held_and_one_switches_the_guard_off() {
        let only_latest = PlanSize { leaves_only_latest: true, ..size(3, 3, 1, 1) };
        assert_eq!(
            hold_reason(&only_latest, 0.9).as_deref(),
            Some("deletes every tag but latest (1 tags)")
        );
        assert_eq!(hold_reason(&only_latest, 1.0), None);
        assert_eq!(hold_reason(&size(10, 10, 10, 10), 1.0), None);
    }

    #[test]
    fn an_unknown_size_is_held_and_an_empty_plan_never() {
        assert!(hold_reason(&PlanSize { deleted_tags: 1, ..PlanSize::default() }, 0.5).is_some());
        assert_eq!(hold_reason(&size(0, 0, 0, 0), 0.5), None);
    }

    proptest! {
        /// Deleting more never turns a hold into a run.
        #[test]
        fn holds_are_monotone_in_what_is_deleted(
            tags in 1u64..200, images in 1u64..200, a in 0u64..200, b in 0u64..200,
            fraction in 0.0f64..1.0,
        ) {
            let (small, large) = (a.min(b).min(tags), a.max(b).min(tags));
            let di = |t: u64| t.min(images);
            let held_small = hold_reason(&size(tags, images, small, di(small)), fraction).is_some();
            let held_large = hold_reason(&size(tags, images, large, di(large)), fraction).is_some();
            prop_assert!(!held_small || held_large);
        }
    }
}
