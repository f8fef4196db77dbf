//! The order of `apply`'s writes. The file says where to end; this says
//! how to get there so that at no moment do the policies delete anything
//! that neither the state before nor the file would delete. (A policy
//! deletes when it is live and not disabled.) Three phases:
//!
//! 1. **Tighten.** Registries are created. Each registry's protection grows
//!    to the union of what it is and what the file says. Live policies
//!    whose repositories could change hands while policies move are paused
//!    (made dry runs). Changes that end in a policy deleting nothing are
//!    made.
//! 2. **Move.** Policies that are created or get a new selector or
//!    priority are written as dry runs, in an order in which no two
//!    policies at one priority overlap at any step (the scheduler refuses
//!    such a write). Where no such order exists, as when two policies swap
//!    priorities, one of them waits at a free priority.
//! 3. **Loosen.** Every policy still short of the file is written as the
//!    file has it: this is where policies become live again, or for the
//!    first time. Then protection shrinks to the file's.
//!
//! Only moving policies change which policy governs a repository, and none
//! of them deletes while it moves, nor does any live policy whose
//! repositories they could take or hand over. So in every state along the
//! way, a repository's policy, if it deletes, is the one that governs it
//! before and as it was, under at least the protection before; or the one
//! that governs it in the file and as the file has it, under at least the
//! file's protection. A write that fails leaves such a state; applying the
//! file again finishes the job.

use std::collections::{BTreeMap, BTreeSet};

use regsweep_policy::{Candidate, PRIORITY_RANGE, Precedence, Selector};

use crate::declared::{PolicyEntry, Protection, RegistryEntry};

/// What a write writes.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    Registry(RegistryEntry),
    Policy(PolicyEntry),
}

/// Why a write writes what it does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// What the file says.
    Final,
    /// The protection of before and of the file together, until the file's
    /// own is written last.
    ProtectionUnion,
    /// A dry run while policies move: its repositories could change hands.
    Paused,
    /// As the file says, but a dry run until the last phase.
    DryUntilEnd,
    /// At a free priority, out of the way of another policy's move.
    Parked,
}

/// One write of `apply`.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub target: Target,
    /// The first write of a registry or policy that does not exist yet.
    pub create: bool,
    pub stage: Stage,
}

impl Target {
    pub fn describe(&self) -> String {
        match self {
            Target::Registry(r) => format!("registry {:?}", r.name),
            Target::Policy(p) => format!("policy {:?}", p.name),
        }
    }
}

impl Step {
    /// What this write writes, for an operator reading the plan.
    pub fn explain(&self) -> String {
        match self.stage {
            Stage::Final => "as the file says".into(),
            Stage::ProtectionUnion => {
                "protection of before and of the file together, until the file's is written".into()
            }
            Stage::Paused => "a dry run while policies move".into(),
            Stage::DryUntilEnd => "as the file says, a dry run until the end".into(),
            Stage::Parked => match &self.target {
                Target::Policy(p) => {
                    format!("a dry run at free priority {}, out of another's way", p.priority)
                }
                Target::Registry(_) => "out of the way".into(),
            },
        }
    }
}

/// A policy no order of writes can place, and why.
pub type Stuck = (String, String);

/// The state before and the entries the file changes (each as the
/// scheduler would show it back).
pub struct Plan {
    pub registries_before: BTreeMap<String, RegistryEntry>,
    pub policies_before: BTreeMap<String, PolicyEntry>,
    pub registries: Vec<RegistryEntry>,
    pub policies: Vec<PolicyEntry>,
}

impl Plan {
    /// The writes, in order. Fails only when the file itself puts two
    /// overlapping policies at one priority.
    pub fn steps(&self) -> Result<Vec<Step>, Vec<Stuck>> {
        let mut out = Steps { steps: Vec::new(), written: BTreeMap::new() };
        let shrinking = self.tighten_registries(&mut out);
        let movers: Vec<&PolicyEntry> = self.policies.iter().filter(|p| self.moves(p)).collect();
        let paused = self.paused(&movers);
        self.tighten_policies(&paused, &mut out);
        self.moves_in_order(&movers, &mut out)?;
        for entry in self.policies.iter().chain(&paused) {
            if out.written.get(&entry.name) != Some(entry) {
                let create = self.is_new(&entry.name, &out);
                out.push(Target::Policy(entry.clone()), create, Stage::Final);
            }
        }
        // Last, once every policy is as the file says: before, a policy
        // still deleting as it did would lose protection it had.
        for entry in shrinking {
            out.push(Target::Registry(entry.clone()), false, Stage::Final);
        }
        Ok(out.steps)
    }

