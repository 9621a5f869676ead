//! `ndharness merge-results`: the results of several runs (the shards of
//! one run, `--partition`) made one record, from which results.json,
//! junit.xml and report.html are written again: every trial of every
//! shard, what the shards shared (where they differ, each value), the
//! longest shard's wall time, and the exit code recomputed from the
//! records and the shards' own codes. A shard missing from a complete set
//! (`count:2/4` without `count:3/4`) makes the merged run an
//! infrastructure error: its trials were never reported.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::partition::Partition;
use super::reporter::{json, RunRecord, Schedule, Shard};
use super::result::{exit_code, RunInfo};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Read(#[from] json::Error),
    #[error("nothing to merge: give the results folders (or results.json files) of the shards")]
    Empty,
    #[error("{} has no results.json", .0.display())]
    NoResults(PathBuf),
    #[error(
        "`{name}` is in both {} and {}: the shards of one run share no trial \
         (merge each kernel's shards apart)",
        .first.display(), .second.display()
    )]
    Duplicate {
        name: String,
        first: PathBuf,
        second: PathBuf,
    },
}

/// A merged record, and the shards of its partition no input was.
#[derive(Debug)]
pub struct Merged {
    pub record: RunRecord,
    /// `count:3/4`, ...: shards of the inputs' partition with no results.
    pub missing: Vec<Partition>,
}

/// The results.json of each of `paths` (a results folder, or the file).
pub fn read_all(paths: &[PathBuf]) -> Result<Vec<(PathBuf, RunRecord)>, Error> {
    paths
        .iter()
        .map(|p| {
            let file = if p.is_dir() {
                p.join("results.json")
            } else {
                p.clone()
            };
            if !file.is_file() {
                return Err(Error::NoResults(p.clone()));
            }
            let record = json::read(&file)?;
            Ok((file, record))
        })
        .collect()
}

/// One record of `inputs` (each with the file it came from).
pub fn merge(inputs: Vec<(PathBuf, RunRecord)>) -> Result<Merged, Error> {
    if inputs.is_empty() {
        return Err(Error::Empty);
    }
    check_disjoint(&inputs)?;
    let shards: Vec<Shard> = inputs.iter().flat_map(|(p, r)| shards_of(p, r)).collect();
    let missing = missing(&shards);
    let infos: Vec<&RunInfo> = inputs.iter().map(|(_, r)| &r.info).collect();
    let stopped: BTreeSet<&str> = inputs
        .iter()
        .filter_map(|(_, r)| r.schedule.stopped.as_deref())
        .collect();
    let results: Vec<_> = inputs.iter().flat_map(|(_, r)| r.results.clone()).collect();
    let mut code = exit_code(&results, false);
    for s in &shards {
        code = worse(code, s.exit_code);
    }
    if !missing.is_empty() {
        code = worse(code, 2);
    }
    let record = RunRecord {
        info: combine(&infos),
        wall: inputs.iter().map(|(_, r)| r.wall).max().unwrap_or_default(),
        exit_code: code,
        schedule: Schedule {
            partition: None,
            repeat: inputs[0].1.schedule.repeat.clone(),
            stopped: (!stopped.is_empty())
                .then(|| stopped.into_iter().collect::<Vec<_>>().join("; ")),
        },
        date: inputs.iter().filter_map(|(_, r)| r.date.clone()).max(),
        shards,
        results,
    };
    Ok(Merged { record, missing })
}

/// No trial (no repetition of one) in two inputs.
fn check_disjoint(inputs: &[(PathBuf, RunRecord)]) -> Result<(), Error> {
    let mut seen: std::collections::HashMap<(&str, Option<u32>), &Path> = Default::default();
    for (path, run) in inputs {
        for r in &run.results {
            if let Some(first) = seen.insert((&r.name, r.repetition), path) {
                return Err(Error::Duplicate {
                    name: r.display_name().into_owned(),
                    first: first.to_owned(),
                    second: path.clone(),
                });
            }
        }
    }
    Ok(())
}

/// An input as the shards it holds (a merged input holds several).
fn shards_of(path: &Path, run: &RunRecord) -> Vec<Shard> {
    if !run.shards.is_empty() {
        return run.shards.clone();
    }
    vec![Shard {
        source: path.to_owned(),
        partition: run.schedule.partition,
        kernel: run.info.kernel.clone(),
        wall_seconds: run.wall.as_secs_f64(),
        exit_code: run.exit_code,
        trials: run.results.len(),
    }]
}

/// The shards of the inputs' partitions that no input is, per method and
/// count (`count:K/4` for the K not given).
fn missing(shards: &[Shard]) -> Vec<Partition> {
    let given: Vec<Partition> = shards.iter().filter_map(|s| s.partition).collect();
    let mut out: Vec<Partition> = Vec::new();
    for p in &given {
        for shard in 1..=p.total {
            let q = Partition { shard, ..*p };
            if !given.contains(&q) && !out.contains(&q) {
                out.push(q);
            }
        }
    }
    out
}

