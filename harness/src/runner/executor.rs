//! The executor: discovers the suites, selects trials ([`super::selection`]:
//! libtest-mimic's filters, `--exact`, `--skip`, `--ignored`, then the
//! shard of `--partition`), sizes the guests at once, schedules the trials
//! (each as many times as `--repeat`, `--until-failure` or `--soak` say,
//! [`super::repeat`]), retries an infrastructure error once, and emits a
//! [`RunEvent`] for each part of the run. It prints nothing of its own
//! about trials: reporters do ([`super::reporter`]).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use libtest_mimic::{Arguments, Completion, Failed};

use super::guest_env::GuestEnvs;
use super::jobs::default_jobs;
use super::repeat::{Repeat, Stopper};
use super::reporter::{Reporter, Reporters, RunEvent, RunRecord, Schedule, StepDone, TrialName};
use super::result::{
    exit_code, Cause, NoTests, Note, Phases, RunInfo, Status, TrialResult, NO_TRIAL_MATCHED,
};
use super::selection::{self, Planned};
use super::trial::{self, TrialOutcome};
use super::{snapshot, warm, Config, GuestEnv};
use crate::suite::known::{self, Judged};
use crate::suite::{KnownFailure, Trial};
use crate::transcript::StepRecord;

/// How many libtest trials (repetitions) one libtest run is given at most:
/// a soak's rounds are dealt in batches of about this many.
const BATCH: usize = 10_000;

/// What the trials of one run share while they run.
struct Execution {
    config: Config,
    envs: GuestEnvs,
    reporters: Reporters,
    results: Mutex<Vec<TrialResult>>,
    stopper: Stopper,
}

/// Whether a run's trials report one line each as they end (and libtest's
/// own lines go to a log file): unless listing or asked for libtest's own
/// output (`--format`, `--quiet`, `--logfile`).
pub fn shows_progress(args: &Arguments) -> bool {
    !args.list && args.format.is_none() && !args.quiet && args.logfile.is_none()
}

/// Runs the trials `args` and `schedule` select, as many times as it says,
/// and reports them to `reporters`.
pub fn execute(
    config: Config,
    args: &Arguments,
    schedule: &Schedule,
    reporters: Vec<Box<dyn Reporter>>,
) -> RunRecord {
    let trials = match crate::suite::discover(&config.suites_dir()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return RunRecord {
                exit_code: 2,
                ..Default::default()
            };
        }
    };
    snapshot::quiet_snapshot_panics();
    let plan = selection::plan(&config, trials);
    let selected = selection::select(plan, args, schedule.partition.as_ref());
    let mut libtest_args = selection::libtest_args(args);
    if args.list {
        let tests = selected
            .iter()
            .map(|p| p.libtest(p.trial.name.clone(), || Ok(Completion::Completed)))
            .collect();
        let _ = libtest_mimic::run(&libtest_args, tests);
        return RunRecord::default();
    }
    prune_cache(&config);
    let started = Instant::now();
    let exec = Arc::new(Execution {
        stopper: Stopper::new(&schedule.repeat, started),
        config,
        envs: GuestEnvs::default(),
        reporters: Reporters::new(reporters),
        results: Mutex::new(Vec::new()),
    });
    let runs_ignored = args.ignored || args.include_ignored;
    if libtest_args.test_threads.is_none() {
        // As many guests as the cores and the memory allow.
        let guest = selected.iter().map(|p| p.memory).max().unwrap_or(1 << 30);
        libtest_args.test_threads = Some(default_jobs(guest));
    }
    if shows_progress(args) {
        // libtest's lines carry no time: they go to a log file.
        let _ = std::fs::create_dir_all(&exec.config.runs_dir);
        let log = exec.config.runs_dir.join("libtest.log");
        libtest_args.logfile = Some(log.display().to_string());
    }
    let runnable = |p: &&Planned| p.skip.is_none() || runs_ignored;
    exec.reporters.emit(&RunEvent::Started {
        trials: selected.iter().filter(runnable).count(),
        threads: libtest_args.test_threads.unwrap_or(1),
        schedule,
    });
    let libtest_failed = run_rounds(
        &exec,
        &selected,
        &libtest_args,
        &schedule.repeat,
        runs_ignored,
    );
    let mut results = exec.results.lock().map(|r| r.clone()).unwrap_or_default();
    let skipped: Vec<TrialResult> = match runs_ignored {
        true => Vec::new(),
        false => selected.iter().filter_map(|p| p.skip.clone()).collect(),
    };
    for r in &skipped {
        exec.reporters.emit(&RunEvent::TrialFinished(r));
    }
    results.extend(skipped);
    let matched = !selected.is_empty();
    let mut code = exit_code(&results, libtest_failed);
    if !matched {
        match exec.config.no_tests {
            NoTests::Fail => {
                eprintln!(
                    "error: no trial matched the filters (`--no-tests pass` makes that a pass)"
                );
                code = NO_TRIAL_MATCHED;
            }
            NoTests::Warn => eprintln!("warning: no trial matched the filters"),
            NoTests::Pass => {}
        }
    }
    let record = RunRecord {
        exit_code: code,
        info: run_info(&exec),
        wall: started.elapsed(),
        results,
        schedule: Schedule {
            stopped: exec.stopper.outcome(),
            ..schedule.clone()
        },
        date: Some(humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()),
        shards: Vec::new(),
    };
    exec.reporters.emit(&RunEvent::Finished(&record));
    record
}

