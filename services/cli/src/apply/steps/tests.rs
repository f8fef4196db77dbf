use proptest::prelude::*;

use super::*;

const SELECTORS: &[&str] = &["a/*", "a/**", "b/*", "a/x", "*/x", "**", "b/y"];
const REPOSITORIES: &[&str] = &["a/x", "a/y", "a/y/z", "b/x", "b/y", "c/x", "c"];
const PATTERNS: &[&str] = &["^v1$", "^latest$", "^prod-"];

fn policy(name: &str, selector: &str, priority: i32, live: bool) -> PolicyEntry {
    PolicyEntry {
        name: name.into(),
        registry: "hub".into(),
        selector: selector.into(),
        priority,
        cadence: "1d".into(),
        live,
        keep_n: 1,
        ..PolicyEntry::default()
    }
}

fn registry(patterns: &[&str]) -> RegistryEntry {
    RegistryEntry {
        name: "hub".into(),
        url: "http://127.0.0.1:5000".into(),
        protection: Protection {
            tag_patterns: patterns.iter().map(|s| s.to_string()).collect(),
            ..Protection::default()
        },
        ..RegistryEntry::default()
    }
}

/// A registry's and its policies' state, as the writes leave it.
#[derive(Clone, Debug, PartialEq)]
struct State {
    registry: RegistryEntry,
    policies: BTreeMap<String, PolicyEntry>,
    /// The limit on protection lists.
    limit: usize,
}

impl State {
    fn apply(&mut self, step: &Step) {
        match &step.target {
            Target::Registry(r) => self.registry = r.clone(),
            Target::Policy(p) => {
                let existed = self.policies.insert(p.name.clone(), p.clone()).is_some();
                assert_eq!(existed, !step.create, "create flag of {step:?}");
            }
        }
    }

    /// Two policies at one priority that can select one repository: what
    /// the scheduler refuses.
    fn overlapping(&self) -> Option<(String, String)> {
        let all: Vec<&PolicyEntry> = self.policies.values().collect();
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                if a.priority == b.priority && overlap(&a.selector, &b.selector) {
                    return Some((a.name.clone(), b.name.clone()));
                }
            }
        }
        None
    }

    fn governor(&self, repository: &str) -> Option<&PolicyEntry> {
        let matching = self
            .policies
            .values()
            .filter(|p| Selector::parse(&p.selector).is_ok_and(|s| s.is_match(repository)));
        matching.max_by_key(|p| p.priority)
    }
}

impl State {
    /// Whether this state's protection covers all of `other`'s.
    fn protects_all_of(&self, other: &State) -> bool {
        let mine = &self.registry.protection.tag_patterns;
        other.registry.protection.tag_patterns.iter().all(|p| mine.contains(p))
    }
}

/// Every state along `steps` is one the scheduler accepts and deletes in
/// each repository only as `before` or `after` would: its policy, if it
/// deletes, is before's with at least before's protection, or after's
/// with at least after's. The last state is `after`.
fn check(before: &State, after: &State, steps: &[Step]) -> Result<(), String> {
    let state = walk(before.clone(), before, after, steps)?;
    if state != *after {
        return Err(format!("ended at {state:?}, not {after:?}"));
    }
    Ok(())
}

/// The state `steps` lead to from `state`, if every state on the way is
/// one `check` accepts.
fn walk(mut state: State, before: &State, after: &State, steps: &[Step]) -> Result<State, String> {
    for (n, step) in steps.iter().enumerate() {
        state.apply(step);
        if let Some(pair) = state.overlapping() {
            return Err(format!("step {n} {step:?}: {pair:?} overlap at one priority"));
        }
        if state.registry.protection.tag_patterns.len() > state.limit {
            return Err(format!("step {n}: protection past the limit: {state:?}"));
        }
        for repository in REPOSITORIES {
            let Some(g) = state.governor(repository).filter(|g| deletes(g)) else { continue };
            let as_before = before.governor(repository) == Some(g) && state.protects_all_of(before);
            let as_after = after.governor(repository) == Some(g) && state.protects_all_of(after);
            if !as_before && !as_after {
                return Err(format!("step {n}: {repository} deleted by {g:?} under {state:?}"));
            }
        }
    }
    Ok(state)
}

