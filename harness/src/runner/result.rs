//! What a trial and a run came to: a trial's [`Status`] and its
//! [`TrialResult`] (the record every reporter reads), what every trial of a
//! run shares ([`RunInfo`]), and the run's exit code.

use std::borrow::Cow;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::suite::{Mode, Trial};

/// As results.json says it: `pass`, `fail`, `error`, `ignored`,
/// `known-failure`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    Error,
    /// Marked `ignored` in its case: shown with the reason, never a pass.
    Ignored,
    /// Failed as a `known_failures:` entry of its case says: shown with
    /// the reason, never a pass, and not a failure of the run.
    #[serde(rename = "known-failure")]
    KnownFailure,
}

impl Status {
    pub fn word(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "FAIL",
            Status::Error => "ERROR",
            Status::Ignored => "ignored",
            Status::KnownFailure => "known",
        }
    }
}

/// What a failing trial failed on: results.json's `failure` (`kind` and
/// its fields), the reporters' grouping; the words are in the message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Cause {
    /// Step `step` ended otherwise than its case expects (exit code,
    /// stdout, stderr).
    Expectation { step: usize, command: String },
    /// Step `step` did not finish within its timeout.
    Timeout { step: usize, command: String },
    /// The kernel reported a problem not declared: its title (`WARNING`,
    /// `BUG`, `panic`, ...), its first line, and where.
    KernelReport {
        title: String,
        line: String,
        context: String,
    },
    /// The guest died under the kernel (a panic, a reported oops that
    /// hung the command) while doing `during`.
    GuestDied { during: String },
    /// Preparing the guest failed: drivers, region assembly, a reboot the
    /// guest cannot have, the layout's listing.
    Setup { what: String },
    /// These snapshots differ from what the trial produced.
    Snapshot { names: Vec<String> },
    /// A power-cut step: `violations` of the `judged` crash points broke
    /// consistency.
    PowerCut {
        step: usize,
        violations: usize,
        judged: usize,
    },
}

/// A verdict on the kernel or ndctl: its cause, and the message a person
/// reads (with the evidence the cause points at).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub cause: Cause,
    pub message: String,
}

impl Failure {
    pub fn new(cause: Cause, message: impl Into<String>) -> Failure {
        Failure {
            cause,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// What a trial's result says beside its status, one thing at a time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Note {
    /// Why it did not run (its case's `ignored:`, the guest it needs, a
    /// step's skip code).
    Ignored(String),
    /// The reason of the known failure it failed as.
    KnownFailure(String),
    /// It passed where its case expects this known failure (stale?).
    KnownFailurePassed(String),
    /// Its first attempt's infrastructure error; it ran once more.
    RetriedAfter(String),
}

impl Note {
    /// The note's own text, without what kind of note it is.
    pub fn text(&self) -> &str {
        match self {
            Note::Ignored(t)
            | Note::KnownFailure(t)
            | Note::KnownFailurePassed(t)
            | Note::RetriedAfter(t) => t,
        }
    }
}

/// As a person reads it: `retried after: ...`, `known failure passed:
/// ...`, or the reason alone.
impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Note::Ignored(t) | Note::KnownFailure(t) => f.write_str(t),
            Note::KnownFailurePassed(t) => write!(f, "known failure passed: {t}"),
            Note::RetriedAfter(t) => write!(f, "retried after: {t}"),
        }
    }
}

