//! `regsweep apply` and `regsweep export`: registries and policies kept as
//! a file (`declared.rs`). `apply` is idempotent and all or nothing as far
//! as checking goes: the whole file is parsed, every change is checked by
//! the scheduler (`validate_only`) and the writes are put in an order in
//! which nothing deletes more than before or than the file says
//! (`steps.rs`), and only then is anything written. Nothing not in the
//! file is deleted.

mod steps;

use std::collections::BTreeMap;

use anyhow::{Context as _, Result, bail};
use regsweep_policy::{Cadence, Candidate, Precedence, Selector};
use regsweep_proto::v1;
use steps::{Plan, Recovery, Stage, Step, Target};
use tonic_types::StatusExt as _;

use crate::cli::Cli;
use crate::client;
use crate::declared::{Declared, PolicyEntry, RegistryEntry, line_of};
use regsweep_common::Shutdown;

#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// The file of registries and policies (YAML or JSON; `-` reads
    /// standard input).
    #[arg(short = 'f', long = "file")]
    pub file: String,
    /// Show what would change and what each changed policy would delete
    /// now (from previews), and change nothing.
    #[arg(long)]
    pub diff: bool,
    /// Repositories previewed per changed policy with `--diff`.
    #[arg(long, default_value_t = 10)]
    pub preview_repositories: usize,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Only this registry and its policies.
    #[arg(long)]
    pub registry: Option<String>,
}

/// What the file changes about one registry or policy.
#[derive(Debug)]
enum Op {
    Create,
    /// The fields that differ, as the file names them.
    Update(Vec<String>),
}

/// A policy and what the file changes about it.
type PolicyChange = (PolicyEntry, Op);

/// The changes of a file, and the writes that make them.
#[derive(Debug, Default)]
struct Changes {
    registries: Vec<(RegistryEntry, Op)>,
    policies: Vec<PolicyChange>,
    unchanged: usize,
    steps: Vec<Step>,
    /// The names of the policies the file lists.
    listed: Vec<String>,
}

/// The registries and policies the scheduler holds, by name.
struct Current {
    registries: BTreeMap<String, v1::Registry>,
    policies: BTreeMap<String, v1::Policy>,
}

pub async fn export(cli: &Cli, args: &ExportArgs) -> Result<()> {
    let current = current(cli).await?;
    let wanted = |registry: &str| args.registry.as_deref().is_none_or(|r| r == registry);
    let declared = Declared {
        registries: current
            .registries
            .values()
            .filter(|r| wanted(&r.name))
            .map(RegistryEntry::from_proto)
            .collect(),
        policies: current
            .policies
            .values()
            .filter(|p| wanted(&p.registry))
            .map(PolicyEntry::from_proto)
            .collect(),
    };
    let yaml = serde_yaml::to_string(&declared).context("writing the file")?;
    print!("# regsweep apply -f FILE; format: schema/regsweep.schema.json\n{yaml}");
    Ok(())
}

pub async fn apply(cli: &Cli, args: &ApplyArgs) -> Result<()> {
    let text = if args.file == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading standard input")?
    } else {
        std::fs::read_to_string(&args.file).with_context(|| format!("reading {}", args.file))?
    };
    let declared: Declared = serde_yaml::from_str(&text).map_err(|e| {
        // The top of the file has no location of its own.
        let line = e.location().map_or(1, |l| l.line().max(1));
        anyhow::anyhow!("{}:{line}: {e}", args.file)
    })?;
    let current = current(cli).await?;
    let at = |section: &str, name: &str| match line_of(&text, section, name) {
        Some(line) => format!("{}:{line}", args.file),
        None => args.file.clone(),
    };
    let changes = changes(&declared, &current, &at)?;
    check(cli, &changes, &at).await?;
    print_changes(&changes);
    print_steps(&changes.steps);
    if args.diff {
        return impact(cli, &changes, &current, args.preview_repositories).await;
    }
    write(cli, &changes, &current).await
}

async fn current(cli: &Cli) -> Result<Current> {
    let mut registries = client::registries(&cli.scheduler).await?;
    let listed = registries.list_registries(v1::ListRegistriesRequest::default()).await?;
    let mut policies = client::policies(&cli.scheduler).await?;
    let listed_policies = policies.list_policies(v1::ListPoliciesRequest::default()).await?;
    Ok(Current {
        registries: listed
            .into_inner()
            .registries
            .into_iter()
            .map(|r| (r.name.clone(), r))
            .collect(),
        policies: listed_policies
            .into_inner()
            .policies
            .into_iter()
            .map(|p| (p.name.clone(), p))
            .collect(),
    })
}

