//! The order of `apply`'s writes. The file says where to end; this says
//! how to get there so that at no moment do the policies delete anything
//! that neither the state before nor the file would delete. (A policy
//! deletes when it is live and not disabled.) Three phases:
//!
//! 1. **Tighten.** Registries are created. Each registry's protection grows
//!    to the union of what it is and what the file says. Live policies
//!    whose repositories could change hands while policies move are paused
//!    (made dry runs). Changes that end in a policy deleting nothing are
//!    made. Where the union would pass the limit on a protection list, the
//!    registry's live policies are all paused instead, and its protection is
//!    written as the file has it while none of them deletes.
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
//! file again finishes the job. A paused policy the file does not change
//! would stay paused, since applying the file again does not know it: so
//! after a failure, `recovery` names the writes that make such policies
//! live again where that is safe, and the ones it cannot.

use std::collections::{BTreeMap, BTreeSet};

use regsweep_policy::{Candidate, MAX_PROTECTION_ENTRIES, PRIORITY_RANGE, Precedence, Selector};

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
    /// A registry's protection as the file says, written early while every
    /// policy of the registry is a dry run: before and after together would
    /// pass the limit on a protection list.
    WhilePaused,
    /// A paused policy the file does not change, live again after a write
    /// failed.
    Resumed,
}

/// Which of the three phases a write belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Tighten,
    Move,
    Loosen,
}

/// One write of `apply`.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub target: Target,
    /// The first write of a registry or policy that does not exist yet.
    pub create: bool,
    pub stage: Stage,
    pub phase: Phase,
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
            Stage::WhilePaused => format!(
                "protection as the file says, while its policies are dry runs (before and \
                 after together pass {MAX_PROTECTION_ENTRIES} entries)"
            ),
            Stage::Resumed => "live again, as before".into(),
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
    /// Most entries in a protection list (the scheduler's limit; smaller in
    /// tests).
    pub max_protection: usize,
}

/// After a failed write: what makes paused policies the file does not
/// change live again, and those that must wait for the operator.
#[derive(Debug, Default, PartialEq)]
pub struct Recovery {
    pub writes: Vec<Step>,
    /// Paused policies no write can safely resume now: repositories were
    /// changing hands when the write failed.
    pub stranded: Vec<String>,
}

impl Plan {
    /// The writes, in order. Fails only when the file itself puts two
    /// overlapping policies at one priority.
    pub fn steps(&self) -> Result<Vec<Step>, Vec<Stuck>> {
        let mut out = Steps { steps: Vec::new(), written: BTreeMap::new(), phase: Phase::Tighten };
        let swapped = self.swapped();
        let shrinking = self.tighten_registries(&swapped, &mut out);
        let movers: Vec<&PolicyEntry> = self.policies.iter().filter(|p| self.moves(p)).collect();
        let paused = self.paused(&movers, &swapped);
        self.tighten_policies(&paused, &mut out);
        for entry in self.registries.iter().filter(|r| swapped.contains(&r.name)) {
            out.push(Target::Registry(entry.clone()), false, Stage::WhilePaused);
        }
        out.phase = Phase::Move;
        self.moves_in_order(&movers, &mut out)?;
        out.phase = Phase::Loosen;
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

    /// After `steps[failed]` failed, made or not: the writes that make the
    /// policies paused here that the file does not change live again, as
    /// they were. Safe before any policy moved, while their registry's
    /// protection still holds all it did (they delete as before), and once
    /// every policy is in its place (they delete as the file says, which
    /// for them is as before). In between, and where protection was
    /// swapped before policies move, they are stranded.
    pub fn recovery(&self, steps: &[Step], failed: usize) -> Recovery {
        let Some(failure) = steps.get(failed) else { return Recovery::default() };
        let made = &steps[..=failed];
        let changed = |name: &str| self.policies.iter().any(|p| p.name == name);
        let mut out = Recovery::default();
        for (n, step) in made.iter().enumerate() {
            let Target::Policy(paused) = &step.target else { continue };
            // Written live again by its own write, surely made.
            let resumed = steps.get(n + 1..failed).unwrap_or_default().iter().any(|s| {
                s.stage == Stage::Final
                    && matches!(&s.target, Target::Policy(p) if p.name == paused.name)
            });
            if step.stage != Stage::Paused || changed(&paused.name) || resumed {
                continue;
            }
            let before = self.policies_before[&paused.name].clone();
            let on_registry = |s: &&Step| match &s.target {
                Target::Registry(r) => r.name == before.registry,
                Target::Policy(p) => p.registry == before.registry,
            };
            // Its protection written as the file has it, which may hold
            // less than before: safe only where nothing moves (it then
            // deletes as the file says).
            let swapped = made.iter().filter(on_registry).any(|s| s.stage == Stage::WhilePaused);
            let moves = steps.iter().filter(on_registry).any(|s| s.phase == Phase::Move);
            // During the moves, its registry's repositories may be changing
            // hands, unless none of its policies move: a failure while
            // another registry's policies move leaves this one as phase 1
            // did.
            let safe = match failure.phase {
                Phase::Tighten => !swapped || !moves,
                Phase::Move => !moves,
                Phase::Loosen => true,
            };
            if safe {
                let target = Target::Policy(before);
                out.writes.push(Step {
                    target,
                    create: false,
                    stage: Stage::Resumed,
                    phase: failure.phase,
                });
            } else {
                out.stranded.push(paused.name.clone());
            }
        }
        out
    }

    /// Registries whose protection before and in the file together would
    /// pass the limit on one of its lists.
    fn swapped(&self) -> BTreeSet<String> {
        let over = |entry: &RegistryEntry| {
            let before = self.registries_before.get(&entry.name)?;
            let both = union(&entry.protection, &before.protection);
            let lists = [&both.tag_patterns, &both.digests, &both.repository_globs];
            lists.iter().any(|l| l.len() > self.max_protection).then(|| entry.name.clone())
        };
        self.registries.iter().filter_map(over).collect()
    }

    /// Phase 1 for registries but the swapped ones; returns those whose
    /// protection shrinks, written as the file has them in phase 3.
    fn tighten_registries(
        &self,
        swapped: &BTreeSet<String>,
        out: &mut Steps,
    ) -> Vec<&RegistryEntry> {
        let mut shrinking = Vec::new();
        for entry in self.registries.iter().filter(|r| !swapped.contains(&r.name)) {
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
    /// policy could take or hand over, or whose registry's protection is
    /// swapped, each as the file leaves it.
    fn paused(&self, movers: &[&PolicyEntry], swapped: &BTreeSet<String>) -> Vec<PolicyEntry> {
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
            if swapped.contains(&before.registry) || touched.clone().any(|m| reaches(&m)) {
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
                        let stage =
                            if dry(entry) == *entry { Stage::Final } else { Stage::DryUntilEnd };
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
    phase: Phase,
}

impl Steps {
    fn push(&mut self, target: Target, create: bool, stage: Stage) {
        if let Target::Policy(p) = &target {
            self.written.insert(p.name.clone(), p.clone());
        }
        self.steps.push(Step { target, create, stage, phase: self.phase });
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
