//! One sequence in one fresh guest: each operation run as a step, the
//! region observed before and after it, every invariant checked, stopping
//! at the first one broken. What each step did is kept: it becomes the
//! shrunk transcript and the case file.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::guest::{ExploreGuest, GuestError, Target};
use super::invariant::{self, Violation};
use super::model::Op;
use super::observe::Observation;
use crate::runner::laps::Laps;
use crate::runner::result::Phases;
use crate::transcript;

/// What one step did.
#[derive(Clone, Debug)]
pub struct StepLog {
    pub op: Op,
    /// The command as run (none: skipped, its namespace was never made).
    pub command: Option<String>,
    pub exit_code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub kernel: Vec<String>,
    /// The region as it was before the step.
    pub before: Observation,
}

/// A sequence as it ran.
#[derive(Clone, Debug, Default)]
pub struct SequenceRun {
    pub region: String,
    pub steps: Vec<StepLog>,
    /// The step (index into `steps`) that broke an invariant, and which.
    pub violation: Option<(usize, Violation)>,
    /// The region after the last step.
    pub after: Observation,
    /// Where the sequence's time went: start (the guest restored, readied,
    /// its labels initialized), step, observe (when not in the step's own
    /// guest call), judge (the host's checks), stop.
    pub phases: Phases,
}

/// Runs `ops` in a fresh guest named `name`; `seen` counts the steps begun
/// (the library's shrinker drops the ones after a failure for free).
pub async fn run(
    target: &Target<'_>,
    name: &str,
    ops: &[Op],
    seen: Option<&AtomicUsize>,
) -> Result<SequenceRun, GuestError> {
    let mut clock = Laps::default();
    let mut guest = match ExploreGuest::start(target, name).await {
        Ok(guest) => guest,
        Err(GuestError::Prepared(report)) => {
            // The shrinker keeps the steps counted as begun: one.
            if let Some(counter) = seen {
                counter.fetch_add(1, Ordering::SeqCst);
            }
            return Ok(prepare_broken(report));
        }
        Err(e) => return Err(e),
    };
    clock.lap("start");
    let result = steps(&mut guest, ops, seen, &mut clock).await;
    // Nothing kept: a finding's evidence is its case file, which
    // `ndharness run` replays with a run folder of its own; an
    // infrastructure error says what failed.
    if let Some(run) = guest.kill().await {
        run.remove();
    }
    clock.lap("stop");
    result.map(|run| SequenceRun {
        phases: clock.into_phases(),
        ..run
    })
}

async fn steps(
    guest: &mut ExploreGuest<'_>,
    ops: &[Op],
    seen: Option<&AtomicUsize>,
    clock: &mut Laps,
) -> Result<SequenceRun, GuestError> {
    let mut run = SequenceRun {
        region: guest.region.clone(),
        ..Default::default()
    };
    let mut before = guest.observe().await?;
    clock.lap("observe");
    // What the labels hold, as the region last showed it enabled: what a
    // reboot must bring back (a disabled region shows no namespaces).
    let mut labelled = before.clone();
    for op in ops {
        if let Some(counter) = seen {
            counter.fetch_add(1, Ordering::SeqCst);
        }
        let Some((command, create)) = guest.command(op, &before) else {
            run.steps.push(skipped(op, &before));
            continue;
        };
        clock.lap("judge");
        let dimms = guest.dimm_state();
        let mut ran = guest.run(op, &command).await?;
        clock.lap("step");
        // Without its region the guest has nothing to observe.
        let after = if ran.region_lost {
            Observation::default()
        } else if let Some(seen) = ran.observed.take() {
            seen
        } else {
            let seen = guest.observe().await?;
            clock.lap("observe");
            seen
        };
        let reference = if op.rebuilds_from_labels() {
            labelled.clone()
        } else {
            before.clone()
        };
        let mut broken = invariant::check(op, create, &reference, &ran.result, &after, dimms);
        if ran.region_lost {
            broken = invariant::region_gone(broken, op);
        }
        let broken = invariant::in_order(broken);
        if matches!(op, Op::InitLabels) && ran.result.exit_code == Some(0) {
            labelled = Observation::default();
        }
        if after.region_enabled() {
            labelled = after.clone();
        }
        run.steps.push(StepLog {
            op: op.clone(),
            // What ran, as the guest made it (a driver reload's re-creation).
            command: ran.result.command.clone().or(Some(command)),
            exit_code: ran.result.exit_code,
            stdout: ran.stdout,
            stderr: ran.stderr,
            kernel: ran
                .result
                .kernel
                .iter()
                .filter(|r| shown(op, r))
                .map(transcript::kernel_line)
                .collect(),
            before: reference,
        });
        if let Some(first) = broken.into_iter().next() {
            run.violation = Some((run.steps.len() - 1, first));
            run.after = after;
            return Ok(run);
        }
        before = after;
    }
    clock.lap("judge");
    run.after = before;
    Ok(run)
}

/// A sequence that never reached its first step: the kernel reported a
/// problem while the guest was prepared.
fn prepare_broken(report: String) -> SequenceRun {
    // A kernel record, or the first line of what stopped the guest.
    let how = crate::kmsg::fatal_console_report(&report).map_or("preparing", |k| k.name());
    let violation = invariant::kernel_report(how, report.clone());
    let log = StepLog {
        op: Op::Prepare,
        command: None,
        exit_code: None,
        stdout: String::new(),
        stderr: String::new(),
        kernel: vec![report],
        before: Observation::default(),
    };
    SequenceRun {
        steps: vec![log],
        violation: Some((0, violation)),
        ..Default::default()
    }
}

/// Whether a kernel record goes into the step's log: a reboot's whole
/// boot log shows only its warnings and worse.
fn shown(op: &Op, record: &crate::kmsg::Record) -> bool {
    let boot = matches!(op, Op::Reboot);
    crate::kmsg::relevant(record) && (!boot || record.level <= 4)
}

fn skipped(op: &Op, before: &Observation) -> StepLog {
    StepLog {
        op: op.clone(),
        command: None,
        exit_code: None,
        stdout: String::new(),
        stderr: String::new(),
        kernel: Vec::new(),
        before: before.clone(),
    }
}
