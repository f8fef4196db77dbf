//! Every fuzz target on stable, in every test run: the seed corpus, then
//! generated inputs (random bytes, and seeds with random bytes flipped,
//! cut and spliced) from a fixed seed, so a failure reproduces. libFuzzer
//! explores far more (`cargo +nightly fuzz run NAME`, see the README).

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

/// Inputs generated per target.
const GENERATED: usize = 20_000;

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(target);
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("seed corpus {}: {e}", dir.display()))
        .map(|entry| std::fs::read(entry.expect("entry").path()).expect("seed"))
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "no seeds for {target}");
    seeds
}

fn mutate(rng: &mut StdRng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut input = seed.to_vec();
    match rng.random_range(0..4) {
        0 if !input.is_empty() => {
            for _ in 0..rng.random_range(1..8) {
                let at = rng.random_range(0..input.len());
                input[at] = rng.random();
            }
        }
        1 if !input.is_empty() => input.truncate(rng.random_range(0..input.len())),
        2 => {
            let at = rng.random_range(0..=input.len());
            let cut = rng.random_range(0..=other.len());
            input.splice(at..at, other[..cut].iter().copied());
        }
        _ => {
            let len = rng.random_range(0..256);
            input = (0..len).map(|_| rng.random()).collect();
        }
    }
    input
}

#[test]
fn every_target_survives_its_seeds_and_generated_inputs() {
    for (name, target) in regsweep_fuzz_targets::TARGETS {
        let seeds = seeds(name);
        for seed in &seeds {
            target(seed);
        }
        let mut rng = StdRng::seed_from_u64(0x7265_6773_7765_6570);
        for _ in 0..GENERATED {
            let seed = &seeds[rng.random_range(0..seeds.len())];
            let other = &seeds[rng.random_range(0..seeds.len())];
            target(&mutate(&mut rng, seed, other));
        }
    }
}
