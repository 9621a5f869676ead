//! One sequence of a seed through proptest's runner: generated, run in a
//! fresh guest, and when it breaks an invariant, shrunk by the library
//! (each candidate in a fresh guest), with replay passes until it stops
//! getting shorter. The shrinker is kept on the bug it found: a candidate
//! that breaks another invariant, or this one another way, counts as
//! passing (that bug is found on its own), an infrastructure error as a
//! rejection (never a finding).

use std::cell::{Cell, RefCell};
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{TestCaseError, TestError};
use tokio::runtime::Runtime;

use super::generate::{self, SequenceStrategy, Steps};
use super::guest::Target;
use super::invariant::Violation;
use super::model::{Op, RegionShape};
use super::sequence::{self, SequenceRun};

/// What identifies a bug: its invariant and how it broke, the operation
/// that broke it, and the first line of the kernel's report, normalized.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FindingKey {
    pub invariant: String,
    pub how: &'static str,
    pub op: &'static str,
    pub kernel_line: Option<String>,
}

impl FindingKey {
    pub fn of(op: &Op, v: &Violation) -> FindingKey {
        FindingKey {
            invariant: v.invariant.to_string(),
            how: v.how,
            op: op.kind(),
            kernel_line: v.kernel_line.as_deref().map(crate::normalize::text),
        }
    }
}

/// A shrunk finding.
#[derive(Clone, Debug)]
pub struct Finding {
    pub key: FindingKey,
    pub seed: u64,
    pub index: u64,
    /// The generated sequence's length, and the minimal one.
    pub generated: usize,
    pub minimal: Vec<Op>,
    /// The minimal sequence as it ran (its last failing run).
    pub run: SequenceRun,
    pub shrink_runs: usize,
}

/// How a sequence ended.
pub enum SequenceEnd {
    /// It ran every step, no invariant broken.
    Passed {
        steps: usize,
    },
    Found(Box<Finding>),
    /// The guest would not start or the harness failed: no verdict.
    Infrastructure(String),
}

/// What one sequence search needs.
pub struct Search<'a> {
    pub target: &'a Target<'a>,
    pub shape: RegionShape,
    pub steps: RangeInclusive<usize>,
    pub seed: u64,
    /// The guest run folder name of this worker.
    pub folder: String,
    /// The topology's name (each topology has its own sequences).
    pub topology: String,
    pub max_shrink_runs: u32,
    pub max_shrink_time: Duration,
    pub rt: &'a Runtime,
    /// Steps run, over all the guests of this search.
    pub steps_run: Cell<usize>,
    /// Steps run by operation and mode.
    pub coverage: RefCell<super::coverage::Coverage>,
    /// Where the sequences' time went, phase by phase.
    pub phases: RefCell<crate::runner::result::Phases>,
}