/// Where a trial's wall time went: (phase, time), in first-seen order.
/// Phases are named in code; a record read back from results.json owns
/// its names.
pub type Phases = Vec<(Cow<'static, str>, Duration)>;

#[derive(Clone, Debug)]
pub struct TrialResult {
    pub name: String,
    pub topology: String,
    pub modes: Vec<Mode>,
    /// Why an ignored case is ignored, the known failure's reason, or the
    /// first attempt's error of a retried trial.
    pub note: Option<Note>,
    /// What a failing (or known-failing) trial failed on.
    pub failure: Option<Cause>,
    pub status: Status,
    pub duration: Duration,
    pub evidence: Option<PathBuf>,
    /// Why it failed or errored, with its evidence folder.
    pub message: Option<String>,
    /// Where the (last attempt's) time went, phase by phase.
    pub phases: Phases,
    /// The kernel release and image key it ran on, when not the run's
    /// (nfit_test trials and ndctl's own tests run on the image that builds
    /// nfit_test).
    pub guest: Option<(String, String)>,
    /// Which run of the trial this is (1, 2, ...) when the run repeats its
    /// trials (`--repeat`, `--until-failure`, `--soak`).
    pub repetition: Option<u32>,
}

impl TrialResult {
    /// The first attempt's infrastructure error, when the trial was retried.
    pub fn retried_after(&self) -> Option<&str> {
        match &self.note {
            Some(Note::RetriedAfter(t)) => Some(t),
            _ => None,
        }
    }

    /// The reason of the known failure this trial was expected to fail
    /// with, when it passed instead.
    pub fn stale_known_failure(&self) -> Option<&str> {
        match &self.note {
            Some(Note::KnownFailurePassed(t)) => Some(t),
            _ => None,
        }
    }

    /// Why it did not run, or the known failure's reason.
    pub fn reason(&self) -> Option<&str> {
        match &self.note {
            Some(Note::Ignored(t) | Note::KnownFailure(t)) => Some(t),
            _ => None,
        }
    }

    /// The trial's name, with `#N` when it is the Nth repetition.
    pub fn display_name(&self) -> Cow<'_, str> {
        match self.repetition {
            Some(n) => Cow::Owned(format!("{}#{n}", self.name)),
            None => Cow::Borrowed(&self.name),
        }
    }

    /// An ignored trial the filter selected, for the summary: `why` it
    /// does not run (its case's reason on this guest, or the run cannot
    /// give it the guest it needs).
    pub fn ignored(trial: &Trial, why: String) -> TrialResult {
        TrialResult {
            name: trial.name.clone(),
            topology: trial.topology.name.clone(),
            modes: trial.case.spec.modes.clone(),
            note: Some(Note::Ignored(why)),
            failure: None,
            status: Status::Ignored,
            duration: Duration::ZERO,
            phases: Vec::new(),
            evidence: None,
            message: None,
            guest: None,
            repetition: None,
        }
    }
}

/// What every trial of a run shares.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunInfo {
    pub image: String,
    pub image_key: String,
    pub kernel: String,
    pub kernel_source: String,
    pub ndctl_source: String,
    pub accel: String,
    /// `warm` (guests restored from saved states where the topology
    /// allows) or `cold` (every guest booted).
    pub start: String,
}

/// The exit code of a run whose filters matched no trial (`--no-tests
/// fail`, the default): a gate with a typo must not pass having run
/// nothing.
pub const NO_TRIAL_MATCHED: u8 = 3;

/// What a run that matched no trial exits with (`--no-tests`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum NoTests {
    /// Exit 3.
    #[default]
    Fail,
    /// Say so, exit 0.
    Warn,
    /// Exit 0.
    Pass,
}

/// 1 on any conformance failure (or a libtest failure), else 2 on any
/// infrastructure error, else 0.
pub fn exit_code(results: &[TrialResult], libtest_failed: bool) -> u8 {
    if results.iter().any(|r| r.status == Status::Fail) {
        1
    } else if results.iter().any(|r| r.status == Status::Error) {
        2
    } else if libtest_failed {
        1
    } else {
        0
    }
}

/// A trial result for unit tests: 1.5 s, a message and an evidence folder
/// when it did not pass.
#[cfg(test)]
pub(crate) fn sample(name: &str, status: Status) -> TrialResult {
    let failed = matches!(status, Status::Fail | Status::Error);
    TrialResult {
        name: name.into(),
        topology: name.rsplit("::").next().unwrap_or_default().into(),
        modes: vec![],
        note: None,
        failure: (status == Status::Fail).then(|| Cause::Expectation {
            step: 2,
            command: "x".into(),
        }),
        status,
        duration: Duration::from_millis(1500),
        phases: Vec::new(),
        evidence: failed.then(|| PathBuf::from("/runs/x")),
        message: failed.then(|| format!("{name} went {}", status.word())),
        guest: None,
        repetition: None,
    }
}
