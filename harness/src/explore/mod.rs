//! `ndharness explore`: random namespace sequences run through the real
//! driver in warm-started guests, one per core, each step checked against
//! named invariants ([`invariant`]); a sequence that breaks one is shrunk
//! by proptest-state-machine (each candidate in a fresh guest,
//! [`search`]) and written as a case file ([`case_file`]). Sequences come
//! from a seed ([`generate`], over the reference model [`model`]): the
//! same seed gives the same sequences.

pub mod case_file;
mod coverage;
pub mod generate;
pub mod guest;
pub mod invariant;
pub mod model;
pub mod observe;
mod report;
pub mod search;
pub mod sequence;

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use self::guest::{ExploreGuest, Target};
use self::model::RegionShape;
use self::search::{Finding, FindingKey, Search, SequenceEnd};
use crate::runner::warm::{self, TemplateSpec};
use crate::runner::{Config, GuestEnv};
use crate::topology::Loaded;

pub use coverage::Coverage;
pub use report::{label, FindingReport, Report, TopologyReport};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Topology(#[from] crate::topology::Error),
    #[error(transparent)]
    Warm(#[from] warm::Error),
    #[error("{topology}: {source}")]
    Guest {
        topology: String,
        source: Box<guest::GuestError>,
    },
    #[error("{topology}: the region's attributes could not be read")]
    NoRegion { topology: String },
    #[error("failed to start a runtime: {0}")]
    Runtime(std::io::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What to explore, and for how long.
#[derive(Clone, Debug)]
pub struct Options {
    pub topologies: Vec<String>,
    pub seed: u64,
    /// Wall time for exploring (a shrink in progress finishes).
    pub budget: Duration,
    /// Most operations per sequence.
    pub steps: usize,
    pub jobs: usize,
    /// Where case files and explore.json go.
    pub out: PathBuf,
    /// Guest runs one finding's shrink may take.
    pub max_shrink_runs: u32,
    /// When to end before the budget is spent, if ever.
    pub until: Until,
}

/// When exploring ends.
#[derive(Clone, Debug, Default)]
pub enum Until {
    /// When the budget is spent.
    #[default]
    Budget,
    /// When the budget is spent, or at the first finding whose
    /// [`label`] is not among these (the findings of another kernel: one
    /// new finding tells this kernel from it, as `mutate` asks). The
    /// sequences running then finish.
    NewFinding(BTreeSet<String>),
}

impl Until {
    /// Whether a new finding labelled `label` ends exploring.
    fn ends_at(&self, label: &str) -> bool {
        match self {
            Until::Budget => false,
            Until::NewFinding(known) => !known.contains(label),
        }
    }
}

/// A topology ready to explore: its guests' target and its region's shape.
struct Explored<'a> {
    name: String,
    target: Target<'a>,
    shape: RegionShape,
}

/// What the workers share.
struct Shared<'a> {
    options: &'a Options,
    explored: Vec<Explored<'a>>,
    next: AtomicU64,
    deadline: Instant,
    /// A finding ended exploring before the deadline ([`Until`]).
    ended: AtomicBool,
    tally: Mutex<Tally>,
}

impl Shared<'_> {
    /// Whether a worker may start another sequence.
    fn going_on(&self) -> bool {
        Instant::now() < self.deadline && !self.ended.load(Ordering::SeqCst)
    }
}

/// What the workers have done, as they report it.
#[derive(Default)]
struct Tally {
    per_topology: BTreeMap<String, TopologyReport>,
    findings: BTreeMap<FindingKey, (Finding, String, usize)>,
    /// Every finding's [`label`] on each topology that saw it.
    labels: BTreeSet<String>,
    infrastructure: Vec<String>,
    /// The finding that ended exploring early, by its label.
    ended_by: Option<String>,
}