impl Search<'_> {
    /// Generates, runs and, on a violation, shrinks sequence `index`.
    pub fn sequence(&self, index: u64) -> SequenceEnd {
        let strategy = generate::strategy(self.shape, self.steps.clone());
        let first = self.pass(&strategy, index, None);
        let (finding, key) = match first {
            Pass::Failed(finding, key) => (finding, key),
            Pass::Passed(steps) => return SequenceEnd::Passed { steps },
            Pass::Error(e) => return SequenceEnd::Infrastructure(e),
        };
        let mut finding = finding;
        // The library deletes steps once, back to front: replay passes
        // delete again until the sequence stops getting shorter.
        for _ in 0..3 {
            if finding.minimal.len() <= 1 {
                break;
            }
            let replay = generate::replay(self.shape, Arc::new(finding.minimal.clone()));
            match self.pass(&replay, index, Some(&key)) {
                Pass::Failed(shorter, _) if shorter.minimal.len() < finding.minimal.len() => {
                    let runs = finding.shrink_runs + shorter.shrink_runs + 1;
                    finding = Box::new(Finding {
                        shrink_runs: runs,
                        generated: finding.generated,
                        ..*shorter
                    });
                }
                Pass::Failed(same, _) => {
                    finding.shrink_runs += same.shrink_runs + 1;
                    break;
                }
                _ => break,
            }
        }
        SequenceEnd::Found(finding)
    }

    /// One run of the library over `strategy`: the sequence, and its shrink
    /// when it fails (kept on `target` when given).
    fn pass(&self, strategy: &SequenceStrategy, index: u64, target: Option<&FindingKey>) -> Pass {
        let config = generate::config();
        let mut runner = generate::runner(self.seed, &self.topology, index, &config);
        let tree = match strategy.new_tree(&mut runner) {
            Ok(t) => t,
            Err(e) => return Pass::Error(e.to_string()),
        };
        let generated = tree.current().1.len();
        let key: RefCell<Option<FindingKey>> = RefCell::new(target.cloned());
        let failing: RefCell<Vec<SequenceRun>> = RefCell::new(Vec::new());
        let runs = Cell::new(0usize);
        let infra: RefCell<Option<String>> = RefCell::new(None);
        let shrink_started: Cell<Option<Instant>> = Cell::new(None);
        let test = |(_, ops, seen): Steps| -> Result<(), TestCaseError> {
            // Past the shrink's cap a candidate passes without a run: the
            // library backs off and keeps the last failing sequence.
            if let Some(started) = shrink_started.get() {
                let shrink_runs = runs.get().saturating_sub(1);
                if shrink_runs >= self.max_shrink_runs as usize
                    || started.elapsed() >= self.max_shrink_time
                {
                    return Ok(());
                }
            }
            runs.set(runs.get() + 1);
            let ran = self.rt.block_on(sequence::run(
                self.target,
                &self.folder,
                &ops,
                seen.as_deref(),
            ));
            let ran = match ran {
                Ok(r) => r,
                Err(e) => {
                    infra.borrow_mut().get_or_insert(e.to_string());
                    return Err(TestCaseError::reject("the guest failed"));
                }
            };
            self.steps_run.set(self.steps_run.get() + ran.steps.len());
            super::coverage::count(&mut self.coverage.borrow_mut(), &ran);
            crate::runner::laps::add(&mut self.phases.borrow_mut(), &ran.phases);
            let Some((at, violation)) = &ran.violation else {
                return Ok(());
            };
            let found = FindingKey::of(&ran.steps[*at].op, violation);
            let mut wanted = key.borrow_mut();
            if wanted.get_or_insert_with(|| found.clone()) != &found {
                return Ok(());
            }
            if shrink_started.get().is_none() {
                shrink_started.set(Some(Instant::now()));
            }
            let reason = format!("{}: {}", violation.invariant, violation.detail);
            failing.borrow_mut().push(ran);
            Err(TestCaseError::fail(reason))
        };
        match runner.run_one(tree, test) {
            Ok(true) => Pass::Passed(generated),
            Ok(false) => Pass::Error(infra.borrow().clone().unwrap_or_else(|| "rejected".into())),
            Err(TestError::Fail(_, (_, minimal, _))) => {
                let runs_done = runs.get();
                let run = failing
                    .borrow()
                    .iter()
                    .rev()
                    .find(|r| ops_of(r) == minimal)
                    .or(failing.borrow().last())
                    .cloned()
                    .unwrap_or_default();
                let key = key.borrow().clone().expect("a failure has a key");
                let finding = Finding {
                    key: key.clone(),
                    seed: self.seed,
                    index,
                    generated,
                    minimal,
                    run,
                    shrink_runs: runs_done.saturating_sub(1),
                };
                Pass::Failed(Box::new(finding), key)
            }
            Err(TestError::Abort(reason)) => Pass::Error(reason.to_string()),
        }
    }
}

enum Pass {
    Passed(usize),
    Failed(Box<Finding>, FindingKey),
    Error(String),
}

fn ops_of(run: &SequenceRun) -> Vec<Op> {
    run.steps.iter().map(|s| s.op.clone()).collect()
}