/// Runs the selected trials round after round (each once, then each
/// again), until `repeat`'s rounds are done or its stopper says stop;
/// whether libtest saw a failure.
fn run_rounds(
    exec: &Arc<Execution>,
    selected: &[Planned],
    args: &Arguments,
    repeat: &Repeat,
    runs_ignored: bool,
) -> bool {
    let runnable = |p: &&Planned| p.skip.is_none() || runs_ignored;
    // Nothing to repeat: one round reports the ignored ones.
    let rounds = match selected.iter().filter(runnable).count() {
        0 => 1,
        _ => repeat.rounds(),
    };
    let repeating = repeat.is_repeating();
    let per_batch = u32::try_from(BATCH / selected.len().max(1))
        .unwrap_or(u32::MAX)
        .max(1);
    let mut failed = false;
    let mut round = 1;
    while round <= rounds && exec.stopper.stopped().is_none() {
        let last = rounds.min(round.saturating_add(per_batch - 1));
        let mut tests = Vec::new();
        for r in round..=last {
            // An ignored trial is reported once, not once per round.
            let trials = selected.iter().filter(|p| r == 1 || runnable(p));
            tests.extend(trials.map(|p| libtest_trial(exec, p, repeating.then_some(r))));
        }
        failed |= libtest_mimic::run(args, tests).has_failed();
        match last.checked_add(1) {
            Some(next) => round = next,
            None => break,
        }
    }
    failed
}

/// Repetition `repetition` of a trial as libtest runs it: not started once
/// the run stopped (`--until-failure`, `--soak`).
fn libtest_trial(
    exec: &Arc<Execution>,
    planned: &Planned,
    repetition: Option<u32>,
) -> libtest_mimic::Trial {
    let name = match repetition {
        Some(n) => format!("{}#{n}", planned.trial.name),
        None => planned.trial.name.clone(),
    };
    let (exec, trial) = (exec.clone(), planned.trial.clone());
    planned.libtest(name, move || {
        if let Some(why) = exec.stopper.stopped() {
            exec.stopper.skipped();
            let reason = Some(why.to_owned());
            return Ok(Completion::Ignored { reason });
        }
        run_one(&exec, &trial, repetition)
    })
}

/// Removes the saved states and built images nobody used for a while,
/// then the least recently used beyond each one's size cap.
fn prune_cache(config: &Config) {
    for (retention, dir) in [
        (super::warm::states::RETENTION, config.states_dir()),
        (
            crate::image::RETENTION,
            crate::image::images_dir(&config.build.cache),
        ),
    ] {
        for line in retention.apply(&dir) {
            eprintln!("{line}");
        }
    }
}

/// What every trial of the run shared (empty when no guest was prepared).
fn run_info(exec: &Execution) -> RunInfo {
    let Ok(env) = exec.envs.main(&exec.config) else {
        return RunInfo::default();
    };
    RunInfo {
        image: env.image.manifest.image.clone(),
        image_key: env.image.manifest.key.clone(),
        kernel: env.image.manifest.kernel_release.clone(),
        kernel_source: env.image.manifest.kernel_source.clone(),
        ndctl_source: env.image.manifest.ndctl_source.clone(),
        accel: format!("{:?}", env.accel),
        start: if exec.config.cold { "cold" } else { "warm" }.into(),
    }
}

