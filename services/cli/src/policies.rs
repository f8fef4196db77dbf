//! `regsweep policies ...`

use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use regsweep_common::duration;
use regsweep_proto::v1::{self, TagAction};
use regsweep_proto::{duration_from_std, duration_to_std};

use crate::cli::{Cli, Output};
use crate::client;
use crate::output::{self, Table, time};

#[derive(Debug, Subcommand)]
pub enum PoliciesCommand {
    /// Add a policy.
    Create(PolicyArgs),
    /// Show one policy.
    Get {
        /// Policy name.
        name: String,
    },
    /// List policies.
    List {
        /// Only this registry's.
        #[arg(long)]
        registry: Option<String>,
    },
    /// Change a policy: only the flags given change.
    Update(PolicyArgs),
    /// Remove a policy.
    Delete {
        /// Policy name.
        name: String,
    },
    /// Let a policy run again.
    Enable {
        /// Policy name.
        name: String,
    },
    /// Stop a policy; running cleanups finish.
    Disable {
        /// Policy name.
        name: String,
    },
    /// Make a policy due now.
    Run {
        /// Policy name.
        #[arg(long)]
        policy: String,
    },
    /// Show keep/delete for every tag of one repository, deleting nothing.
    Preview {
        /// Policy name.
        #[arg(long)]
        policy: String,
        /// Repository of the policy's registry.
        #[arg(long)]
        repository: String,
    },
}

#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// Unique name.
    #[arg(long)]
    pub name: String,
    /// Registry whose repositories it covers (create only).
    #[arg(long)]
    pub registry: Option<String>,
    /// Glob on repository names (`team/**`, `*/cache`).
    #[arg(long)]
    pub selector: Option<String>,
    /// 1d, 7d, 14d, 1month, 3month, or a cron expression (UTC).
    #[arg(long)]
    pub cadence: Option<String>,
    /// Candidate tags kept, newest first.
    #[arg(long, allow_negative_numbers = true)]
    pub keep_n: Option<i32>,
    /// Only candidate tags older than this go, e.g. 14d (0s: no age rule).
    #[arg(long, value_parser = duration::parse)]
    pub older_than: Option<Duration>,
    /// Tags matching this (anchored) regex are candidates.
    #[arg(long)]
    pub name_regex_delete: Option<String>,
    /// Tags matching this (anchored) regex are kept.
    #[arg(long)]
    pub name_regex_keep: Option<String>,
    /// What goes with a deleted image's signatures, SBOMs and
    /// attestations: they are deleted with it, or kept.
    #[arg(long, value_enum)]
    pub attachments: Option<Attachments>,
    /// Where an image's age comes from: `created` where believable, else
    /// when regsweep first saw the tag on its digest (auto); or only one.
    #[arg(long, value_enum)]
    pub age_source: Option<AgeSourceArg>,
    /// Plan and record only; delete nothing. A new policy is a dry run
    /// unless `--live` is given.
    #[arg(long, conflicts_with = "live")]
    pub dry_run: Option<Option<bool>>,
    /// Make the policy live: its cleanups delete.
    #[arg(long)]
    pub live: bool,
    /// A JSON file of ordered rules, each a `regsweep.v1.PolicyRule` in
    /// proto JSON (`[{"name": "ci", "tagGlob": "sha-*", "keepWithin":
    /// "604800s"}]`); `-` reads standard input, `''` clears them. Replaces
    /// the single-rule flags above.
    #[arg(long)]
    pub rules: Option<String>,
    /// Largest share (0 to 1) of a repository's tags or images one cleanup
    /// may delete before its plan waits for `regsweep scrub approve`; 0 is
    /// the default (0.5), 1 switches the guard off.
    #[arg(long)]
    pub max_delete_fraction: Option<f64>,
    /// Precedence among the registry's policies: a repository is governed
    /// by the matching policy of highest priority. Policies whose selectors
    /// can select one repository need different priorities.
    #[arg(long, allow_negative_numbers = true)]
    pub priority: Option<i32>,
}

/// `--attachments`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Attachments {
    DeleteWithSubject,
    Keep,
}

impl From<Attachments> for v1::AttachmentPolicy {
    fn from(a: Attachments) -> Self {
        match a {
            Attachments::DeleteWithSubject => Self::DeleteWithSubject,
            Attachments::Keep => Self::Keep,
        }
    }
}

/// `--age-source`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AgeSourceArg {
    Auto,
    Created,
    FirstSeen,
}

impl From<AgeSourceArg> for v1::AgeSource {
    fn from(a: AgeSourceArg) -> Self {
        match a {
            AgeSourceArg::Auto => Self::Auto,
            AgeSourceArg::Created => Self::Created,
            AgeSourceArg::FirstSeen => Self::FirstSeen,
        }
    }
}

