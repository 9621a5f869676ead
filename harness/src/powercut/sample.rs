//! Which crash points of a recorded step are judged: every one (the full
//! enumeration, `every-write`), or a sample that keeps the points where
//! torn metadata is likeliest (the first and the last write; for label
//! writes, in each round of DIMM updates the boundaries that leave one
//! DIMM updated and all but one; for namespace writes, each boundary
//! between writes of two structures, such as BTT's data block, flog and
//! map; the end of the step) and adds a few others drawn from a seed, so
//! that a sampled run is the same run after run and a failure names the
//! seed that repeats it.

use std::collections::BTreeSet;

use super::record::{CrashPoint, MediaWrite, Watched};
use crate::suite::PointSelection;

/// The points a sample chose, and what repeats it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chosen {
    /// Indexes into the recorded points, ascending.
    pub keep: Vec<usize>,
    /// Of how many.
    pub of: usize,
    /// The seed the extra points came from (none: every point).
    pub seed: Option<u64>,
}

impl Chosen {
    /// What the summary says of the choice: none when every point was judged.
    pub fn describe(&self) -> Option<String> {
        let seed = self.seed?;
        Some(format!(
            "{} of {} crash points sampled (seed {seed}: `--power-cut-seed {seed}` repeats it, \
             `--power-cuts every-write` judges them all)",
            self.keep.len(),
            self.of
        ))
    }
}

/// The points of `points` (taken before `writes`, the `watched` ones, in
/// order, and after the step) that `selection` judges; `trial_seed` is the
/// trial's own seed.
pub fn choose(
    selection: PointSelection,
    watched: Option<Watched>,
    writes: &[MediaWrite],
    points: &[CrashPoint],
    trial_seed: u64,
) -> Chosen {
    let all = Chosen {
        keep: (0..points.len()).collect(),
        of: points.len(),
        seed: None,
    };
    let PointSelection::Sample { extra, limit, seed } = selection else {
        return all;
    };
    // Random moments are a sample already.
    if points.iter().any(|p| matches!(p, CrashPoint::At(_))) {
        return all;
    }
    let seed = seed.unwrap_or(trial_seed);
    let index_of = |wanted: &CrashPoint| points.iter().position(|p| p == wanted);
    // Must-haves, in the order a limit cuts them: the tears (some DIMMs
    // or structures updated, others not), then the first write, the last
    // write and the end of the step.
    let boundaries = match watched {
        Some(Watched::NamespaceWrites) => structure_changes(writes),
        _ => tears(writes),
    };
    let mut must: Vec<usize> = boundaries
        .into_iter()
        .filter_map(|n| index_of(&CrashPoint::BeforeWrite(n)))
        .collect();
    let ends = [
        writes.first().map(|w| CrashPoint::BeforeWrite(w.number)),
        writes.last().map(|w| CrashPoint::BeforeWrite(w.number)),
        Some(CrashPoint::AfterStep),
    ];
    must.extend(ends.iter().flatten().filter_map(index_of));
    let mut ordered: Vec<usize> = Vec::new();
    for i in must {
        if !ordered.contains(&i) {
            ordered.push(i);
        }
    }
    let rest: Vec<usize> = (0..points.len()).filter(|i| !ordered.contains(i)).collect();
    ordered.extend(draw(&rest, extra, seed));
    if let Some(l) = limit {
        ordered.truncate(l);
    }
    let keep: BTreeSet<usize> = ordered.into_iter().collect();
    Chosen {
        keep: keep.into_iter().collect(),
        of: points.len(),
        seed: Some(seed),
    }
}

/// The label writes before which a cut tears a set across DIMMs, widest
/// apart: the kernel updates a namespace's labels DIMM by DIMM (a label
/// and an index write each), round after round; in each round, the cut
/// after its first DIMM's update (one DIMM new, the others old) and the one
/// before its last DIMM's (all but one new). On one DIMM: none.
fn tears(writes: &[MediaWrite]) -> Vec<usize> {
    // Updates: runs of writes to one DIMM, as (dimm, first write's number).
    let mut updates: Vec<(&str, usize)> = Vec::new();
    for w in writes {
        if updates.last().is_none_or(|(d, _)| *d != w.device) {
            updates.push((&w.device, w.number));
        }
    }
    // Rounds: updates of distinct DIMMs in a row.
    let mut rounds: Vec<Vec<(&str, usize)>> = Vec::new();
    for u in updates {
        match rounds.last_mut() {
            Some(round) if !round.iter().any(|(d, _)| *d == u.0) => round.push(u),
            _ => rounds.push(vec![u]),
        }
    }
    let mut out = Vec::new();
    for round in rounds.iter().filter(|r| r.len() >= 2) {
        for n in [round[1].1, round[round.len() - 1].1] {
            if !out.contains(&n) {
                out.push(n);
            }
        }
    }
    out
}

