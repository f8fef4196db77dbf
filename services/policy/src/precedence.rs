//! Which policy governs a repository: of a registry's policies whose
//! selectors match its name, the one of highest priority. Two policies at
//! one priority must not be able to select the same repository, so the
//! answer never depends on which was created first; the id breaks ties only
//! for rows that predate that check or raced past it.

use std::fmt;

use crate::Selector;

/// Lowest and highest priority accepted.
pub const PRIORITY_RANGE: std::ops::RangeInclusive<i32> = -1_000_000..=1_000_000;

/// A policy as precedence sees it.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub id: i64,
    pub name: String,
    pub priority: i32,
    pub selector: Selector,
}

/// A registry's policies in the order they claim repositories.
#[derive(Clone, Debug, Default)]
pub struct Precedence {
    ordered: Vec<Candidate>,
}

/// Why a repository has the policy it has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Governance<'a> {
    /// The governing policy's name; `None` when no selector matches.
    pub policy: Option<&'a str>,
    /// One line for an operator: the selector that matched, its priority,
    /// and the matching policies it outranks.
    pub reason: String,
}

/// Two policies at one priority that can select one repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// The policy already there.
    pub other: String,
    pub priority: i32,
    /// A repository name both select; `None` when the selectors were too
    /// complex to decide, which counts as overlapping.
    pub witness: Option<String>,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "overlaps policy {:?} at priority {}", self.other, self.priority)?;
        match &self.witness {
            Some(name) => write!(f, ": both select {name:?}")?,
            None => write!(f, ": the selectors are too complex to prove disjoint")?,
        }
        write!(f, "; give one of them a different priority")
    }
}

impl Precedence {
    pub fn new(mut candidates: Vec<Candidate>) -> Self {
        candidates.sort_by_key(|c| (std::cmp::Reverse(c.priority), c.id));
        Self { ordered: candidates }
    }

    /// The policy that governs `repository`, if any.
    pub fn governing(&self, repository: &str) -> Option<&Candidate> {
        self.ordered.iter().find(|c| c.selector.is_match(repository))
    }

    /// The governing policy of `repository` and why.
    pub fn explain(&self, repository: &str) -> Governance<'_> {
        let mut matching = self.ordered.iter().filter(|c| c.selector.is_match(repository));
        let Some(first) = matching.next() else {
            return Governance { policy: None, reason: "no policy selects it".into() };
        };
        let outranked: Vec<String> =
            matching.map(|c| format!("{:?} (priority {})", c.name, c.priority)).collect();
        let head = format!("selector {:?} at priority {}", first.selector.as_str(), first.priority);
        let reason = if outranked.is_empty() {
            format!("{head}, the only policy that selects it")
        } else {
            format!("{head}, above {}", outranked.join(", "))
        };
        Governance { policy: Some(&first.name), reason }
    }

    /// The policies at `candidate`'s priority whose selectors can select a
    /// repository it selects, other than itself (same id).
    pub fn conflicts(&self, candidate: &Candidate) -> Vec<Conflict> {
        self.ordered
            .iter()
            .filter(|c| c.priority == candidate.priority && c.id != candidate.id)
            .filter_map(|c| conflict(candidate, c))
            .collect()
    }

    /// Every pair of policies at one priority that can select one
    /// repository, as `(the one that loses the tie, conflict with the one
    /// that wins it)`. Each selector is compiled once, however many pairs.
    pub fn all_conflicts(&self) -> Vec<(&str, Conflict)> {
        let mut found = Vec::new();
        for (i, later) in self.ordered.iter().enumerate() {
            let earlier = self.ordered[..i].iter().filter(|c| c.priority == later.priority);
            found.extend(
                earlier.filter_map(|c| conflict(later, c)).map(|c| (later.name.as_str(), c)),
            );
        }
        found
    }
}

/// The conflict of `candidate` with `other` (at the same priority), if
/// their selectors can select one repository.
fn conflict(candidate: &Candidate, other: &Candidate) -> Option<Conflict> {
    let witness = match candidate.selector.overlap(&other.selector) {
        Ok(None) => return None,
        Ok(Some(name)) => Some(name),
        // Undecidable within the limits counts as overlapping.
        Err(_) => None,
    };
    Some(Conflict { other: other.name.clone(), priority: other.priority, witness })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(id: i64, name: &str, priority: i32, glob: &str) -> Candidate {
        Candidate {
            id,
            name: name.into(),
            priority,
            selector: Selector::parse(glob).expect("valid glob"),
        }
    }

    #[test]
    fn the_highest_priority_that_matches_governs_whatever_the_order() {
        let all = candidate(1, "all", 0, "**");
        let team = candidate(2, "team", 10, "team/**");
        let cache = candidate(3, "cache", 20, "**/cache");
        for order in [
            vec![all.clone(), team.clone(), cache.clone()],
            vec![cache.clone(), all.clone(), team.clone()],
        ] {
            let p = Precedence::new(order);
            assert_eq!(p.governing("team/app").map(|c| c.name.as_str()), Some("team"));
            assert_eq!(p.governing("team/cache").map(|c| c.name.as_str()), Some("cache"));
            assert_eq!(p.governing("other").map(|c| c.name.as_str()), Some("all"));
        }
        let p = Precedence::new(vec![team]);
        assert!(p.governing("other").is_none());
    }

    #[test]
    fn ties_fall_to_the_oldest() {
        let p = Precedence::new(vec![candidate(9, "new", 0, "**"), candidate(4, "old", 0, "**")]);
        assert_eq!(p.governing("a").map(|c| c.id), Some(4));
    }

    #[test]
    fn the_reason_names_the_selector_priority_and_who_it_outranks() {
        let p = Precedence::new(vec![
            candidate(1, "all", 0, "**"),
            candidate(2, "team", 10, "team/**"),
        ]);
        let g = p.explain("team/app");
        assert_eq!(g.policy, Some("team"));
        assert_eq!(g.reason, r#"selector "team/**" at priority 10, above "all" (priority 0)"#);
        let g = p.explain("other");
        assert_eq!(g.reason, r#"selector "**" at priority 0, the only policy that selects it"#);
        let team = Precedence::new(vec![candidate(2, "team", 10, "team/**")]);
        assert_eq!(
            team.explain("x"),
            Governance { policy: None, reason: "no policy selects it".into() }
        );
    }

    #[test]
    fn only_overlaps_at_the_same_priority_conflict() {
        let p = Precedence::new(vec![
            candidate(1, "all", 0, "**"),
            candidate(2, "team", 10, "team/**"),
        ]);
        let conflicts = p.conflicts(&candidate(0, "web", 10, "*/web"));
        assert_eq!(
            conflicts,
            vec![Conflict { other: "team".into(), priority: 10, witness: Some("team/web".into()) }]
        );
        assert_eq!(
            conflicts[0].to_string(),
            r#"overlaps policy "team" at priority 10: both select "team/web"; give one of them a different priority"#
        );
        assert!(p.conflicts(&candidate(0, "web", 5, "*/web")).is_empty());
        assert!(p.conflicts(&candidate(0, "other", 10, "other/**")).is_empty());
        // A policy never conflicts with its own earlier version.
        assert!(p.conflicts(&candidate(2, "team", 10, "team/*")).is_empty());
        let raced = Precedence::new(vec![
            candidate(1, "a", 0, "x/**"),
            candidate(2, "b", 0, "**/y"),
            candidate(3, "c", 1, "**"),
        ]);
        let all = raced.all_conflicts();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].0, "b");
        assert_eq!(all[0].1.witness.as_deref(), Some("x/y"));
    }
}