impl PolicyArgs {
    fn to_proto(&self) -> Result<(v1::Policy, Vec<String>)> {
        let mut mask = Vec::new();
        let mut p = v1::Policy {
            name: self.name.clone(),
            registry: self.registry.clone().unwrap_or_default(),
            ..Default::default()
        };
        let mut set = |field: &str, present: bool| {
            if present {
                mask.push(field.to_string());
            }
        };
        set("repository_selector", self.selector.is_some());
        set("cadence", self.cadence.is_some());
        set("keep_n", self.keep_n.is_some());
        set("older_than", self.older_than.is_some());
        set("name_regex_delete", self.name_regex_delete.is_some());
        set("name_regex_keep", self.name_regex_keep.is_some());
        set("attachments", self.attachments.is_some());
        set("age_source", self.age_source.is_some());
        set("dry_run", self.dry_run.is_some() || self.live);
        set("max_delete_fraction", self.max_delete_fraction.is_some());
        set("rules", self.rules.is_some());
        set("priority", self.priority.is_some());
        p.repository_selector = self.selector.clone().unwrap_or_default();
        p.cadence = self.cadence.clone().unwrap_or_default();
        p.keep_n = self.keep_n.unwrap_or_default();
        p.older_than = self.older_than.map(duration_from_std);
        p.name_regex_delete = self.name_regex_delete.clone().unwrap_or_default();
        p.name_regex_keep = self.name_regex_keep.clone().unwrap_or_default();
        p.attachments = self.attachments.map_or(0, |a| v1::AttachmentPolicy::from(a).into());
        p.age_source = self.age_source.map_or(0, |a| v1::AgeSource::from(a).into());
        // `--dry-run` alone means true.
        p.dry_run = self.dry_run.is_some_and(|d| d.unwrap_or(true));
        p.max_delete_fraction = self.max_delete_fraction.unwrap_or_default();
        p.priority = self.priority.unwrap_or_default();
        p.rules = match self.rules.as_deref() {
            None | Some("") => Vec::new(),
            Some(path) => read_rules(path)?,
        };
        Ok((p, mask))
    }
}

/// The rules in `path` (`-`: standard input).
fn read_rules(path: &str) -> Result<Vec<v1::PolicyRule>> {
    let text = if path == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading rules from standard input")?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading rules from {path}"))?
    };
    serde_json::from_str(&text).with_context(|| format!("rules in {path}"))
}

/// A rule as shown: `#2 ci`.
fn rule_ref(position: u32, name: &str) -> String {
    match (position, name) {
        (0, _) => String::new(),
        (p, "") => format!(" #{p}"),
        (p, n) => format!(" #{p} {n}"),
    }
}

pub async fn run(cli: &Cli, command: &PoliciesCommand) -> Result<()> {
    let mut policies = client::policies(&cli.scheduler).await?;
    let policy = match command {
        PoliciesCommand::Create(args) => {
            let (policy, _) = args.to_proto()?;
            let live = args.live || args.dry_run == Some(Some(false));
            let request =
                v1::CreatePolicyRequest { policy: Some(policy), live, ..Default::default() };
            policies.create_policy(request).await?.into_inner().policy
        }
        PoliciesCommand::Get { name } => {
            policies
                .get_policy(v1::GetPolicyRequest { name: name.clone() })
                .await?
                .into_inner()
                .policy
        }
        PoliciesCommand::List { registry } => {
            let request =
                v1::ListPoliciesRequest { registry: registry.clone().unwrap_or_default() };
            let list = policies.list_policies(request).await?.into_inner().policies;
            return print_policies(cli.output, &list);
        }
        PoliciesCommand::Update(args) => {
            anyhow::ensure!(args.registry.is_none(), "a policy's registry cannot change");
            let (policy, mask) = args.to_proto()?;
            anyhow::ensure!(!mask.is_empty(), "nothing to change: give at least one field flag");
            let request = v1::UpdatePolicyRequest {
                policy: Some(policy),
                update_mask: mask,
                ..Default::default()
            };
            policies.update_policy(request).await?.into_inner().policy
        }
        PoliciesCommand::Delete { name } => {
            policies.delete_policy(v1::DeletePolicyRequest { name: name.clone() }).await?;
            return output::deleted(cli.output, "policy", name);
        }
        PoliciesCommand::Enable { name } => {
            let request = v1::EnablePolicyRequest { name: name.clone() };
            policies.enable_policy(request).await?.into_inner().policy
        }
        PoliciesCommand::Disable { name } => {
            let request = v1::DisablePolicyRequest { name: name.clone() };
            policies.disable_policy(request).await?.into_inner().policy
        }
        PoliciesCommand::Run { policy } => {
            let request = v1::RunPolicyRequest { name: policy.clone() };
            policies.run_policy(request).await?.into_inner().policy
        }
        PoliciesCommand::Preview { policy, repository } => {
            let request = v1::PreviewPolicyRequest {
                policy: policy.clone(),
                repository: repository.clone(),
                ..Default::default()
            };
            let preview = policies.preview_policy(request).await?.into_inner();
            return print_preview(cli.output, &preview);
        }
    };
    let policy = policy.context("server returned no policy")?;
    print_policies(cli.output, std::slice::from_ref(&policy))
}