/// After the write at `failed` fails, made or not, and the recovery's
/// writes: every state on the way is safe, and each paused policy the file
/// does not change is as before, or named as stranded while policies move.
fn check_recovery(
    plan: &Plan,
    (before, after): (&State, &State),
    steps: &[Step],
    (failed, made): (usize, bool),
) -> Result<(), String> {
    let upto = if made { failed + 1 } else { failed };
    let state = walk(before.clone(), before, after, &steps[..upto])?;
    let recovery = plan.recovery(steps, failed);
    // A failed write may have been made: the recovery cannot know.
    let swapped = steps[..=failed].iter().any(|s| s.stage == Stage::WhilePaused);
    let moving = match steps[failed].phase {
        Phase::Tighten => swapped,
        Phase::Move => true,
        Phase::Loosen => false,
    };
    if !moving && !recovery.stranded.is_empty() {
        return Err(format!("stranded while nothing moves: {recovery:?}"));
    }
    let state = walk(state, before, after, &recovery.writes)
        .map_err(|e| format!("recovery after {failed} (made: {made}): {e}"))?;
    let unchanged = |name: &String| !plan.policies.iter().any(|p| p.name == *name);
    for (name, was) in before.policies.iter().filter(|(n, _)| unchanged(n)) {
        if state.policies[name] != *was && !recovery.stranded.contains(name) {
            return Err(format!(
                "{name} left {:?} after {failed}: {recovery:?}",
                state.policies[name]
            ));
        }
    }
    Ok(())
}

/// The file's entries that differ from `before`, and the plan's steps.
fn plan(
    before: &State,
    file: &[PolicyEntry],
    file_registry: &RegistryEntry,
) -> (State, Result<Vec<Step>, Vec<Stuck>>) {
    let (after, plan) = plan_of(before, file, file_registry);
    (after, plan.steps())
}

/// As `plan`, answering the plan.
fn plan_of(before: &State, file: &[PolicyEntry], file_registry: &RegistryEntry) -> (State, Plan) {
    let registries_before = BTreeMap::from([("hub".to_string(), before.registry.clone())]);
    let changed: Vec<PolicyEntry> =
        file.iter().filter(|p| before.policies.get(&p.name) != Some(p)).cloned().collect();
    let registries: Vec<RegistryEntry> =
        (before.registry != *file_registry).then(|| file_registry.clone()).into_iter().collect();
    let mut after = before.clone();
    after.registry = file_registry.clone();
    for p in &changed {
        after.policies.insert(p.name.clone(), p.clone());
    }
    let plan = Plan {
        registries_before,
        policies_before: before.policies.clone(),
        registries,
        policies: changed,
        max_protection: before.limit,
    };
    (after, plan)
}

fn state(policies: Vec<PolicyEntry>, patterns: &[&str]) -> State {
    State {
        registry: registry(patterns),
        policies: policies.into_iter().map(|p| (p.name.clone(), p)).collect(),
        limit: PATTERNS.len(),
    }
}

#[test]
fn removed_protection_and_a_dry_run_write_the_dry_run_first() {
    let before = state(vec![policy("ci", "a/*", 0, true)], &["^v1$"]);
    let file = [policy("ci", "a/*", 0, false)];
    let (after, steps) = plan(&before, &file, &registry(&[]));
    let steps = steps.expect("a plan");
    check(&before, &after, &steps).expect("safe");
    let stages: Vec<Stage> = steps.iter().map(|s| s.stage).collect();
    // The policy's dry run first, the protection lifted last.
    assert!(matches!(&steps[0].target, Target::Policy(p) if !p.live), "{steps:?}");
    assert!(
        matches!(&steps[1].target, Target::Registry(r) if r.protection.tag_patterns.is_empty())
    );
    assert_eq!(stages, [Stage::Final, Stage::Final]);
}

#[test]
fn protection_is_lifted_only_once_policies_delete_as_the_file_says() {
    // `ci` stays live with a new rule; until it has it, it deletes as
    // before, which only the old protection made safe.
    let before = state(vec![policy("ci", "a/*", 0, true)], &["^v1$"]);
    let file = [PolicyEntry { keep_n: 5, ..policy("ci", "a/*", 0, true) }];
    let (after, steps) = plan(&before, &file, &registry(&[]));
    let steps = steps.expect("a plan");
    check(&before, &after, &steps).expect("safe");
    assert!(matches!(&steps[0].target, Target::Policy(p) if p.keep_n == 5), "{steps:?}");
    assert!(matches!(&steps[1].target, Target::Registry(_)), "{steps:?}");
}

#[test]
fn a_swap_of_priorities_waits_at_a_free_priority() {
    let before = state(vec![policy("all", "**", 0, false), policy("team", "a/*", 20, false)], &[]);
    let file = [policy("all", "**", 20, false), policy("team", "a/*", 0, false)];
    let (after, steps) = plan(&before, &file, &registry(&[]));
    let steps = steps.expect("a plan");
    check(&before, &after, &steps).expect("safe");
    assert_eq!(steps.len(), 3, "{steps:?}");
    assert_eq!(steps[0].stage, Stage::Parked);
    let Target::Policy(parked) = &steps[0].target else { panic!("{steps:?}") };
    assert_eq!(parked.priority, *PRIORITY_RANGE.start());
}

