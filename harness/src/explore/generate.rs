//! Sequences from a seed, through proptest-state-machine: the library's
//! `Sequential` strategy over the reference model ([`super::model`])
//! generates them and shrinks them (deleting steps, one guest run per
//! candidate), proptest's `TestRunner` drives it. Sequence `k` of seed `S`
//! comes from its own ChaCha stream, so it is the same whichever worker
//! runs it and in whatever order.

use std::ops::RangeInclusive;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use proptest::prelude::*;
use proptest::strategy::{BoxedStrategy, Just, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use proptest_state_machine::Sequential;

use super::model::{Model, Op, RegionShape};

/// Bumped when what a seed generates changes (the model's choices, their
/// weights): recorded in every case file the explorer writes.
pub const GENERATOR: u32 = 5;

/// A generated sequence as the library hands it to the test: the initial
/// model, the operations, and the counter of steps run (for shrinking).
pub type Steps = (Model, Vec<Op>, Option<Arc<AtomicUsize>>);

pub type SequenceStrategy = Sequential<Model, Op, BoxedStrategy<Model>, BoxedStrategy<Op>>;

/// Sequences of 1 to `steps` operations on a region of `shape`.
pub fn strategy(shape: RegionShape, steps: RangeInclusive<usize>) -> SequenceStrategy {
    Sequential::new(
        steps.into(),
        move || Just(Model::new(shape)).boxed(),
        |model: &Model, op: &Op| model.preconditions(op),
        |model: &Model| model.transitions(),
        |model: Model, op: &Op| model.apply(op),
    )
}

/// Exactly `ops`, again: a second shrinking pass over a shrunk sequence
/// (the library deletes steps once, back to front), whose first run is the
/// confirmation that the sequence still fails.
pub fn replay(shape: RegionShape, ops: Arc<Vec<Op>>) -> SequenceStrategy {
    let n = ops.len();
    Sequential::new(
        (n..=n).into(),
        move || Just(Model::new(shape)).boxed(),
        |model: &Model, op: &Op| model.preconditions(op),
        move |model: &Model| Just(ops[model.applied.min(ops.len() - 1)].clone()).boxed(),
        |model: Model, op: &Op| model.apply(op),
    )
}

/// The runner's configuration: one case per runner, no file persistence,
/// no forking, no environment read. Shrinking is capped by the caller, in
/// guest runs and time ([`crate::explore::search`]): a candidate past the
/// cap passes without a run, so the library's own caps (whose messages
/// name its environment variables) are never what stops it.
pub fn config() -> Config {
    Config {
        cases: 1,
        max_local_rejects: 10_000,
        max_global_rejects: 1_000,
        max_flat_map_regens: 1_000_000,
        failure_persistence: None,
        source_file: None,
        test_name: None,
        fork: false,
        timeout: 0,
        max_shrink_time: 0,
        // Not u32::MAX: the library reads that as "automatic", 4 per case.
        max_shrink_iters: 1_000_000,
        max_default_size_range: 100,
        result_cache: proptest::test_runner::basic_result_cache,
        verbose: 0,
        rng_algorithm: RngAlgorithm::ChaCha,
        rng_seed: proptest::test_runner::RngSeed::Random,
        _non_exhaustive: (),
    }
}

/// The random stream of sequence `index` of `seed` on `topology` (each
/// topology its own sequences).
pub fn rng_for(seed: u64, topology: &str, index: u64) -> TestRng {
    use sha2::Digest;
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[8..16].copy_from_slice(&index.to_le_bytes());
    let name = sha2::Sha256::digest(topology.as_bytes());
    bytes[16..32].copy_from_slice(&name[..16]);
    TestRng::from_seed(RngAlgorithm::ChaCha, &bytes)
}

/// A runner for sequence `index` of `seed` on `topology`.
pub fn runner(seed: u64, topology: &str, index: u64, config: &Config) -> TestRunner {
    TestRunner::new_with_rng(config.clone(), rng_for(seed, topology, index))
}

/// Sequence `index` of `seed`, without running it (listing, tests).
pub fn sequence(
    seed: u64,
    index: u64,
    shape: RegionShape,
    steps: RangeInclusive<usize>,
) -> Vec<Op> {
    let mut runner = runner(seed, "nfit-1", index, &config());
    let tree = strategy(shape, steps)
        .new_tree(&mut runner)
        .expect("a sequence of operations that always have a transition");
    tree.current().1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explore::model::SizeChoice;

    fn shape() -> RegionShape {
        RegionShape {
            size: 1 << 30,
            align: 16 << 20,
            cxl_ways: None,
            dimms: 1,
        }
    }

    #[test]
    fn the_same_seed_makes_the_same_sequence_and_another_seed_another() {
        let a = sequence(7, 3, shape(), 1..=12);
        assert_eq!(a, sequence(7, 3, shape(), 1..=12));
        let others: Vec<Vec<Op>> = (0..8).map(|k| sequence(8, k, shape(), 1..=12)).collect();
        assert!(others.iter().any(|o| *o != a));
        // Pinned: a change of what a seed makes is a new GENERATOR.
        let first = sequence(1, 0, shape(), 1..=12);
        insta::assert_debug_snapshot!("seed-1-sequence-0", first);
    }

    #[test]
    fn every_sequence_is_well_formed() {
        for seed in 0..4 {
            for index in 0..50 {
                let ops = sequence(seed, index, shape(), 1..=12);
                assert!((1..=12).contains(&ops.len()));
                let mut model = Model::new(shape());
                for op in &ops {
                    assert!(
                        model.preconditions(op),
                        "seed {seed} #{index}: {op:?} in {model:?}"
                    );
                    model = model.apply(op);
                }
            }
        }
    }

    #[test]
    fn creates_reach_every_mode_and_the_smallest_size() {
        let mut seen_modes = std::collections::BTreeSet::new();
        let mut smallest_sector = false;
        for index in 0..200 {
            for op in sequence(42, index, shape(), 1..=12) {
                if let Op::Create { mode, size, .. } = op {
                    seen_modes.insert(mode.to_string());
                    smallest_sector |=
                        mode == crate::suite::Mode::Sector && size == SizeChoice::Aligns(1);
                }
            }
        }
        assert_eq!(seen_modes.len(), 4, "{seen_modes:?}");
        assert!(smallest_sector);
    }

    #[test]
    fn a_replay_is_the_sequence_it_replays() {
        let ops = sequence(5, 9, shape(), 1..=12);
        let mut runner = runner(0, "nfit-1", 0, &config());
        let tree = replay(shape(), Arc::new(ops.clone()))
            .new_tree(&mut runner)
            .unwrap();
        assert_eq!(tree.current().1, ops);
    }

    #[test]
    fn cxl_sequences_are_well_formed_and_reach_a_region_probed_a_dimm_short() {
        let cxl = RegionShape {
            cxl_ways: Some(6),
            dimms: 6,
            ..shape()
        };
        let mut probed_short = 0;
        for index in 0..200 {
            let ops = sequence(3, index, cxl, 1..=12);
            let mut model = Model::new(cxl);
            for op in &ops {
                assert!(model.preconditions(op), "#{index}: {op:?} in {model:?}");
                let short = model.dimm_unbound.is_some();
                probed_short +=
                    usize::from(short && matches!(op, Op::CxlRegionCycle | Op::CxlRegionRecreate));
                model = model.apply(op);
            }
        }
        assert!(probed_short > 0);
    }

    #[test]
    fn sequences_reach_a_region_enable_with_a_dimm_disabled() {
        let mut tried = 0;
        for index in 0..300 {
            let ops = sequence(11, index, shape(), 1..=12);
            let mut model = Model::new(shape());
            for op in &ops {
                tried +=
                    usize::from(model.dimm_disabled.is_some() && matches!(op, Op::RegionEnable));
                model = model.apply(op);
            }
        }
        assert!(tried > 0);
    }
}
