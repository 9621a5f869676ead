//! Reporters: consumers of the events a run emits, as cargo-nextest's are.
//! The executor ([`crate::runner::executor`]) selects, schedules and
//! retries trials and emits [`RunEvent`]s; each [`Reporter`] turns them
//! into what a person or a CI system reads: progress lines
//! ([`progress`]), the summary ([`summary`]), results.json and junit.xml
//! ([`results`], in the formats of [`json`] and [`junit`]), report.html
//! ([`html`]), KernelCI's KCIDB ([`kcidb`]). Another format is another reporter, not an edit of the
//! executor.

pub mod html;
pub mod json;
pub mod junit;
pub mod kcidb;
pub mod progress;
pub mod results;
pub mod summary;

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::partition::Partition;
use super::repeat::Repeat;
use super::result::{RunInfo, TrialResult};

/// What a run tells its reporters, in this order: `Started` once; per
/// trial (per repetition) `TrialStarted`, its `StepFinished`s, `TrialSlow`
/// each time it passes another [`Config::slow_after`] while running,
/// `AttemptFailed` when an infrastructure error has it run again, then
/// `TrialFinished` (the ignored trials' after the others'); `Finished`
/// once. Trials run side by side: their events interleave.
///
/// [`Config::slow_after`]: crate::runner::Config::slow_after
pub enum RunEvent<'a> {
    /// The selected trials are about to run, `threads` guests at a time,
    /// as `schedule` says.
    Started {
        trials: usize,
        threads: usize,
        schedule: &'a Schedule,
    },
    /// A trial's guest is about to start.
    TrialStarted {
        trial: &'a TrialName,
    },
    /// A step of a running trial ended (setup steps, markers, checkpoints
    /// and reboots too).
    StepFinished {
        trial: &'a TrialName,
        step: &'a StepDone,
    },
    /// A trial has been running for `elapsed`, past the slow threshold
    /// (said again at each multiple of it); `last_step` is the last step
    /// it finished.
    TrialSlow {
        trial: &'a TrialName,
        elapsed: Duration,
        last_step: Option<&'a StepDone>,
    },
    /// An attempt of a trial ended in an infrastructure error, and the
    /// trial runs once more.
    AttemptFailed {
        trial: &'a TrialName,
        message: &'a str,
    },
    TrialFinished(&'a TrialResult),
    Finished(&'a RunRecord),
}

/// A trial as its events name it: its name and repetition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrialName {
    pub name: String,
    pub repetition: Option<u32>,
}

impl std::fmt::Display for TrialName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.repetition {
            Some(n) => write!(f, "{}#{n}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// A step as it ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepDone {
    pub number: usize,
    pub command: String,
    pub exit_code: Option<i32>,
    pub duration: Duration,
}

/// How a run chose and repeated its trials.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Schedule {
    /// `--partition`: this run is one shard of the selection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<Partition>,
    /// `--repeat`, `--until-failure`, `--soak`.
    pub repeat: Repeat,
    /// Why the repetitions stopped before their count.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
}

impl Schedule {
    /// Whether the run was a plain one: every selected trial, once.
    pub fn is_plain(&self) -> bool {
        *self == Schedule::default()
    }
}

/// A finished run: every trial's result, what they shared, the wall time
/// and the exit code.
#[derive(Clone, Debug, Default)]
pub struct RunRecord {
    pub results: Vec<TrialResult>,
    pub info: RunInfo,
    pub wall: Duration,
    pub exit_code: u8,
    pub schedule: Schedule,
    /// When it ended, RFC 3339 (none for a run that never started).
    pub date: Option<String>,
    /// The shards' runs a merged record was made of
    /// (`ndharness merge-results`); empty for a run.
    pub shards: Vec<Shard>,
}

/// One shard's run in a merged record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Shard {
    /// The results.json it was read from.
    pub source: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<Partition>,
    pub kernel: String,
    pub wall_seconds: f64,
    pub exit_code: u8,
    pub trials: usize,
}

/// `1 trial`, `2 trials`: a count and its noun.
pub fn count(n: usize, noun: &str) -> String {
    match n {
        1 => format!("1 {noun}"),
        n => format!("{n} {noun}s"),
    }
}

/// A consumer of run events. Events come from the threads that run
/// trials, one at a time.
pub trait Reporter: Send {
    fn report(&mut self, event: &RunEvent<'_>);
}

/// The reporters of one run, fed in order.
#[derive(Default)]
pub struct Reporters(Mutex<Vec<Box<dyn Reporter>>>);

impl Reporters {
    pub fn new(reporters: Vec<Box<dyn Reporter>>) -> Reporters {
        Reporters(Mutex::new(reporters))
    }

    pub fn emit(&self, event: &RunEvent<'_>) {
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for r in all.iter_mut() {
            r.report(event);
        }
    }
}