/// The file's changes against `current` and the writes that make them;
/// every problem the file has on its own, at once.
fn changes(
    declared: &Declared,
    current: &Current,
    at: &dyn Fn(&str, &str) -> String,
) -> Result<Changes> {
    let mut problems = Vec::new();
    let mut out = Changes::default();
    let mut seen = std::collections::BTreeSet::new();
    for entry in &declared.registries {
        if !seen.insert(&entry.name) {
            problems.push(format!(
                "{}: registry {:?} is declared twice",
                at("registries", &entry.name),
                entry.name
            ));
            continue;
        }
        match current.registries.get(&entry.name).map(RegistryEntry::from_proto) {
            None => out.registries.push((canonical_registry(entry), Op::Create)),
            Some(now) => match differences(&now, &canonical_registry(entry)) {
                fields if fields.is_empty() => out.unchanged += 1,
                fields => out.registries.push((canonical_registry(entry), Op::Update(fields))),
            },
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for entry in &declared.policies {
        let known = current.registries.contains_key(&entry.registry)
            || declared.registries.iter().any(|r| r.name == entry.registry);
        if !seen.insert(&entry.name) {
            problems.push(format!(
                "{}: policy {:?} is declared twice",
                at("policies", &entry.name),
                entry.name
            ));
        } else if !known {
            problems.push(format!(
                "{}: policy {:?}: registry {:?} is neither declared nor known",
                at("policies", &entry.name),
                entry.name,
                entry.registry
            ));
        } else if let Some(why) = policy_problem(entry, current) {
            problems.push(format!(
                "{}: policy {:?}: {why}",
                at("policies", &entry.name),
                entry.name
            ));
        } else {
            let entry = canonical_policy(entry);
            match current.policies.get(&entry.name).map(PolicyEntry::from_proto) {
                None => out.policies.push((entry, Op::Create)),
                Some(now) => match differences(&now, &entry) {
                    fields if fields.is_empty() => out.unchanged += 1,
                    fields => out.policies.push((entry, Op::Update(fields))),
                },
            }
        }
    }
    out.listed = declared.policies.iter().map(|p| p.name.clone()).collect();
    match plan(&out, current).steps() {
        Ok(steps) => out.steps = steps,
        Err(stuck) => problems.extend(stuck.into_iter().map(|(name, why)| {
            format!("{}: policy {name:?}: policy.priority: {why}", at("policies", &name))
        })),
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        bail!("the file changes nothing:\n{}", problems.join("\n"))
    }
}

/// What the scheduler cannot check before the registry exists, or cannot
/// change at all: caught here so nothing is written.
fn policy_problem(entry: &PolicyEntry, current: &Current) -> Option<String> {
    if let Some(now) = current.policies.get(&entry.name)
        && now.registry != entry.registry
    {
        return Some(format!(
            "policy.registry: is {:?}; a policy cannot move to another registry (delete it and \
             create it there)",
            now.registry
        ));
    }
    let cadence = Cadence::parse(&entry.cadence).ok()?;
    cadence.next_after(chrono::Utc::now()).is_none().then(|| "policy.cadence: never fires".into())
}

/// The top-level fields in which `now` and `wanted` differ.
fn differences<T: serde::Serialize>(now: &T, wanted: &T) -> Vec<String> {
    let (now, wanted) = (serde_json::to_value(now), serde_json::to_value(wanted));
    let (Ok(serde_json::Value::Object(now)), Ok(serde_json::Value::Object(wanted))) = (now, wanted)
    else {
        return vec!["everything".into()];
    };
    let mut fields: Vec<String> = now
        .keys()
        .chain(wanted.keys())
        .filter(|k| now.get(*k) != wanted.get(*k))
        .cloned()
        .collect();
    fields.sort();
    fields.dedup();
    fields
}

/// A registry as the scheduler would show it back.
fn canonical_registry(entry: &RegistryEntry) -> RegistryEntry {
    RegistryEntry::from_proto(&entry.to_proto())
}

/// A policy as the scheduler would show it back: its cadence as stored.
fn canonical_policy(entry: &PolicyEntry) -> PolicyEntry {
    let mut canonical = PolicyEntry::from_proto(&entry.to_proto());
    if let Ok(cadence) = Cadence::parse(&entry.cadence) {
        canonical.cadence = cadence.as_str();
    }
    canonical
}

/// The state before, as entries comparable with the file's, and what the
/// file changes.
fn plan(changes: &Changes, current: &Current) -> Plan {
    let registries_before =
        current.registries.iter().map(|(n, r)| (n.clone(), RegistryEntry::from_proto(r))).collect();
    let policies_before =
        current.policies.iter().map(|(n, p)| (n.clone(), PolicyEntry::from_proto(p))).collect();
    Plan {
        registries_before,
        policies_before,
        registries: changes.registries.iter().map(|(e, _)| e.clone()).collect(),
        policies: changes.policies.iter().map(|(e, _)| e.clone()).collect(),
        max_protection: regsweep_policy::MAX_PROTECTION_ENTRIES,
    }
}

/// One write: a create or an update, checked only or made. An update is
/// made only if the resource still has `etag` (when given). Answers the
/// etag of what was written.
async fn send(
    cli: &Cli,
    target: &Target,
    create: bool,
    validate_only: bool,
    etag: String,
) -> Result<String, tonic::Status> {
    let transport = |e: anyhow::Error| tonic::Status::unavailable(crate::client::describe(&e));
    // An empty mask replaces every field: the file is the whole truth.
    let update_mask = Vec::new();
    match target {
        Target::Registry(entry) => {
            let mut registries = client::registries(&cli.scheduler).await.map_err(transport)?;
            let registry = Some(entry.to_proto());
            let written = if create {
                let request = v1::CreateRegistryRequest { registry, validate_only };
                registries.create_registry(request).await?.into_inner().registry
            } else {
                let request =
                    v1::UpdateRegistryRequest { registry, update_mask, validate_only, etag };
                registries.update_registry(request).await?.into_inner().registry
            };
            Ok(written.map(|r| r.etag).unwrap_or_default())
        }
        Target::Policy(entry) => {
            let mut policies = client::policies(&cli.scheduler).await.map_err(transport)?;
            let policy = Some(entry.to_proto());
            let written = if create {
                let request = v1::CreatePolicyRequest { policy, live: entry.live, validate_only };
                policies.create_policy(request).await?.into_inner().policy
            } else {
                let request = v1::UpdatePolicyRequest { policy, update_mask, validate_only, etag };
                policies.update_policy(request).await?.into_inner().policy
            };
            Ok(written.map(|p| p.etag).unwrap_or_default())
        }
    }
}

#[derive(Clone, Copy)]
enum Change<'a> {
    Registry(&'a RegistryEntry, &'a Op),
    Policy(&'a PolicyEntry, &'a Op),
}

impl Changes {
    fn all(&self) -> impl Iterator<Item = Change<'_>> {
        let registries = self.registries.iter().map(|(e, op)| Change::Registry(e, op));
        registries.chain(self.policies.iter().map(|(e, op)| Change::Policy(e, op)))
    }
}