/// One trial (one repetition of it) on one of libtest's threads: run
/// (again, once, after an infrastructure error), recorded, reported.
fn run_one(exec: &Execution, trial: &Trial, repetition: Option<u32>) -> Result<Completion, Failed> {
    let start = Instant::now();
    let env = exec.envs.for_trial(&exec.config, trial);
    let guest = match (&env, trial.needs_test_image()) {
        (Ok(e), true) => Some((
            e.image.manifest.kernel_release.clone(),
            e.image.manifest.key.clone(),
        )),
        _ => None,
    };
    let (outcome, phases, retried) = match env {
        Err(e) => {
            let message = format!("infrastructure error: {e}");
            let outcome = TrialOutcome::Error {
                message,
                evidence: None,
            };
            (outcome, Vec::new(), None)
        }
        Ok(env) => watched(exec, &env, trial, repetition, start),
    };
    let known = trial
        .case
        .spec
        .known_failures
        .entries_for(&exec.config.guest, &trial.topology.name);
    let Settled {
        status,
        evidence,
        message,
        note,
        failure,
    } = settle(outcome, &known);
    let why_known = match &note {
        Some(Note::KnownFailure(reason)) => Some(reason.clone()),
        _ => None,
    };
    let result = TrialResult {
        name: trial.name.clone(),
        topology: trial.topology.name.clone(),
        modes: trial.case.spec.modes.clone(),
        note: note.or(retried),
        failure,
        status,
        duration: start.elapsed(),
        phases,
        evidence,
        message: message.clone(),
        guest,
        repetition,
    };
    exec.stopper.saw(&result);
    exec.reporters.emit(&RunEvent::TrialFinished(&result));
    if let Ok(mut r) = exec.results.lock() {
        r.push(result);
    }
    match (status, message) {
        // libtest shows it as ignored, with why: it must not fail the run.
        (Status::KnownFailure, _) => Ok(Completion::Ignored {
            reason: why_known.map(|r| format!("known failure: {r}")),
        }),
        (_, Some(m)) => Err(Failed::from(m)),
        (_, None) => Ok(Completion::Completed),
    }
}

/// A trial's outcome as it is reported.
struct Settled {
    status: Status,
    evidence: Option<PathBuf>,
    message: Option<String>,
    note: Option<Note>,
    failure: Option<Cause>,
}

impl Default for Settled {
    fn default() -> Settled {
        Settled {
            status: Status::Pass,
            evidence: None,
            message: None,
            note: None,
            failure: None,
        }
    }
}

/// A trial's outcome as it is reported: status, evidence, message, note
/// and cause, given the known failure its case declares on this guest, if
/// any.
fn settle(outcome: TrialOutcome, known: &[&KnownFailure]) -> Settled {
    match outcome {
        TrialOutcome::Pass => Settled {
            status: Status::Pass,
            note: match known::judge(known, None) {
                Judged::Stale(reason) => Some(Note::KnownFailurePassed(reason)),
                _ => None,
            },
            ..Settled::default()
        },
        TrialOutcome::Fail { failure, evidence } => {
            let judged = known::judge(known, Some(&failure.message));
            let message = with_evidence(failure.message, Some(&evidence));
            let (status, note) = match judged {
                Judged::Known(reason) => (Status::KnownFailure, Some(Note::KnownFailure(reason))),
                _ => (Status::Fail, None),
            };
            Settled {
                status,
                evidence: Some(evidence),
                message: Some(message),
                note,
                failure: Some(failure.cause),
            }
        }
        TrialOutcome::Error { message, evidence } => Settled {
            status: Status::Error,
            message: Some(with_evidence(message, evidence.as_ref())),
            evidence,
            ..Settled::default()
        },
        TrialOutcome::Skip { reason } => Settled {
            status: Status::Ignored,
            note: Some(Note::Ignored(reason)),
            ..Settled::default()
        },
    }
}

