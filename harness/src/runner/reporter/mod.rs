//! Reporters: consumers of the events a run emits, as cargo-nextest's are.
//! The executor ([`crate::runner::executor`]) selects, schedules and
//! retries trials and emits [`RunEvent`]s; each [`Reporter`] turns them
//! into what a person or a CI system reads: progress lines
//! ([`progress`]), the summary ([`summary`]), results.json and junit.xml
//! ([`results`]). Another format is another reporter, not an edit of the
//! executor.

pub mod progress;
pub mod results;
pub mod summary;

use std::sync::Mutex;
use std::time::Duration;

use super::result::{RunInfo, TrialResult};

/// What a run tells its reporters, in this order: `Started` once, then
/// `TrialFinished` per trial as it ends (the ignored trials after the
/// others), then `Finished` once.
pub enum RunEvent<'a> {
    /// The selected trials are about to run, `threads` guests at a time.
    Started {
        trials: usize,
        threads: usize,
    },
    TrialFinished(&'a TrialResult),
    Finished(&'a RunRecord),
}

/// A finished run: every trial's result, what they shared, the wall time
/// and the exit code.
#[derive(Clone, Debug, Default)]
pub struct RunRecord {
    pub results: Vec<TrialResult>,
    pub info: RunInfo,
    pub wall: Duration,
    pub exit_code: u8,
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