/// Explores until the budget is spent (or [`Options::until`] says); the
/// report says what was run and found (the case files are written as
/// findings come).
pub fn explore(config: &Config, env: &GuestEnv, options: &Options) -> Result<Report, Error> {
    let started = Instant::now();
    std::fs::create_dir_all(&options.out).map_err(|source| Error::Io {
        path: options.out.clone(),
        source,
    })?;
    let loaded: Vec<Loaded> = options
        .topologies
        .iter()
        .map(|t| crate::topology::load(t))
        .collect::<Result<_, _>>()?;
    let mut explored = Vec::new();
    for topology in &loaded {
        explored.push(prepare(config, env, topology)?);
    }
    let shared = Shared {
        options,
        explored,
        next: AtomicU64::new(0),
        deadline: started + options.budget,
        ended: AtomicBool::new(false),
        tally: Mutex::new(Tally::default()),
    };
    std::thread::scope(|scope| {
        for worker in 0..options.jobs.max(1) {
            let shared = &shared;
            scope.spawn(move || work(shared, worker, config));
        }
        scope.spawn(|| progress(&shared, started));
    });
    let tally = shared.tally.into_inner().unwrap_or_else(|e| e.into_inner());
    Ok(report::build(
        options,
        config,
        env,
        tally,
        started.elapsed(),
    ))
}

/// A topology's warm state (made if need be) and its region's shape, read
/// from a first guest.
fn prepare<'a>(
    config: &'a Config,
    env: &'a GuestEnv,
    topology: &'a Loaded,
) -> Result<Explored<'a>, Error> {
    let state = warm::state(config, env, TemplateSpec::plain(topology, &[]))?;
    let target = Target {
        config,
        env,
        topology,
        state,
    };
    let rt = crate::vm::runtime().map_err(Error::Runtime)?;
    let name = topology.name.clone();
    let guest_error = |source| Error::Guest {
        topology: name.clone(),
        source: Box::new(source),
    };
    let shape = rt.block_on(async {
        let mut guest = ExploreGuest::start(&target, &format!("explore-{}-shape", topology.name))
            .await
            .map_err(guest_error)?;
        let seen = guest.observe().await.map_err(guest_error);
        let dimms = guest.dimm_count();
        if let Some(run) = guest.kill().await {
            run.remove();
        }
        seen.map(|seen| (seen, dimms))
    })?;
    let (shape, dimms) = shape;
    let region = shape.region.ok_or_else(|| Error::NoRegion {
        topology: topology.name.clone(),
    })?;
    Ok(Explored {
        name: topology.name.clone(),
        target,
        shape: RegionShape {
            size: region.size,
            align: region.align,
            cxl_ways: topology
                .topology
                .cxl
                .as_ref()
                .and_then(|c| c.regions.iter().find(|r| r.assemble))
                .map(|r| r.ways),
            dimms,
        },
    })
}

/// A worker: sequences in turn (topologies round-robin) until the budget
/// is spent or a finding ends exploring.
fn work(shared: &Shared<'_>, worker: usize, config: &Config) {
    let Ok(rt) = crate::vm::runtime() else {
        return;
    };
    let topologies = shared.explored.len() as u64;
    while shared.going_on() {
        let k = shared.next.fetch_add(1, Ordering::SeqCst);
        let explored = &shared.explored[(k % topologies) as usize];
        let index = k / topologies;
        let left = shared.deadline.saturating_duration_since(Instant::now());
        let search = Search {
            target: &explored.target,
            shape: explored.shape,
            steps: 1..=shared.options.steps.max(1),
            seed: shared.options.seed,
            folder: format!("explore-{}-w{worker}", explored.name),
            topology: explored.name.clone(),
            max_shrink_runs: shared.options.max_shrink_runs,
            max_shrink_time: left.max(Duration::from_secs(120)),
            rt: &rt,
            steps_run: Cell::new(0),
            coverage: Default::default(),
            phases: Default::default(),
        };
        let began = Instant::now();
        let outcome = search.sequence(index);
        let done = Done {
            steps: search.steps_run.get(),
            took: began.elapsed(),
            coverage: search.coverage.into_inner(),
            phases: search.phases.into_inner(),
        };
        record(shared, explored, outcome, done, config);
    }
}

/// What a search ran.
struct Done {
    steps: usize,
    took: Duration,
    coverage: Coverage,
    phases: crate::runner::result::Phases,
}