#[test]
fn live_policies_are_dry_runs_while_repositories_change_hands() {
    // `team` leaves a/*, which `all` (live, untouched by the file) would
    // govern for a moment before `web` takes it.
    let before = state(vec![policy("all", "**", 0, true), policy("team", "a/*", 10, true)], &[]);
    let file = [policy("team", "b/*", 10, true), policy("web", "a/*", 10, true)];
    let (after, steps) = plan(&before, &file, &registry(&[]));
    let steps = steps.expect("a plan");
    check(&before, &after, &steps).expect("safe");
    let paused: Vec<&str> = steps
        .iter()
        .filter(|s| s.stage == Stage::Paused)
        .filter_map(|s| match &s.target {
            Target::Policy(p) => Some(p.name.as_str()),
            Target::Registry(_) => None,
        })
        .collect();
    assert_eq!(paused, ["all", "team"]);
    // Unordered, the same writes are not safe: the property fails.
    let naive: Vec<Step> = file
        .iter()
        .map(|p| Step {
            target: Target::Policy(p.clone()),
            create: p.name == "web",
            stage: Stage::Final,
            phase: Phase::Loosen,
        })
        .collect();
    assert!(check(&before, &after, &naive).is_err());
}

#[test]
fn a_file_whose_policies_overlap_at_one_priority_is_refused() {
    let before = state(vec![policy("all", "**", 0, false)], &[]);
    let file = [policy("web", "a/*", 0, false)];
    let (_, steps) = plan(&before, &file, &registry(&[]));
    let stuck = steps.expect_err("no plan");
    assert_eq!(stuck[0].0, "web");
    assert!(stuck[0].1.contains("overlaps policy \"all\""), "{stuck:?}");
}

#[test]
fn protection_past_the_limit_together_is_swapped_while_every_policy_is_paused() {
    // Before and the file hold two patterns each, three together: one past
    // the limit, so the union cannot be written.
    let mut before = state(
        vec![policy("ci", "a/*", 0, true), policy("docs", "b/*", 0, true)],
        &["^v1$", "^latest$"],
    );
    before.limit = 2;
    let file = [PolicyEntry { keep_n: 4, ..policy("ci", "a/*", 0, true) }];
    let (after, steps) = plan(&before, &file, &registry(&["^latest$", "^prod-"]));
    let steps = steps.expect("a plan");
    check(&before, &after, &steps).expect("safe");
    let stages: Vec<Stage> = steps.iter().map(|s| s.stage).collect();
    assert_eq!(
        stages,
        [Stage::Paused, Stage::Paused, Stage::WhilePaused, Stage::Final, Stage::Final],
        "{steps:#?}"
    );
    // Without the pauses, the protection swap alone lets `docs` delete
    // `v1` tags, which before protected and it still deletes as before.
    let naive = [steps[2].clone()];
    assert!(walk(before.clone(), &before, &after, &naive).is_err());
}

#[test]
fn a_failed_write_resumes_paused_policies_the_file_does_not_change_where_safe() {
    let before = state(vec![policy("all", "**", 0, true), policy("team", "a/*", 10, true)], &[]);
    let file = [policy("team", "b/*", 10, true), policy("web", "a/*", 10, true)];
    let (after, plan) = plan_of(&before, &file, &registry(&[]));
    let steps = plan.steps().expect("a plan");
    let first_move = steps.iter().position(|s| s.phase == Phase::Move).expect("moves");
    let last_move = steps.iter().rposition(|s| s.phase == Phase::Move).expect("moves");
    // `all` is paused and not in the file: resumed when the first move
    // fails, and after the moves; stranded while `a/*` changes hands.
    for (failed, stranded) in
        [(first_move - 1, false), (first_move + 1, true), (last_move + 1, false)]
    {
        let recovery = plan.recovery(&steps, failed);
        assert_eq!(
            recovery.stranded.contains(&"all".to_string()),
            stranded,
            "{failed}: {recovery:?}"
        );
        assert_eq!(recovery.writes.is_empty(), stranded, "{failed}: {recovery:?}");
        check_recovery(&plan, (&before, &after), &steps, (failed, true)).expect("safe");
    }
    // Resuming `all` while `team` has left a/* and `web` has not taken it
    // would let `all` delete there.
    let resume = Step {
        target: Target::Policy(before.policies["all"].clone()),
        create: false,
        stage: Stage::Resumed,
        phase: Phase::Move,
    };
    let state = walk(before.clone(), &before, &after, &steps[..=first_move]).expect("safe");
    assert!(walk(state, &before, &after, &[resume]).is_err(), "{steps:#?}");
}