/// The trial's attempts (see [`attempt_twice`]) with their events: started,
/// each step finished, slow while it runs (a watcher thread, at each
/// multiple of [`Config::slow_after`]), an attempt failed and retried.
fn watched(
    exec: &Execution,
    env: &GuestEnv,
    trial: &Trial,
    repetition: Option<u32>,
    start: Instant,
) -> (TrialOutcome, Phases, Option<Note>) {
    let name = TrialName {
        name: trial.name.clone(),
        repetition,
    };
    exec.reporters
        .emit(&RunEvent::TrialStarted { trial: &name });
    let last_step: Mutex<Option<StepDone>> = Mutex::new(None);
    let on_step = |rec: &StepRecord| {
        let step = StepDone {
            number: rec.n,
            command: rec.command.clone(),
            exit_code: rec.exit_code,
            duration: rec.duration,
        };
        exec.reporters.emit(&RunEvent::StepFinished {
            trial: &name,
            step: &step,
        });
        *last_step.lock().unwrap_or_else(|e| e.into_inner()) = Some(step);
    };
    let retrying = |message: &str| {
        exec.reporters.emit(&RunEvent::AttemptFailed {
            trial: &name,
            message,
        })
    };
    let (done, finished) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|scope| {
        let (name, last_step) = (&name, &last_step);
        scope.spawn(move || {
            let every = exec
                .config
                .slow_after
                .max(std::time::Duration::from_millis(100));
            let mut next = every;
            loop {
                let left = next.saturating_sub(start.elapsed());
                match finished.recv_timeout(left) {
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                        let last = last_step.lock().unwrap_or_else(|e| e.into_inner()).clone();
                        exec.reporters.emit(&RunEvent::TrialSlow {
                            trial: name,
                            elapsed: start.elapsed(),
                            last_step: last.as_ref(),
                        });
                        // The next multiple of `every` still ahead: a
                        // report held up (the reporters busy while an
                        // image builds) is one line, not a burst of them.
                        next = next_report(start.elapsed(), every);
                    }
                    _ => break,
                }
            }
        });
        let attempts = Attempts {
            on_step: &on_step,
            retrying: &retrying,
        };
        let outcome = attempt_twice(&exec.config, env, trial, repetition, attempts);
        drop(done);
        outcome
    })
}

/// When the next SLOW report is due: the first multiple of `every` after
/// `elapsed`.
fn next_report(elapsed: std::time::Duration, every: std::time::Duration) -> std::time::Duration {
    let periods = (elapsed.as_nanos() / every.as_nanos().max(1)) as u32;
    every * (periods + 1)
}

/// Who hears of a trial's attempts: each step as it ends, and an attempt
/// that failed and is retried.
struct Attempts<'a> {
    on_step: &'a trial::OnStep<'a>,
    retrying: &'a dyn Fn(&str),
}

/// The trial, and once more after an infrastructure error (QEMU or the
/// host failed, not the kernel); the first attempt's error is kept as a
/// note.
fn attempt_twice(
    config: &Config,
    env: &GuestEnv,
    trial: &Trial,
    repetition: Option<u32>,
    hear: Attempts<'_>,
) -> (TrialOutcome, Phases, Option<Note>) {
    let state = || warm::state_for(config, env, trial);
    let attempt = || trial::run(config, env, trial, repetition, state, hear.on_step);
    match attempt() {
        (TrialOutcome::Error { message, evidence }, _) => {
            (hear.retrying)(&message);
            let first = message.lines().next().unwrap_or_default().to_owned();
            let at = evidence
                .map(|p| format!(" ({})", p.display()))
                .unwrap_or_default();
            let (outcome, phases) = attempt();
            (
                outcome,
                phases,
                Some(Note::RetriedAfter(format!("{first}{at}"))),
            )
        }
        (outcome, phases) => (outcome, phases, None),
    }
}

fn with_evidence(message: String, evidence: Option<&std::path::PathBuf>) -> String {
    match evidence {
        Some(p) => format!("{message}\nevidence: {}", p.display()),
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::next_report;
    use std::time::Duration;

    #[test]
    fn a_late_slow_report_is_followed_by_the_next_period_not_a_burst() {
        let every = Duration::from_secs(3);
        assert_eq!(
            next_report(Duration::from_millis(3_010), every),
            Duration::from_secs(6)
        );
        // Held up for 27 s: the next report is at 33 s, not at 6, 9, ... at once.
        assert_eq!(
            next_report(Duration::from_millis(30_500), every),
            Duration::from_secs(33)
        );
        assert_eq!(next_report(Duration::ZERO, every), every);
    }
}