fn print_policies(format: Output, policies: &[v1::Policy]) -> Result<()> {
    if format == Output::Json {
        return output::json(policies);
    }
    let mut table = Table::new(&[
        "NAME",
        "REGISTRY",
        "SELECTOR",
        "PRIORITY",
        "CADENCE",
        "KEEP N",
        "OLDER THAN",
        "AGE FROM",
        "DELETE",
        "KEEP",
        "ATTACHMENTS",
        "DRY RUN",
        "GUARD",
        "ENABLED",
        "REPOS",
        "NEXT RUN",
    ]);
    for p in policies {
        let older = p.older_than.as_ref().and_then(duration_to_std).filter(|d| !d.is_zero());
        table.row(vec![
            p.name.clone(),
            p.registry.clone(),
            p.repository_selector.clone(),
            p.priority.to_string(),
            p.cadence.clone(),
            p.keep_n.to_string(),
            older.map_or_else(|| "-".into(), |d| humantime::format_duration(d).to_string()),
            match p.age_source() {
                v1::AgeSource::Created => "created",
                v1::AgeSource::FirstSeen => "first-seen",
                v1::AgeSource::Auto | v1::AgeSource::Unspecified => "auto",
            }
            .into(),
            output::short(&p.name_regex_delete, 40),
            output::short(&p.name_regex_keep, 40),
            match p.attachments() {
                v1::AttachmentPolicy::Keep => "keep",
                _ => "delete-with-subject",
            }
            .into(),
            p.dry_run.to_string(),
            guard(p.max_delete_fraction),
            (!p.disabled).to_string(),
            p.repository_count.to_string(),
            time(p.next_run_at.as_ref()),
        ]);
    }
    table.print();
    for p in policies {
        for (i, rule) in p.rules.iter().enumerate() {
            let shown = serde_json::to_string(rule).unwrap_or_default();
            println!("policy {} rule{}: {shown}", p.name, rule_ref(i as u32 + 1, &rule.name));
        }
        for warning in &p.warnings {
            println!("warning: policy {}: {warning}", p.name);
        }
    }
    Ok(())
}

/// The blast-radius guard as shown: the share a cleanup may delete.
fn guard(fraction: f64) -> String {
    match regsweep_policy::max_delete_fraction(fraction) {
        f if f >= 1.0 => "off".into(),
        f => format!("{:.0}%", f * 100.0),
    }
}

fn print_preview(format: Output, preview: &v1::PreviewPolicyResponse) -> Result<()> {
    if format == Output::Json {
        return output::json(preview);
    }
    let mut table =
        Table::new(&["TAG", "ACTION", "RULE", "KIND", "AGE", "FROM", "DIGEST", "FOLLOWS"]);
    for d in &preview.decisions {
        let action = match d.action() {
            TagAction::Keep => "keep",
            TagAction::Delete => "delete",
            TagAction::Unspecified => "?",
        };
        table.row(vec![
            d.tag.clone(),
            action.into(),
            format!("{}{}", d.rule, rule_ref(d.rule_position, &d.rule_name)),
            d.kind.clone(),
            time(d.age.as_ref()),
            d.age_from.clone(),
            output::short(&d.digest, 19),
            output::short(&d.follows, 19),
        ]);
    }
    table.print();
    for d in preview.decisions.iter().filter(|d| !d.shield.is_empty()) {
        println!("{} is kept: {}", d.tag, d.shield);
    }
    for image in preview.images.iter().filter(|i| !i.before.is_empty() || !i.after.is_empty()) {
        println!("{} goes with:", output::short(&image.digest, 19));
        let linked = image.before.iter().chain(&image.after);
        for l in linked {
            let relation = match l.relation() {
                v1::LinkRelation::Attachment => "attachment",
                _ => "child",
            };
            println!("  {relation} {} {}", output::short(&l.digest, 19), l.tags.join(" "));
        }
    }
    println!(
        "{}: {} of {} tags would be deleted, {} digests outright (job {})",
        preview.repository,
        preview.delete_count,
        preview.decisions.len(),
        preview.digest_delete_count,
        preview.job_id
    );
    if preview.reclaimable_bytes > 0 || preview.unread_manifests > 0 {
        let unread = match preview.unread_manifests {
            0 => String::new(),
            n => format!("; {n} manifests could not be read, so this is an estimate"),
        };
        println!(
            "frees up to {} in {} blobs once the registry's garbage collection runs{unread}",
            output::bytes(preview.reclaimable_bytes),
            preview.reclaimable_blobs
        );
    }
    if !preview.blocked.is_empty() {
        println!("nothing would be deleted: {}", preview.blocked);
    }
    Ok(())
}
