//! Runs trials: one case on one topology, in its own guest, judged by its
//! expectations, its kernel log and its snapshots.
//!
//! The [`executor`] selects and schedules trials (libtest-mimic supplies
//! the conventions: `--list`, filters, `--exact`, `--test-threads`,
//! `--ignored`; listing parses the suites and boots nothing), retries an
//! infrastructure error once and emits events; [`reporter`]s turn them
//! into progress lines, the summary, results.json and junit.xml. A
//! [`trial`] runs the trial state machine in its guest, started cold or
//! from a saved state ([`start`], made and found by [`warm`]).

pub mod bench;
pub mod compare;
mod config;
pub mod evidence;
pub mod executor;
mod guest_env;
pub mod jobs;
mod laps;
pub mod reporter;
pub mod result;
mod snapshot;
pub mod start;
pub mod trial;
pub mod warm;

use std::process::ExitCode;

pub use config::{Config, BOOT_TIMEOUT};
pub use guest_env::{for_topology, prepare, GuestEnv};
pub use reporter::{Reporter, RunEvent, RunRecord};
pub use result::{Status, TrialResult};

/// The reporters of a run at a terminal or in a CI log: progress lines
/// (unless libtest's own output is asked for), the summary, and
/// results.json and junit.xml in the config's results folder.
pub fn default_reporters(
    config: &Config,
    args: &libtest_mimic::Arguments,
) -> Vec<Box<dyn Reporter>> {
    let mut reporters: Vec<Box<dyn Reporter>> = Vec::new();
    if executor::shows_progress(args) {
        reporters.push(Box::new(reporter::progress::ProgressReporter));
    }
    if !args.list {
        reporters.push(Box::new(reporter::summary::SummaryReporter));
        reporters.push(Box::new(reporter::results::ResultsWriter {
            dir: config.results_dir.clone(),
        }));
    }
    reporters
}

/// Runs the selected trials with the default reporters and keeps what
/// they came to.
pub fn execute(config: Config, args: &libtest_mimic::Arguments) -> RunRecord {
    let reporters = default_reporters(&config, args);
    executor::execute(config, args, reporters)
}

/// Discovers the suites and runs the selected trials; the exit code is 0 when
/// all passed, 1 on any conformance failure, 2 on infrastructure errors only.
pub fn run(config: Config, args: &libtest_mimic::Arguments) -> ExitCode {
    ExitCode::from(execute(config, args).exit_code)
}