/// A failure while one registry's policies move strands nothing on a
/// registry where nothing moves: there its paused policy is resumed.
#[test]
fn a_failed_move_strands_only_the_registry_that_moves() {
    let on = |mut p: PolicyEntry, registry: &str| {
        p.registry = registry.into();
        p
    };
    let dock = |patterns: &[&str]| RegistryEntry { name: "dock".into(), ..registry(patterns) };
    // `dock`'s protection and the file's together pass the limit: its live
    // policy is paused while the file's is written. On `hub` a policy is
    // created, written as a dry run during the moves.
    let kept = on(policy("kept", "**", 0, true), "dock");
    let created = policy("created", "c/*", 5, true);
    let before = [policy("hub-all", "a/*", 0, true), kept.clone()];
    let plan = Plan {
        registries_before: BTreeMap::from([
            ("hub".to_string(), registry(&[])),
            ("dock".to_string(), dock(&["^v1$", "^latest$"])),
        ]),
        policies_before: before.iter().map(|p| (p.name.clone(), p.clone())).collect(),
        registries: vec![dock(&["^prod-", "^x$"])],
        policies: vec![created],
        max_protection: 3,
    };
    let steps = plan.steps().expect("a plan");
    let paused = steps.iter().position(|s| {
        s.stage == Stage::Paused && matches!(&s.target, Target::Policy(p) if p.name == "kept")
    });
    assert!(paused.is_some(), "kept is paused: {steps:#?}");
    let moving = steps.iter().position(|s| s.phase == Phase::Move).expect("a move");
    let recovery = plan.recovery(&steps, moving);
    assert!(recovery.stranded.is_empty(), "{recovery:?}");
    let resumed: Vec<&Step> = recovery
        .writes
        .iter()
        .filter(|s| matches!(&s.target, Target::Policy(p) if *p == kept))
        .collect();
    assert_eq!(resumed.len(), 1, "kept is live again as before: {recovery:?}");
}

fn arb_policy(name: &'static str) -> impl Strategy<Value = PolicyEntry> {
    (0..SELECTORS.len(), 0..3i32, any::<bool>(), prop::bool::weighted(0.15), 1..3i32).prop_map(
        move |(s, priority, live, disabled, keep_n)| PolicyEntry {
            disabled,
            keep_n,
            ..policy(name, SELECTORS[s], priority, live)
        },
    )
}

fn arb_policies() -> impl Strategy<Value = Vec<PolicyEntry>> {
    let names = ["p0", "p1", "p2", "p3"];
    let each: Vec<_> = names.iter().map(|n| prop::option::of(arb_policy(n))).collect();
    each.prop_map(|all| all.into_iter().flatten().collect())
}

fn arb_patterns() -> impl Strategy<Value = Vec<&'static str>> {
    prop::sample::subsequence(PATTERNS, 0..=PATTERNS.len())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// Any file against any state: every step is accepted, deletes only
    /// as before or as the file says, never lifts a protection both keep,
    /// never writes past the limit on protection lists, and the writes end
    /// at the file; the plan is refused only when the file itself overlaps.
    /// Whichever write fails, the recovery is as safe, and leaves no policy
    /// the file does not change paused unless it says so.
    #[test]
    fn every_state_along_the_writes_deletes_only_as_before_or_after(
        before in arb_policies(),
        mut file in arb_policies(),
        edits in prop::collection::vec(0..4u8, 4),
        before_patterns in arb_patterns(),
        file_patterns in arb_patterns(),
        limit in 0..=PATTERNS.len(),
    ) {
        let mut before = state(before, &before_patterns);
        // Each list within the limit, both together not always.
        before.limit = limit.max(before_patterns.len()).max(file_patterns.len());
        prop_assume!(before.overlapping().is_none());
        // Most files change policies in place: edit some of before's that
        // the file does not otherwise declare.
        for (p, edit) in before.policies.values().zip(edits) {
            if edit > 0 && !file.iter().any(|f| f.name == p.name) {
                let mut edited = p.clone();
                match edit {
                    1 => edited.keep_n += 1,
                    2 => edited.live = !edited.live,
                    _ => edited.disabled = !edited.disabled,
                }
                file.push(edited);
            }
        }
        let (after, plan) = plan_of(&before, &file, &registry(&file_patterns));
        match plan.steps() {
            Ok(steps) => {
                if let Err(e) = check(&before, &after, &steps) {
                    return Err(TestCaseError::fail(format!("{e}\nsteps: {steps:#?}")));
                }
                for failed in 0..steps.len() {
                    for made in [false, true] {
                        let checked =
                            check_recovery(&plan, (&before, &after), &steps, (failed, made));
                        if let Err(e) = checked {
                            return Err(TestCaseError::fail(format!("{e}\nsteps: {steps:#?}")));
                        }
                    }
                }
            }
            Err(stuck) => prop_assert!(after.overlapping().is_some(), "refused: {stuck:?}"),
        }
    }
}