/// The namespace writes before which a cut leaves one structure written
/// and the next not, or one structure half written: each write of another
/// length than the one before it, and each that continues the one before
/// it (BTT writes a 4 KiB data block, a flog entry in two 8-byte halves
/// and a 4-byte map entry per sector; the order between them is its
/// promise, and a torn flog entry is what its recovery must read past).
/// On BTT that is every write: a step cut at namespace writes is meant to
/// write a few sectors.
fn structure_changes(writes: &[MediaWrite]) -> Vec<usize> {
    writes
        .windows(2)
        .filter(|pair| {
            let (before, write) = (&pair[0], &pair[1]);
            before.length != write.length || before.offset + before.length == write.offset
        })
        .map(|pair| pair[1].number)
        .collect()
}

/// `count` of `from`, drawn without repeats from `seed`.
fn draw(from: &[usize], count: usize, seed: u64) -> Vec<usize> {
    crate::seeded::sample(from.to_vec(), count, seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `rounds` rounds of updates to `dimms` in turn, `per` writes each,
    /// and their points.
    fn recorded(dimms: &[&str], per: usize, rounds: usize) -> (Vec<MediaWrite>, Vec<CrashPoint>) {
        let writes: Vec<MediaWrite> = (0..rounds)
            .flat_map(|_| dimms.iter())
            .flat_map(|d| std::iter::repeat_n(*d, per))
            .enumerate()
            .map(|(i, d)| MediaWrite {
                number: i + 1,
                device: d.into(),
                offset: 0,
                length: 256,
            })
            .collect();
        let mut points: Vec<CrashPoint> = writes
            .iter()
            .map(|w| CrashPoint::BeforeWrite(w.number))
            .collect();
        points.push(CrashPoint::AfterStep);
        (writes, points)
    }

    #[test]
    fn every_keeps_every_point() {
        let (w, p) = recorded(&["nmem0", "nmem1"], 2, 1);
        let c = choose(PointSelection::Every, Some(Watched::LabelWrites), &w, &p, 7);
        assert_eq!(c.keep, (0..5).collect::<Vec<_>>());
        assert_eq!(c.describe(), None);
    }

    #[test]
    fn a_sample_keeps_ends_and_each_rounds_widest_tears() {
        // Two rounds over three DIMMs, a label and an index write each:
        // writes 1-2 nmem0, 3-4 nmem1, 5-6 nmem2, 7-8 nmem0, ...
        let (w, p) = recorded(&["nmem0", "nmem1", "nmem2"], 2, 2);
        assert_eq!(tears(&w), vec![3, 5, 9, 11]);
        let sample = PointSelection::Sample {
            extra: 0,
            limit: None,
            seed: None,
        };
        let c = choose(sample, Some(Watched::LabelWrites), &w, &p, 7);
        // Before writes 1, 3, 5, 9, 11 and 12, and after the step.
        assert_eq!(c.keep, vec![0, 2, 4, 8, 10, 11, 12]);
        assert_eq!(c.of, 13);
        assert!(c.describe().unwrap().contains("seed 7"));
    }

    #[test]
    fn a_six_way_create_is_judged_on_a_quarter_of_its_points() {
        // 6.12's create on cxl-x6: 7 rounds of 6 DIMMs, 2 writes each.
        let dimms = ["nmem0", "nmem1", "nmem2", "nmem3", "nmem4", "nmem5"];
        let (w, p) = recorded(&dimms, 2, 7);
        assert_eq!(p.len(), 85);
        let c = choose(
            PointSelection::default(),
            Some(Watched::LabelWrites),
            &w,
            &p,
            3,
        );
        assert_eq!(c.keep.len(), 14 + 3 + 3);
    }

    #[test]
    fn extras_come_from_the_seed_and_repeat_with_it() {
        let (w, p) = recorded(&["nmem0", "nmem1"], 2, 7);
        let sample = |seed| PointSelection::Sample {
            extra: 3,
            limit: None,
            seed,
        };
        let a = choose(sample(None), Some(Watched::LabelWrites), &w, &p, 11);
        assert_eq!(a.keep.len(), 7 + 3 + 3);
        assert_eq!(
            a,
            choose(sample(Some(11)), Some(Watched::LabelWrites), &w, &p, 99)
        );
        let b = choose(sample(Some(12)), Some(Watched::LabelWrites), &w, &p, 11);
        assert_ne!(a.keep, b.keep);
        assert_eq!(b.seed, Some(12));
    }

    #[test]
    fn a_limit_keeps_the_tears_first() {
        let (w, p) = recorded(&["nmem0", "nmem1"], 5, 1);
        let one = PointSelection::Sample {
            extra: 3,
            limit: Some(1),
            seed: None,
        };
        assert_eq!(
            choose(one, Some(Watched::LabelWrites), &w, &p, 1).keep,
            vec![5]
        );
        // One DIMM: no tear; the first write.
        let (w, p) = recorded(&["nmem0"], 5, 3);
        assert!(tears(&w).is_empty());
        assert_eq!(
            choose(one, Some(Watched::LabelWrites), &w, &p, 1).keep,
            vec![0]
        );
    }

    #[test]
    fn random_moments_are_all_judged() {
        let p = vec![
            CrashPoint::At(std::time::Duration::from_millis(3)),
            CrashPoint::AfterStep,
        ];
        let c = choose(PointSelection::default(), None, &[], &p, 1);
        assert_eq!(c.keep, vec![0, 1]);
    }

    /// BTT's writes for sectors written one after another, in `order`
    /// ((offset, length): a data block, flog halves, a map entry), each
    /// sector's 64 KiB further on.
    fn btt(order: &[(u64, u64)], sectors: u64) -> Vec<MediaWrite> {
        (0..sectors)
            .flat_map(|sector| order.iter().map(move |(o, l)| (o + (sector << 16), *l)))
            .enumerate()
            .map(|(i, (offset, length))| MediaWrite {
                number: i + 1,
                device: "namespace0.0".into(),
                offset,
                length,
            })
            .collect()
    }

    const DATA: (u64, u64) = (0, 4096);
    const FLOG_FIRST_HALF: (u64, u64) = (0x8000, 8);
    const FLOG_SECOND_HALF: (u64, u64) = (0x8008, 8);
    const MAP: (u64, u64) = (0xc000, 4);

    #[test]
    fn namespace_writes_keep_each_boundary_between_structures() {
        // Data, flog, flog, map: the cuts between data and flog, inside
        // the flog entry, and between flog and map, of every sector.
        let good = btt(&[DATA, FLOG_FIRST_HALF, FLOG_SECOND_HALF, MAP], 2);
        assert_eq!(structure_changes(&good), vec![2, 3, 4, 5, 6, 7, 8]);
        // The map before the flog: the cut between them is kept.
        let wrong = btt(&[DATA, MAP, FLOG_FIRST_HALF, FLOG_SECOND_HALF], 1);
        assert_eq!(structure_changes(&wrong), vec![2, 3, 4]);
        // Two data blocks apart, then two map entries apart: no boundary.
        let apart = btt(&[DATA, (0x2000, 4096), MAP, (0xc008, 4)], 1);
        assert_eq!(structure_changes(&apart), vec![3]);
        let mut points: Vec<CrashPoint> = good
            .iter()
            .map(|w| CrashPoint::BeforeWrite(w.number))
            .collect();
        points.push(CrashPoint::AfterStep);
        let sample = PointSelection::Sample {
            extra: 0,
            limit: None,
            seed: None,
        };
        let c = choose(sample, Some(Watched::NamespaceWrites), &good, &points, 1);
        // Every write of the two sectors, and after the step.
        assert_eq!(c.keep, (0..9).collect::<Vec<_>>());
    }
}
