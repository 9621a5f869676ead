//! One trial from boot (or restore) to verdict: its run folder, its guest
//! driven through the trial state machine ([`trace`]), and at the end its
//! evidence written and its snapshots judged (or collected, for
//! `ndharness compare`).

mod capture;
mod step;
pub mod template;
mod trace;
mod verdict;

use std::fmt::Display;
use std::path::{Path, PathBuf};

pub use self::trace::OnStep;
use self::trace::Trace;
use self::verdict::Verdict;
use super::laps::Laps;
use super::result::{Cause, Failure, Phases};
use super::start::SavedState;
use super::{evidence, snapshot, Config, GuestEnv};
use crate::normalize;
use crate::suite::Trial;
use crate::transcript;
use crate::vm::{Machine, RunDir, Share};

/// How a trial ended.
#[derive(Debug)]
pub enum TrialOutcome {
    Pass,
    /// A verdict on the kernel or ndctl: expectation, kernel report, snapshot.
    Fail {
        failure: Failure,
        evidence: PathBuf,
    },
    /// The harness or the host failed; says nothing about the kernel.
    Error {
        message: String,
        evidence: Option<PathBuf>,
    },
    /// A step exited with the case's `skip_exit` code: not run, for the
    /// reason the step gave.
    Skip {
        reason: String,
    },
}

/// Boots (or restores) the trial's guest, runs its steps, and judges the
/// result. `saved_state` finds the state the trial starts from (`None`:
/// boot cold); its time is the trial's `state` phase. A repetition of the
/// trial has its own run folder.
pub fn run<E: Display>(
    config: &Config,
    env: &GuestEnv,
    trial: &Trial,
    repetition: Option<u32>,
    saved_state: impl FnOnce() -> Result<Option<SavedState>, E>,
    on_step: &OnStep<'_>,
) -> (TrialOutcome, Phases) {
    let folder = evidence::run_folder(&trial.name, repetition);
    let run = match RunDir::create(&config.runs_dir, &folder, &trial.topology.topology) {
        Ok(r) => r,
        Err(e) => {
            let message = format!("infrastructure error: {e}");
            return (
                TrialOutcome::Error {
                    message,
                    evidence: None,
                },
                Phases::new(),
            );
        }
    };
    let evidence = run.path.clone();
    let error = |message: String| {
        let evidence = Some(evidence.clone());
        let message = format!("infrastructure error: {message}");
        (TrialOutcome::Error { message, evidence }, Phases::new())
    };
    let rt = match crate::vm::runtime() {
        Ok(rt) => rt,
        Err(e) => return error(format!("failed to start a runtime: {e}")),
    };
    let mut clock = Laps::default();
    let state = match saved_state() {
        Ok(s) => s,
        Err(e) => return error(e.to_string()),
    };
    clock.lap("state");
    let started = Started {
        state: state.as_ref(),
        clock,
        on_step,
    };
    let (outcome, clock) = rt.block_on(drive(config, env, trial, run, started));
    let outcome = match outcome {
        Ok(run) => {
            run.remove();
            TrialOutcome::Pass
        }
        Err(Verdict::Fail(failure)) => TrialOutcome::Fail { failure, evidence },
        Err(Verdict::Skip(reason)) => TrialOutcome::Skip { reason },
        Err(Verdict::Error(message)) => TrialOutcome::Error {
            message: format!("infrastructure error: {message}"),
            evidence: Some(evidence),
        },
    };
    (outcome, clock.into_phases())
}

/// The host folders a trial's guest gets: the run's (`--share`), then the
/// case's own files (`CASE.files/` beside the case file, read-only at
/// [`crate::vm::share::CASE_FILES`]).
pub fn shares(config: &Config, trial: &Trial) -> Vec<Share> {
    let mut shares = config.shares.clone();
    shares.extend(trial.case.files_dir().map(|d| Share::case_files(&d)));
    shares
}

/// Where a trial's guest starts from, its clock so far, and who hears of
/// its steps.
struct Started<'s> {
    state: Option<&'s SavedState>,
    clock: Laps,
    on_step: &'s OnStep<'s>,
}

/// Starts the guest and drives the trial; the run folder comes back when
/// the trial passed.
async fn drive(
    config: &Config,
    env: &GuestEnv,
    trial: &Trial,
    run: RunDir,
    started: Started<'_>,
) -> (Result<RunDir, Verdict>, Laps) {
    let Started {
        state,
        mut clock,
        on_step,
    } = started;
    let evidence = run.path.clone();
    let shares = shares(config, trial);
    let spec = env
        .start_spec(&trial.topology.topology, config.boot_timeout)
        .with_append(&trial.case.spec.kernel_args)
        .with_incoming(state.map(|s| s.state.as_path()))
        .with_shares(&shares);
    let started = Machine::start(&spec, run).await;
    clock.lap(if state.is_some() { "restore" } else { "boot" });
    let m = match started {
        Ok(m) => m,
        Err(e) => {
            if let (Some(saved), true) = (state, e.is_infrastructure()) {
                // What QEMU's own load error tells: this state is no good.
                let first = e.to_string().lines().next().unwrap_or_default().to_owned();
                saved.discard(&format!("the guest did not start from it ({first})"));
            }
            return (Err(e.into()), clock);
        }
    };
    let mut trace = Trace::of_trial(trial, m, clock)
        .with_power_cuts(config.power_cuts)
        .with_step_events(on_step);
    if let Some(saved) = state {
        trace.adopt(saved.prelude.clone());
    }
    let result = trace.run(&spec, trial, state.map(|s| s.point)).await;
    let result = finish(config, trial, &evidence, &mut trace, result).await;
    (result, trace.clock)
}