fn record(
    shared: &Shared<'_>,
    explored: &Explored<'_>,
    outcome: SequenceEnd,
    done: Done,
    config: &Config,
) {
    let mut tally = shared.tally.lock().unwrap_or_else(|e| e.into_inner());
    let entry = tally.per_topology.entry(explored.name.clone()).or_default();
    entry.sequences += 1;
    entry.steps += done.steps;
    entry.seconds += done.took.as_secs_f64();
    for (key, n) in done.coverage {
        *entry.coverage.entry(key).or_default() += n;
    }
    crate::runner::laps::add(&mut entry.phases, &done.phases);
    match outcome {
        SequenceEnd::Passed { .. } => {}
        SequenceEnd::Infrastructure(e) => {
            tally.infrastructure.push(format!("{}: {e}", explored.name))
        }
        SequenceEnd::Found(finding) => {
            let label = label(&finding.key, &explored.name);
            let first_here = tally.labels.insert(label.clone());
            if let Some(seen) = tally.findings.get_mut(&finding.key) {
                seen.2 += 1;
            } else {
                let out = &shared.options.out;
                let path = report::write_case(out, &explored.name, &finding, config);
                crate::stages::say(&report::announce(&explored.name, &finding, &path));
                tally
                    .findings
                    .insert(finding.key.clone(), (*finding, explored.name.clone(), 1));
            }
            // A known bug seen on another topology is a new label too:
            // which topology sees a bug first is a matter of timing.
            if first_here && tally.ended_by.is_none() && shared.options.until.ends_at(&label) {
                crate::stages::say(&format!(
                    "explore: ending early: `{label}` is new (the running sequences finish)"
                ));
                tally.ended_by = Some(label);
                shared.ended.store(true, Ordering::SeqCst);
            }
        }
    }
}

/// A progress line every 15 s while the workers run.
fn progress(shared: &Shared<'_>, started: Instant) {
    while shared.going_on() {
        // In steps of a second: a finding may end exploring early.
        let line_at = (Instant::now() + Duration::from_secs(15)).min(shared.deadline);
        while Instant::now() < line_at && !shared.ended.load(Ordering::SeqCst) {
            std::thread::sleep(
                Duration::from_secs(1).min(line_at.saturating_duration_since(Instant::now())),
            );
        }
        if shared.ended.load(Ordering::SeqCst) {
            break;
        }
        let tally = shared.tally.lock().unwrap_or_else(|e| e.into_inner());
        let sequences: usize = tally.per_topology.values().map(|t| t.sequences).sum();
        let steps: usize = tally.per_topology.values().map(|t| t.steps).sum();
        let elapsed = started.elapsed().as_secs_f64();
        let left = shared.deadline.saturating_duration_since(Instant::now());
        crate::stages::say(&format!(
            "explore: {sequences} sequences, {steps} steps ({:.2} steps/s), {} findings, {}s left",
            steps as f64 / elapsed.max(1.0),
            tally.findings.len(),
            left.as_secs()
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_finding_beyond_the_known_ones_ends_exploring() {
        let known: BTreeSet<String> =
            ["create-keeps-its-word at create on cxl-x2".to_owned()].into();
        let until = Until::NewFinding(known);
        assert!(!until.ends_at("create-keeps-its-word at create on cxl-x2"));
        assert!(until.ends_at("create-keeps-its-word at create on nfit-1"));
        assert!(!Until::Budget.ends_at("anything at all on nfit-1"));
    }

    #[test]
    fn a_label_says_how_the_invariant_broke_but_not_the_kernel_line() {
        let key = FindingKey {
            invariant: "create-keeps-its-word".into(),
            how: "refused",
            op: "create",
            kernel_line: None,
        };
        assert_eq!(
            label(&key, "cxl-x2"),
            "create-keeps-its-word (refused) at create on cxl-x2"
        );
        let report = FindingKey {
            invariant: "no-kernel-report".into(),
            how: "",
            op: "destroy",
            kernel_line: Some("WARNING: at drivers/nvdimm/label.c".into()),
        };
        assert_eq!(
            label(&report, "nfit-1"),
            "no-kernel-report at destroy on nfit-1"
        );
    }
}
