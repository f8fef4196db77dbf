//! Rule evaluation alone, in memory: a policy of ten listed rules over a
//! repository of many tags, next to today's one-rule policy (the
//! single-rule fields) on the same tags in the same run. No registry: this
//! is the planner's own cost, which the registry reads dwarf
//! (`regsweep-bench tags`).

use std::time::Instant;

use chrono::{Duration, TimeZone, Utc};
use regsweep_policy::{Inventory, RuleSpec, Rules, TagInput, TagRuleSpec, VersionGroup, plan};

use crate::stats::median;

#[derive(clap::Args)]
pub struct Args {
    /// Tags in the repository.
    #[arg(long, default_value_t = 100_000)]
    tags: usize,
    /// Tags per image.
    #[arg(long, default_value_t = 2)]
    per_image: usize,
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

/// Releases, release candidates, CI builds, branches and a few others, as
/// a busy repository holds them.
fn tags(n: usize, per_image: usize) -> Vec<TagInput> {
    let now = Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).single().unwrap_or_else(Utc::now);
    (0..n)
        .map(|i| {
            let tag = match i % 5 {
                0 => format!("{}.{}.{}", i % 7, (i / 7) % 20, i / 140),
                1 => format!("v{}.{}.0-rc.{}", i % 3, (i / 3) % 10, i / 30),
                2 => format!("sha-{i:08x}"),
                3 => format!("branch-{}-{i}", i % 40),
                _ => format!("nightly-{i}"),
            };
            let image = i / per_image.max(1);
            TagInput {
                tag,
                digest: Some(format!("sha256:{image:064x}")),
                created: Some(now - Duration::minutes(image as i64)),
                first_seen: None,
            }
        })
        .collect()
}

fn ten_rules() -> RuleSpec {
    let rule = |name: &str| TagRuleSpec { name: name.into(), ..TagRuleSpec::default() };
    let rules = vec![
        TagRuleSpec { keep_newest: 3, per: VersionGroup::Major, ..rule("per-major") },
        TagRuleSpec { keep_newest: 2, per: VersionGroup::Minor, ..rule("per-minor") },
        TagRuleSpec { semver: ">=5.0.0".into(), keep_all: true, ..rule("current") },
        TagRuleSpec { tag_glob: "sha-*".into(), keep_within_seconds: 7 * 86_400, ..rule("ci") },
        TagRuleSpec {
            tag_regex: "branch-(main|release)-.*".into(),
            keep_newest: 10,
            ..rule("main")
        },
        TagRuleSpec {
            tag_regex: "branch-.*".into(),
            keep_within_seconds: 86_400,
            ..rule("branches")
        },
        TagRuleSpec { tag_glob: "nightly-*".into(), keep_newest: 7, ..rule("nightlies") },
        TagRuleSpec { tag_regex: "v.*-rc\\..*".into(), keep_newest: 5, ..rule("candidates") },
        TagRuleSpec {
            exclude_regex: "sha-.*".into(),
            keep_within_seconds: 30 * 86_400,
            ..rule("month")
        },
        rule("the rest"),
    ];
    RuleSpec { rules, ..RuleSpec::default() }
}

fn one_rule() -> RuleSpec {
    RuleSpec {
        keep_n: 10,
        older_than_seconds: 30 * 86_400,
        name_regex_delete: ".*".into(),
        name_regex_keep: "v?[0-9]+\\.[0-9]+\\.[0-9]+".into(),
        ..RuleSpec::default()
    }
}

/// Median tags per second of planning `inventory` under `spec`.
fn measure(spec: &RuleSpec, inventory: &Inventory, runs: usize) -> anyhow::Result<(f64, usize)> {
    let rules = Rules::compile(spec).map_err(|v| anyhow::anyhow!("invalid rules: {v:?}"))?;
    let now = Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).single().unwrap_or_else(Utc::now);
    let mut rates = Vec::new();
    let mut deleted = 0;
    for _ in 0..runs.max(1) {
        let start = Instant::now();
        let p = plan(&rules, inventory.clone(), now);
        rates.push(inventory.tags.len() as f64 / start.elapsed().as_secs_f64());
        deleted = p.deleted_tags();
    }
    Ok((median(&mut rates), deleted))
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let inventory = Inventory::from_tags(tags(args.tags, args.per_image));
    println!("| policy | tags | deleted | tags/s (median of {}) |", args.runs);
    println!("|---|---|---|---|");
    for (name, spec) in
        [("one rule (single-rule fields)", one_rule()), ("ten listed rules", ten_rules())]
    {
        let (rate, deleted) = measure(&spec, &inventory, args.runs)?;
        println!("| {name} | {} | {deleted} | {rate:.0} |", args.tags);
    }
    Ok(())
}
