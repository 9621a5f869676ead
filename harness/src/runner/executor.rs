//! The executor: discovers the suites, selects trials (libtest-mimic's
//! filters, `--exact`, `--skip`, `--ignored`), sizes the guests at once,
//! schedules the trials, retries an infrastructure error once, and emits a
//! [`RunEvent`] for each part of the run. It prints nothing of its own
//! about trials: reporters do ([`super::reporter`]).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use libtest_mimic::{Arguments, Failed};

use super::guest_env::{cannot_run, GuestEnvs};
use super::jobs::{default_jobs, guest_memory};
use super::reporter::{Reporter, Reporters, RunEvent, RunRecord};
use super::result::{exit_code, Phases, RunInfo, Status, TrialResult, RETRIED_AFTER};
use super::trial::{self, TrialOutcome};
use super::{snapshot, warm, Config, GuestEnv};
use crate::suite::Trial;

/// What the trials of one run share while they run.
struct Execution {
    config: Config,
    envs: GuestEnvs,
    reporters: Reporters,
    results: Mutex<Vec<TrialResult>>,
}

/// Whether a run's trials report one line each as they end (and libtest's
/// own lines go to a log file): unless listing or asked for libtest's own
/// output (`--format`, `--quiet`, `--logfile`).
pub fn shows_progress(args: &Arguments) -> bool {
    !args.list && args.format.is_none() && !args.quiet && args.logfile.is_none()
}

/// Runs the trials `args` select and reports them to `reporters`.
pub fn execute(config: Config, args: &Arguments, reporters: Vec<Box<dyn Reporter>>) -> RunRecord {
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
    if !args.list {
        prune_states(&config);
    }
    let exec = Arc::new(Execution {
        config,
        envs: GuestEnvs::default(),
        reporters: Reporters::new(reporters),
        results: Mutex::new(Vec::new()),
    });
    let started = Instant::now();
    let plan = plan(&exec, trials);
    let runs_ignored = args.ignored || args.include_ignored;
    let selected = || plan.iter().filter(|(t, _)| !args.is_filtered_out(&t.test));
    let skipped: Vec<TrialResult> = if runs_ignored {
        Vec::new()
    } else {
        selected().filter_map(|(_, s)| s.clone()).collect()
    };
    let mut libtest_args = args.clone();
    if libtest_args.test_threads.is_none() && !args.list {
        // As many guests as the cores and the memory allow.
        let guest = selected().map(|(t, _)| t.memory).max().unwrap_or(1 << 30);
        libtest_args.test_threads = Some(default_jobs(guest));
    }
    if shows_progress(args) {
        // libtest's lines carry no time: they go to a log file.
        let _ = std::fs::create_dir_all(&exec.config.runs_dir);
        let log = exec.config.runs_dir.join("libtest.log");
        libtest_args.logfile = Some(log.display().to_string());
        let trials = selected()
            .filter(|(t, _)| !t.test.has_ignored_flag() || runs_ignored)
            .count();
        let threads = libtest_args.test_threads.unwrap_or(1);
        exec.reporters.emit(&RunEvent::Started { trials, threads });
    }
    let tests = plan.into_iter().map(|(t, _)| t.test).collect();
    let conclusion = libtest_mimic::run(&libtest_args, tests);
    if args.list {
        return RunRecord::default();
    }
    let mut results = exec.results.lock().map(|r| r.clone()).unwrap_or_default();
    for r in &skipped {
        exec.reporters.emit(&RunEvent::TrialFinished(r));
    }
    results.extend(skipped);
    let record = RunRecord {
        exit_code: exit_code(&results, conclusion.has_failed()),
        info: run_info(&exec),
        wall: started.elapsed(),
        results,
    };
    exec.reporters.emit(&RunEvent::Finished(&record));
    record
}

/// A libtest trial with the guest memory its topology takes.
struct Planned {
    test: libtest_mimic::Trial,
    memory: u64,
}