    /// Phase 1 for registries; returns those whose protection shrinks,
    /// written as the file has them in phase 3.
    fn tighten_registries(&self, out: &mut Steps) -> Vec<&RegistryEntry> {
        let mut shrinking = Vec::new();
        for entry in &self.registries {
            let Some(before) = self.registries_before.get(&entry.name) else {
                out.push(Target::Registry(entry.clone()), true, Stage::Final);
                continue;
            };
            let protection = union(&entry.protection, &before.protection);
            if protection == entry.protection {
                out.push(Target::Registry(entry.clone()), false, Stage::Final);
                continue;
            }
            let tightened = RegistryEntry { protection, ..entry.clone() };
            if tightened != *before {
                out.push(Target::Registry(tightened), false, Stage::ProtectionUnion);
            }
            shrinking.push(entry);
        }
        shrinking
    }

    /// Phase 1 for policies: the paused ones (with any change the file
    /// makes that keeps their selector and priority), and the changes that
    /// end in a policy deleting nothing.
    fn tighten_policies(&self, paused: &[PolicyEntry], out: &mut Steps) {
        for entry in paused {
            let before = &self.policies_before[&entry.name];
            let base = if self.moves(entry) { before } else { entry };
            out.push(Target::Policy(dry(base)), false, Stage::Paused);
        }
        for entry in &self.policies {
            let settled = paused.iter().any(|p| p.name == entry.name);
            if !settled && !self.moves(entry) && !deletes(entry) {
                out.push(Target::Policy(entry.clone()), false, Stage::Final);
            }
        }
    }

    /// Live policies (as they are before) whose repositories a moving
    /// policy could take or hand over, each as the file leaves it.
    fn paused(&self, movers: &[&PolicyEntry]) -> Vec<PolicyEntry> {
        let changed: BTreeMap<&str, &PolicyEntry> =
            self.policies.iter().map(|p| (p.name.as_str(), p)).collect();
        let mut paused = Vec::new();
        for (name, before) in &self.policies_before {
            if !deletes(before) {
                continue;
            }
            let touched =
                movers.iter().filter(|m| m.name != *name && m.registry == before.registry);
            let reaches = |m: &&&PolicyEntry| {
                let moved_from = self.policies_before.get(&m.name).map(|b| b.selector.as_str());
                moved_from
                    .into_iter()
                    .chain([m.selector.as_str()])
                    .any(|s| overlap(&before.selector, s))
            };
            if touched.clone().any(|m| reaches(&m)) {
                paused.push(
                    changed.get(name.as_str()).map_or_else(|| before.clone(), |p| (*p).clone()),
                );
            }
        }
        paused
    }

    /// Phase 2: each moving policy as a dry run at its new place, in an
    /// order the scheduler accepts at every step; a policy that cannot be
    /// placed yet waits at a free priority, once.
    fn moves_in_order(&self, movers: &[&PolicyEntry], out: &mut Steps) -> Result<(), Vec<Stuck>> {
        let mut places = Places::new(&self.policies_before);
        let mut pending: Vec<&PolicyEntry> = movers.to_vec();
        let mut parked = BTreeSet::new();
        while !pending.is_empty() {
            let mut stuck = Vec::new();
            let mut placed = false;
            for entry in std::mem::take(&mut pending) {
                match places.conflict(entry, entry.priority) {
                    None => {
                        placed = true;
                        places.set(entry, entry.priority);
                        let stage = if deletes(entry) { Stage::DryUntilEnd } else { Stage::Final };
                        let create = self.is_new(&entry.name, out);
                        out.push(Target::Policy(dry(entry)), create, stage);
                    }
                    Some(why) => {
                        stuck.push((entry.name.clone(), why));
                        pending.push(entry);
                    }
                }
            }
            if stuck.is_empty() || placed {
                continue;
            }
            // Nothing was placed in this round, so the rest would wait
            // forever: move one of them to a priority no policy has, had,
            // or is headed for, where it is in nobody's way.
            let Some(entry) = pending.iter().find(|p| !parked.contains(&p.name)) else {
                return Err(stuck);
            };
            let Some(free) = self.free_priority(&entry.registry, &places) else {
                return Err(stuck);
            };
            parked.insert(entry.name.clone());
            places.set(entry, free);
            let create = self.is_new(&entry.name, out);
            let at_free = PolicyEntry { priority: free, ..dry(entry) };
            out.push(Target::Policy(at_free), create, Stage::Parked);
        }
        Ok(())
    }