/// After the steps: a failing step's partial transcript against its
/// snapshot, the guest ended, the evidence written, and the snapshots
/// judged (or collected).
async fn finish(
    config: &Config,
    trial: &Trial,
    evidence: &Path,
    trace: &mut Trace<'_>,
    mut result: Result<(), Verdict>,
) -> Result<RunDir, Verdict> {
    let mut ids = normalize::Uuids::default();
    let mut partial = None;
    if let Err(Verdict::Fail(Failure { message, .. })) = &mut result {
        if let Some(text) = trace.transcript_so_far().await {
            let text = ids.apply(&text);
            if let Some(diff) = transcript_diff(config, trial, &text) {
                message.push_str("\n--- the transcript so far, against its snapshot:\n");
                message.push_str(&diff);
            }
            partial = Some(text);
        }
    }
    trace.clock.lap("steps");
    let run = match trace.guest.take_machine() {
        Some(m) => Some(m.kill().await),
        None => None,
    };
    trace.clock.lap("stop");
    // Written whatever happened: a failing case is when it is read.
    let _ = std::fs::write(
        evidence.join("transcript.txt"),
        transcript::render_evidence(&trace.records),
    );
    let _ = std::fs::write(evidence.join("timing.txt"), trace.clock.render());
    let transcript =
        partial.unwrap_or_else(|| ids.apply(&transcript::render(&trace.records, &trace.names)));
    let mut snapshots = vec![("transcript".to_owned(), transcript)];
    for (name, body) in &trace.checkpoints {
        let body = ids.apply(body);
        let _ = std::fs::write(evidence.join(format!("{name}.txt")), &body);
        snapshots.push((name.clone(), body));
    }
    match &config.collect {
        // Comparing two guests: what came out is kept, not judged. A case
        // without snapshots (an upstream test: its output is its own, in
        // an order of its own) is compared by its verdict alone.
        Some(dir) if trial.case.spec.snapshots => {
            collect(dir, trial, &snapshots).map_err(|e| Verdict::Error(e.to_string()))?;
        }
        _ => {}
    }
    result?;
    let run = run.ok_or_else(|| Verdict::Error("the guest is gone".into()))?;
    if config.collect.is_some() || !trial.case.spec.snapshots {
        return Ok(run);
    }
    judge(config, trial, &snapshots)?;
    Ok(run)
}

/// The transcript of a run that stopped early against its stored snapshot.
fn transcript_diff(config: &Config, trial: &Trial, text: &str) -> Option<String> {
    let name = format!("{}@{}.transcript", trial.case.name, trial.topology.name);
    let dir = snapshot::locate(
        &trial.case.snapshot_dir(),
        &config.variants,
        false,
        &name,
        text,
    );
    snapshot::diff_stored(&dir, &name, text)
}

/// Each snapshot body against its stored snapshot (insta prints the diffs).
fn judge(config: &Config, trial: &Trial, snapshots: &[(String, String)]) -> Result<(), Verdict> {
    let case = &trial.case;
    let mut failures = Vec::new();
    let description = format!("{}: {}", trial.name, case.spec.description.trim());
    for (kind, content) in snapshots {
        let snap_name = format!("{}@{}.{kind}", case.name, trial.topology.name);
        let dir = snapshot::locate(
            &case.snapshot_dir(),
            &config.variants,
            config.new_variant,
            &snap_name,
            content,
        );
        if let Err(e) = snapshot::compare(&dir, &case.path, &snap_name, &description, content) {
            failures.push((snap_name, e.to_string()));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        let names = failures.iter().map(|(name, _)| name.clone()).collect();
        let message: Vec<&str> = failures.iter().map(|(_, m)| m.as_str()).collect();
        Err(Verdict::fail(Cause::Snapshot { names }, message.join("\n")))
    }
}

/// Writes a trial's snapshot bodies as `DIR/TRIAL/KIND.txt`, one folder per
/// trial, for `ndharness compare`.
fn collect(dir: &Path, trial: &Trial, snapshots: &[(String, String)]) -> std::io::Result<()> {
    let out = dir.join(evidence::collect_folder(&trial.name));
    let annotate = |path: &Path| {
        let path = path.display().to_string();
        move |e: std::io::Error| std::io::Error::new(e.kind(), format!("{path}: {e}"))
    };
    std::fs::create_dir_all(&out).map_err(annotate(&out))?;
    for (kind, body) in snapshots {
        let p = out.join(format!("{kind}.txt"));
        std::fs::write(&p, body).map_err(annotate(&p))?;
    }
    Ok(())
}