/// Each libtest trial, beside the summary entry of a trial that will not
/// run (its case is ignored, or the run cannot give it its guest).
fn plan(exec: &Arc<Execution>, trials: Vec<Trial>) -> Vec<(Planned, Option<TrialResult>)> {
    trials
        .into_iter()
        .map(|trial| {
            let cannot = cannot_run(&exec.config, &trial);
            let ignored = trial.case.spec.ignored.reason_for(&exec.config.guest);
            let skip = cannot
                .or_else(|| ignored.map(str::to_owned))
                .map(|why| TrialResult::ignored(&trial, why));
            let kind = trial.topology.name.clone();
            let memory = guest_memory(&trial.topology.topology);
            let name = trial.name.clone();
            let exec = exec.clone();
            let test = libtest_mimic::Trial::test(name, move || run_one(&exec, &trial))
                .with_kind(kind)
                .with_ignored_flag(skip.is_some());
            (Planned { test, memory }, skip)
        })
        .collect()
}

/// Removes the saved states nobody used for a while, then the least
/// recently used beyond the cache's size cap.
fn prune_states(config: &Config) {
    use super::warm::states;
    let keep = std::time::Duration::from_secs(states::KEEP_DAYS * 86400);
    let (n, freed) = states::prune(&config.states_dir(), keep);
    if n > 0 {
        eprintln!(
            "removed {n} saved states unused for {} days ({:.1} GB)",
            states::KEEP_DAYS,
            freed as f64 / 1e9
        );
    }
    let cap = match states::size_cap() {
        Ok(cap) => cap,
        Err(e) => {
            eprintln!("warning: NDHARNESS_STATES_MAX: {e}; keeping the default cap");
            states::DEFAULT_CAP
        }
    };
    let (n, freed) = states::cap(&config.states_dir(), cap);
    if n > 0 {
        eprintln!(
            "removed the {n} least recently used saved states ({:.1} GB) to keep the cache under {}",
            freed as f64 / 1e9,
            crate::space::human(cap)
        );
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

/// One trial on one of libtest's threads: run (again, once, after an
/// infrastructure error), recorded, reported.
fn run_one(exec: &Execution, trial: &Trial) -> Result<(), Failed> {
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
        Ok(env) => attempt_twice(&exec.config, &env, trial),
    };
    let (status, evidence, message, skipped) = match outcome {
        TrialOutcome::Pass => (Status::Pass, None, None, None),
        TrialOutcome::Fail { message, evidence } => {
            let message = with_evidence(message, Some(&evidence));
            (Status::Fail, Some(evidence), Some(message), None)
        }
        TrialOutcome::Error { message, evidence } => {
            let message = with_evidence(message, evidence.as_ref());
            (Status::Error, evidence, Some(message), None)
        }
        TrialOutcome::Skip { reason } => (Status::Ignored, None, None, Some(reason)),
    };
    let result = TrialResult {
        name: trial.name.clone(),
        topology: trial.topology.name.clone(),
        modes: trial.case.spec.modes.clone(),
        note: skipped.or(retried),
        status,
        duration: start.elapsed(),
        phases,
        evidence,
        message: message.clone(),
        guest,
    };
    exec.reporters.emit(&RunEvent::TrialFinished(&result));
    if let Ok(mut r) = exec.results.lock() {
        r.push(result);
    }
    match message {
        Some(m) => Err(Failed::from(m)),
        None => Ok(()),
    }
}

/// The trial, and once more after an infrastructure error (QEMU or the
/// host failed, not the kernel); the first attempt's error is kept as a
/// note.
fn attempt_twice(
    config: &Config,
    env: &GuestEnv,
    trial: &Trial,
) -> (TrialOutcome, Phases, Option<String>) {
    let attempt = || trial::run(config, env, trial, || warm::state_for(config, env, trial));
    match attempt() {
        (TrialOutcome::Error { message, evidence }, _) => {
            let first = message.lines().next().unwrap_or_default().to_owned();
            let at = evidence
                .map(|p| format!(" ({})", p.display()))
                .unwrap_or_default();
            let (outcome, phases) = attempt();
            (outcome, phases, Some(format!("{RETRIED_AFTER}{first}{at}")))
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