/// The worse of two exit codes: a conformance failure (1) over anything,
/// any other failure over success.
fn worse(a: u8, b: u8) -> u8 {
    match (a, b) {
        (1, _) | (_, 1) => 1,
        (0, x) | (x, 0) => x,
        (x, _) => x,
    }
}

/// What the inputs shared; where they differ, their values joined.
fn combine(infos: &[&RunInfo]) -> RunInfo {
    let join = |field: fn(&RunInfo) -> &String| {
        let mut values: Vec<&str> = Vec::new();
        for i in infos {
            let v = field(i).as_str();
            if !v.is_empty() && !values.contains(&v) {
                values.push(v);
            }
        }
        values.join(", ")
    };
    RunInfo {
        image: join(|i| &i.image),
        image_key: join(|i| &i.image_key),
        kernel: join(|i| &i.kernel),
        kernel_source: join(|i| &i.kernel_source),
        ndctl_source: join(|i| &i.ndctl_source),
        accel: join(|i| &i.accel),
        start: join(|i| &i.start),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::runner::result::{sample, Status};

    fn shard(
        k: u32,
        n: u32,
        results: Vec<crate::runner::TrialResult>,
        code: u8,
    ) -> (PathBuf, RunRecord) {
        let run = RunRecord {
            results,
            info: RunInfo {
                kernel: "6.12.117".into(),
                image_key: "k".into(),
                accel: if k == 1 { "Kvm" } else { "Tcg" }.into(),
                ..Default::default()
            },
            wall: Duration::from_secs(u64::from(10 * k)),
            exit_code: code,
            schedule: Schedule {
                partition: Some(format!("count:{k}/{n}").parse().unwrap()),
                ..Default::default()
            },
            date: Some(format!("2025-01-0{k}T00:00:00Z")),
            shards: Vec::new(),
        };
        (PathBuf::from(format!("shard{k}/results.json")), run)
    }

    #[test]
    fn shards_merge_into_one_run() {
        let one = shard(1, 2, vec![sample("a::x::nfit-1", Status::Pass)], 0);
        let two = shard(
            2,
            2,
            vec![
                sample("a::y::nfit-1", Status::Fail),
                sample("b::z::nfit-1", Status::Ignored),
            ],
            1,
        );
        let m = merge(vec![one, two]).unwrap();
        assert!(m.missing.is_empty());
        let r = m.record;
        assert_eq!(r.results.len(), 3);
        assert_eq!(r.exit_code, 1);
        assert_eq!(r.wall, Duration::from_secs(20));
        assert_eq!(r.info.kernel, "6.12.117");
        assert_eq!(r.info.accel, "Kvm, Tcg");
        assert_eq!(r.date.as_deref(), Some("2025-01-02T00:00:00Z"));
        assert_eq!(r.schedule.partition, None);
        let parts: Vec<String> = r
            .shards
            .iter()
            .map(|s| s.partition.unwrap().to_string())
            .collect();
        assert_eq!(parts, ["count:1/2", "count:2/2"]);
        // Merging merged results keeps their shards.
        let again = merge(vec![("m.json".into(), r)]).unwrap();
        assert_eq!(again.record.shards.len(), 2);
    }

    #[test]
    fn a_missing_shard_is_an_error_and_named() {
        let m = merge(vec![
            shard(1, 3, vec![sample("a::x::nfit-1", Status::Pass)], 0),
            shard(3, 3, vec![], 0),
        ])
        .unwrap();
        assert_eq!(m.missing, ["count:2/3".parse().unwrap()]);
        assert_eq!(m.record.exit_code, 2);
    }

    #[test]
    fn a_shards_own_exit_code_counts() {
        // A shard whose suites did not load: no records, exit 2.
        let m = merge(vec![
            shard(1, 2, vec![sample("a::x::nfit-1", Status::Pass)], 0),
            shard(2, 2, vec![], 2),
        ])
        .unwrap();
        assert_eq!(m.record.exit_code, 2);
        assert_eq!((worse(2, 1), worse(0, 2), worse(0, 0)), (1, 2, 0));
    }

    #[test]
    fn a_trial_in_two_inputs_is_refused() {
        let e = merge(vec![
            shard(1, 2, vec![sample("a::x::nfit-1", Status::Pass)], 0),
            shard(2, 2, vec![sample("a::x::nfit-1", Status::Pass)], 0),
        ])
        .unwrap_err();
        assert!(
            e.to_string().starts_with(
                "`a::x::nfit-1` is in both shard1/results.json and shard2/results.json"
            ),
            "{e}"
        );
        assert!(matches!(merge(vec![]), Err(Error::Empty)));
    }
}
