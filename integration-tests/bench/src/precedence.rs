//! The cost of precedence among policies: the exact overlap check a create
//! runs against every policy of its registry, and the check of every pair
//! that `ListPolicies` runs, next to what the same selectors cost when
//! they only match repository names (a catalog sync's assignment).

use std::time::Instant;

use regsweep_policy::{Candidate, Precedence, Selector};

use crate::stats::median;

#[derive(clap::Args)]
pub struct Args {
    /// Policies on the registry, all at one priority (the worst case:
    /// only policies that share a priority are compared).
    #[arg(long, default_value_t = 200)]
    policies: usize,
    /// Repository names matched for the assignment figure.
    #[arg(long, default_value_t = 100_000)]
    repositories: usize,
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

/// Disjoint team selectors of the usual shapes.
fn candidates(n: usize) -> Vec<Candidate> {
    (0..n)
        .map(|i| {
            let glob = match i % 3 {
                0 => format!("team-{i}/**"),
                1 => format!("team-{i}/*/cache"),
                _ => format!("{{svc-{i},api-{i}}}/*"),
            };
            let selector = Selector::parse(&glob).unwrap_or_else(|e| panic!("{glob}: {e}"));
            Candidate { id: i as i64, name: format!("p{i}"), priority: 0, selector }
        })
        .collect()
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let n = args.policies;
    let (mut create, mut pairs, mut assign) = (Vec::new(), Vec::new(), Vec::new());
    let names: Vec<String> =
        (0..args.repositories).map(|i| format!("team-{}/app-{i}", i % (n + 7))).collect();
    for _ in 0..args.runs {
        // Fresh selectors each run: their DFAs are compiled inside the timing.
        let precedence = Precedence::new(candidates(n));
        let new = candidates(n + 1).pop().expect("one more");
        let started = Instant::now();
        let conflicts = precedence.conflicts(&new);
        create.push(started.elapsed().as_secs_f64());
        anyhow::ensure!(conflicts.is_empty(), "disjoint selectors: {conflicts:?}");

        let precedence = Precedence::new(candidates(n));
        let started = Instant::now();
        let all = precedence.all_conflicts();
        pairs.push(started.elapsed().as_secs_f64());
        anyhow::ensure!(all.is_empty(), "disjoint selectors");

        let started = Instant::now();
        let governed = names.iter().filter(|r| precedence.governing(r).is_some()).count();
        assign.push(started.elapsed().as_secs_f64());
        anyhow::ensure!(governed > 0, "some names are governed");
    }
    let (create, pairs, assign) = (median(&mut create), median(&mut pairs), median(&mut assign));
    println!("policies at one priority: {n}; runs: {}", args.runs);
    println!("| check | work | median | per item |");
    println!("|---|---|---|---|");
    println!(
        "| create: a new policy against all | {n} selectors compiled + {n} products | {:.1} ms | {:.1} µs per policy |",
        create * 1e3,
        create * 1e6 / n as f64
    );
    let count = n * (n - 1) / 2;
    println!(
        "| ListPolicies: every pair | {n} compiled + {count} products | {:.1} ms | {:.2} µs per pair |",
        pairs * 1e3,
        pairs * 1e6 / count as f64
    );
    println!(
        "| peer: assigning repositories by glob match | {} names × up to {n} globs | {:.1} ms | {:.2} µs per name |",
        names.len(),
        assign * 1e3,
        assign * 1e6 / names.len() as f64
    );
    Ok(())
}