    /// A priority on `registry` that no policy has now, before, or in the
    /// file, searched from the lowest.
    fn free_priority(&self, registry: &str, places: &Places) -> Option<i32> {
        let taken: BTreeSet<i32> = places
            .priorities(registry)
            .chain(
                self.policies_before
                    .values()
                    .filter(|p| p.registry == registry)
                    .map(|p| p.priority),
            )
            .chain(self.policies.iter().filter(|p| p.registry == registry).map(|p| p.priority))
            .collect();
        PRIORITY_RANGE.into_iter().find(|p| !taken.contains(p))
    }

    /// Created, or given a new selector, priority or registry.
    fn moves(&self, entry: &PolicyEntry) -> bool {
        self.policies_before.get(&entry.name).is_none_or(|b| {
            b.selector != entry.selector
                || b.priority != entry.priority
                || b.registry != entry.registry
        })
    }

    fn is_new(&self, name: &str, out: &Steps) -> bool {
        !self.policies_before.contains_key(name) && !out.written.contains_key(name)
    }
}

/// The writes so far, and the last policy written under each name.
struct Steps {
    steps: Vec<Step>,
    written: BTreeMap<String, PolicyEntry>,
}

impl Steps {
    fn push(&mut self, target: Target, create: bool, stage: Stage) {
        if let Target::Policy(p) = &target {
            self.written.insert(p.name.clone(), p.clone());
        }
        self.steps.push(Step { target, create, stage });
    }
}

/// Where each policy sits during phase 2, as the scheduler's overlap check
/// sees it.
struct Places {
    /// By name: registry and candidate (ids only tell policies apart).
    at: BTreeMap<String, (String, Candidate)>,
    next_id: i64,
}

impl Places {
    fn new(before: &BTreeMap<String, PolicyEntry>) -> Self {
        let mut places = Places { at: BTreeMap::new(), next_id: 0 };
        for entry in before.values() {
            places.set(entry, entry.priority);
        }
        places
    }

    /// Why `entry` cannot sit at `priority` now, if it cannot.
    fn conflict(&self, entry: &PolicyEntry, priority: i32) -> Option<String> {
        // An unparsable selector is the scheduler's to report.
        let selector = Selector::parse(&entry.selector).ok()?;
        let id = self.at.get(&entry.name).map_or(-1, |(_, c)| c.id);
        let me = Candidate { id, name: entry.name.clone(), priority, selector };
        let neighbours =
            self.at.values().filter(|(r, _)| *r == entry.registry).map(|(_, c)| c.clone());
        Precedence::new(neighbours.collect()).conflicts(&me).first().map(ToString::to_string)
    }

    fn set(&mut self, entry: &PolicyEntry, priority: i32) {
        let Ok(selector) = Selector::parse(&entry.selector) else { return };
        let id = self.at.get(&entry.name).map_or_else(
            || {
                self.next_id += 1;
                self.next_id
            },
            |(_, c)| c.id,
        );
        let candidate = Candidate { id, name: entry.name.clone(), priority, selector };
        self.at.insert(entry.name.clone(), (entry.registry.clone(), candidate));
    }

    fn priorities<'a>(&'a self, registry: &'a str) -> impl Iterator<Item = i32> + 'a {
        self.at.values().filter(move |(r, _)| r == registry).map(|(_, c)| c.priority)
    }
}

fn deletes(p: &PolicyEntry) -> bool {
    p.live && !p.disabled
}

fn dry(p: &PolicyEntry) -> PolicyEntry {
    PolicyEntry { live: false, ..p.clone() }
}

/// Whether two selectors can select one repository; unparsable or too
/// complex to decide counts as yes.
fn overlap(a: &str, b: &str) -> bool {
    match (Selector::parse(a), Selector::parse(b)) {
        (Ok(a), Ok(b)) => !matches!(a.overlap(&b), Ok(None)),
        _ => true,
    }
}

/// `wanted`, then whatever of `also` it lacks.
fn union(wanted: &Protection, also: &Protection) -> Protection {
    let merge = |wanted: &[String], also: &[String]| {
        let mut out = wanted.to_vec();
        out.extend(also.iter().filter(|s| !wanted.contains(s)).cloned());
        out
    };
    Protection {
        tag_patterns: merge(&wanted.tag_patterns, &also.tag_patterns),
        digests: merge(&wanted.digests, &also.digests),
        repository_globs: merge(&wanted.repository_globs, &also.repository_globs),
    }
}

#[cfg(test)]
mod tests;