impl Change<'_> {
    /// The file's write of this change.
    fn target(&self) -> (Target, bool) {
        match *self {
            Change::Registry(e, op) => (Target::Registry(e.clone()), matches!(op, Op::Create)),
            Change::Policy(e, op) => (Target::Policy(e.clone()), matches!(op, Op::Create)),
        }
    }

    fn describe(&self) -> String {
        self.target().0.describe()
    }
}

/// Has the scheduler check every change as it would make it, and reports
/// every refusal with its line. Two refusals are expected and skipped: a
/// policy on a registry the file creates (it does not exist yet), and an
/// overlap the order of writes avoids (`steps.rs` found that order).
async fn check(cli: &Cli, changes: &Changes, at: &dyn Fn(&str, &str) -> String) -> Result<()> {
    let mut problems = Vec::new();
    for change in changes.all() {
        let (target, create) = change.target();
        let Err(status) = send(cli, &target, create, true, String::new()).await else { continue };
        let (line, created) = match change {
            Change::Registry(e, _) => (at("registries", &e.name), false),
            Change::Policy(e, _) => (
                at("policies", &e.name),
                changes
                    .registries
                    .iter()
                    .any(|(r, op)| r.name == e.registry && matches!(op, Op::Create)),
            ),
        };
        let Some(details) = status.get_details_bad_request() else {
            problems.push(format!("{line}: {}: {}", change.describe(), status.message()));
            continue;
        };
        for v in details.field_violations {
            let expected = (created && v.field == "policy.registry")
                || (v.field == "policy.priority" && v.description.starts_with("overlaps policy"));
            if !expected {
                problems.push(format!(
                    "{line}: {}: {}: {}",
                    change.describe(),
                    v.field,
                    v.description
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        bail!("the file changes nothing:\n{}", problems.join("\n"))
    }
}

fn print_changes(changes: &Changes) {
    for change in changes.all() {
        let op = match change {
            Change::Registry(_, op) | Change::Policy(_, op) => op,
        };
        match op {
            Op::Create => println!("+ {} (create)", change.describe()),
            Op::Update(fields) => println!("~ {}: {}", change.describe(), fields.join(", ")),
        }
    }
    if changes.registries.is_empty() && changes.policies.is_empty() {
        println!("no changes ({} unchanged)", changes.unchanged);
    } else {
        println!("= {} unchanged", changes.unchanged);
    }
}

/// The writes, numbered, when their order is more than the file's
/// changes one by one: what waits, and until when.
fn print_steps(steps: &[Step]) {
    if steps.iter().all(|s| s.stage == Stage::Final) {
        return;
    }
    println!("writes, in an order that never deletes more than before or than the file:");
    for (n, step) in steps.iter().enumerate() {
        println!("  {:>3}. {}: {}", n + 1, step.target.describe(), step.explain());
    }
}

/// Makes the writes in order, each conditional on the version `apply`
/// read (or last wrote): the order was worked out from that state, so a
/// change made meanwhile by someone else stops it rather than being
/// overwritten.
///
/// An interrupt (Ctrl-C, SIGTERM) stops it between writes, as a failed
/// write does: the write in flight completes (cut off, the scheduler might
/// make it unseen), then the policies paused for the order are made live
/// again where that is safe. A second interrupt quits at once.
async fn write(cli: &Cli, changes: &Changes, current: &Current) -> Result<()> {
    let total = changes.registries.len() + changes.policies.len();
    let mut etags = Etags::new(current);
    let interrupted = Shutdown::from_os_signals();
    tokio::spawn({
        let interrupted = interrupted.clone();
        async move {
            interrupted.cancelled().await;
            eprintln!(
                "interrupted: stopping after the write in flight (interrupt again to quit now)"
            );
        }
    });
    for (done, step) in changes.steps.iter().enumerate() {
        if interrupted.is_triggered() {
            let why = format!(
                "interrupted ({done} of {} writes made, none deleting more than before or than \
                 the file; apply the file again to finish)",
                changes.steps.len()
            );
            return Err(stop(cli, changes, current, &mut etags, done, why).await);
        }
        if let Err(status) = etags.send(cli, step).await {
            let why = format!(
                "{}: {} ({done} of {} writes made before it, none deleting more than before or \
                 than the file; apply the file again once this is fixed)",
                step.target.describe(),
                status.message(),
                changes.steps.len()
            );
            return Err(stop(cli, changes, current, &mut etags, done, why).await);
        }
    }
    println!("applied {total} change{}", if total == 1 { "" } else { "s" });
    Ok(())
}

/// Stops a write after `done` of its steps, for `why`: the recovery's
/// writes, and the error that says what is left paused.
async fn stop(
    cli: &Cli,
    changes: &Changes,
    current: &Current,
    etags: &mut Etags,
    done: usize,
    why: String,
) -> anyhow::Error {
    let recovery = plan(changes, current).recovery(&changes.steps, done);
    let (resumed, stranded) = etags.recover(cli, recovery).await;
    let listed = &changes.listed;
    anyhow::anyhow!("{why}{}", paused_after_failure(&resumed, &stranded, listed))
}

/// What an operator must know of the paused policies the file does not
/// change, after a stopped write. Those the file lists (as they were) are
/// made live again by applying it again; applying it does not touch the
/// others.
fn paused_after_failure(resumed: &[String], stranded: &[String], listed: &[String]) -> String {
    let mut out = String::new();
    if !resumed.is_empty() {
        out += &format!("\npaused while applying and live again: {}", resumed.join(", "));
    }
    let (in_file, elsewhere): (Vec<&String>, Vec<&String>) =
        stranded.iter().partition(|name| listed.contains(name));
    let names = |v: &[&String]| v.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(", ");
    if !in_file.is_empty() {
        out += &format!(
            "\npaused while applying and still dry runs: {}; applying the file again makes \
             them live as it says",
            names(&in_file)
        );
    }
    if !elsewhere.is_empty() {
        out += &format!(
            "\npaused while applying, not in the file, and still dry runs: {}; once the file \
             is applied, make each live again with `regsweep policies update NAME --live`",
            names(&elsewhere)
        );
    }
    out
}

/// The version of each registry and policy as `apply` last read or wrote
/// it, by `Target::describe`.
struct Etags(BTreeMap<String, String>);

impl Etags {
    fn new(current: &Current) -> Self {
        let registries = current
            .registries
            .values()
            .map(|r| (Target::Registry(RegistryEntry::from_proto(r)).describe(), r.etag.clone()));
        let policies = current
            .policies
            .values()
            .map(|p| (Target::Policy(PolicyEntry::from_proto(p)).describe(), p.etag.clone()));
        Etags(registries.chain(policies).collect())
    }

    /// One write, conditional on the version last seen.
    async fn send(&mut self, cli: &Cli, step: &Step) -> Result<(), tonic::Status> {
        let what = step.target.describe();
        let etag = self.0.get(&what).cloned().unwrap_or_default();
        let written = send(cli, &step.target, step.create, false, etag).await?;
        self.0.insert(what, written);
        Ok(())
    }

    /// Makes the recovery's writes; answers the policies live again and
    /// those still paused.
    async fn recover(&mut self, cli: &Cli, recovery: Recovery) -> (Vec<String>, Vec<String>) {
        let (mut resumed, mut stranded) = (Vec::new(), recovery.stranded);
        for step in &recovery.writes {
            let Target::Policy(p) = &step.target else { continue };
            match self.send(cli, step).await {
                Ok(()) => resumed.push(p.name.clone()),
                Err(status) => {
                    eprintln!("policy {:?}: not live again: {}", p.name, status.message());
                    stranded.push(p.name.clone());
                }
            }
        }
        (resumed, stranded)
    }
}

/// What each changed policy would delete now: a preview of the draft on
/// the repositories it would govern, up to `limit` each.
async fn impact(cli: &Cli, changes: &Changes, current: &Current, limit: usize) -> Result<()> {
    let mut policies = client::policies(&cli.scheduler).await?;
    for (entry, _) in &changes.policies {
        let governed = governed(cli, entry, changes, current).await?;
        if governed.is_empty() {
            println!("policy {:?} would govern no repository known now", entry.name);
            continue;
        }
        println!(
            "policy {:?} would govern {} repositories; now it would delete:",
            entry.name,
            governed.len()
        );
        for repository in governed.iter().take(limit) {
            let request = v1::PreviewPolicyRequest {
                policy: entry.name.clone(),
                repository: repository.clone(),
                draft: Some(entry.to_proto()),
            };
            match policies.preview_policy(request).await {
                Ok(p) => {
                    let p = p.into_inner();
                    println!(
                        "  {repository}: {} of {} tags, {} digests, frees up to {}{}",
                        p.delete_count,
                        p.decisions.len(),
                        p.digest_delete_count,
                        crate::output::bytes(p.reclaimable_bytes),
                        if p.blocked.is_empty() {
                            String::new()
                        } else {
                            format!(" (blocked: {})", p.blocked)
                        }
                    );
                }
                Err(status) => println!("  {repository}: no preview: {}", status.message()),
            }
        }
        if governed.len() > limit {
            println!(
                "  and {} more not previewed (--preview-repositories)",
                governed.len() - limit
            );
        }
    }
    Ok(())
}

/// The known repositories `entry` would govern once the file is applied.
async fn governed(
    cli: &Cli,
    entry: &PolicyEntry,
    changes: &Changes,
    current: &Current,
) -> Result<Vec<String>> {
    if !current.registries.contains_key(&entry.registry) {
        return Ok(Vec::new());
    }
    let mut claims: BTreeMap<&str, (i32, &str)> = current
        .policies
        .values()
        .filter(|p| p.registry == entry.registry)
        .map(|p| (p.name.as_str(), (p.priority, p.repository_selector.as_str())))
        .collect();
    for (p, _) in changes.policies.iter().filter(|(p, _)| p.registry == entry.registry) {
        claims.insert(p.name.as_str(), (p.priority, p.selector.as_str()));
    }
    let candidates = claims
        .iter()
        .enumerate()
        .filter_map(|(id, (name, (priority, selector)))| {
            let selector = Selector::parse(selector).ok()?;
            Some(Candidate { id: id as i64, name: name.to_string(), priority: *priority, selector })
        })
        .collect();
    let precedence = Precedence::new(candidates);
    let repositories = client::repositories(&cli.scheduler).await?;
    let all = client::pages(None, |page_size, page_token| {
        let mut repositories = repositories.clone();
        let request = v1::ListRepositoriesRequest {
            registry: entry.registry.clone(),
            page_size,
            page_token,
            ..Default::default()
        };
        async move {
            let page = repositories.list_repositories(request).await?.into_inner();
            Ok((page.repositories, page.next_page_token))
        }
    })
    .await?;
    Ok(all
        .into_iter()
        .filter(|r| precedence.governing(&r.name).is_some_and(|c| c.name == entry.name))
        .map(|r| r.name)
        .collect())
}
