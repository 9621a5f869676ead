//! Runs trials: one case on one topology, in its own guest, judged by its
//! expectations, its kernel log and its snapshots.
//!
//! The [`executor`] selects and schedules trials (libtest-mimic supplies
//! the conventions: `--list`, filters, `--exact`, `--test-threads`,
//! `--ignored`; listing parses the suites and boots nothing), retries an
//! infrastructure error once and emits events; [`reporter`]s turn them
//! into progress lines, the summary, results.json, junit.xml, report.html
//! and (asked for) a KCIDB file. A
//! [`trial`] runs the trial state machine in its guest, started cold or
//! from a saved state ([`start`], made and found by [`warm`]). A run may
//! be one shard of the selection ([`partition`]) and may repeat its trials
//! ([`repeat`], added up per trial by [`tally`]); [`merge`] makes one
//! record of several shards' results.

pub mod bench;
pub mod compare;
mod config;
pub mod evidence;
pub mod executor;
pub mod filterset;
mod guest_env;
pub mod jobs;
pub mod laps;
pub mod merge;
pub mod partition;
pub mod repeat;
pub mod reporter;
pub mod result;
mod selection;
mod snapshot;
pub mod start;
pub mod tally;
pub mod trial;
pub mod warm;

use std::process::ExitCode;

pub use config::{Config, BOOT_TIMEOUT, SLOW_AFTER};
pub use guest_env::{for_topology, prepare, GuestEnv};
pub use reporter::{Reporter, RunEvent, RunRecord, Schedule};
pub use result::{Status, TrialResult};

/// What a run is asked besides its trials: its shard and repetitions, the
/// run report.html compares with.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub schedule: Schedule,
    /// `--previous FILE`, read before the run (default: the results
    /// folder's previous.json).
    pub previous: Option<reporter::html::Previous>,
    /// `--kcidb FILE`: the run in KCIDB's format, with this origin.
    pub kcidb: Option<(std::path::PathBuf, reporter::kcidb::Origin)>,
}

/// The reporters of a run at a terminal or in a CI log: progress lines
/// (unless libtest's own output is asked for), the summary, and
/// results.json, junit.xml and report.html in the config's results folder
/// (and a KCIDB file when asked).
pub fn default_reporters(
    config: &Config,
    args: &libtest_mimic::Arguments,
    options: &RunOptions,
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
        reporters.push(Box::new(reporter::html::HtmlReporter {
            dir: config.results_dir.clone(),
            previous: options.previous.clone(),
        }));
        if let Some((file, origin)) = &options.kcidb {
            reporters.push(Box::new(reporter::kcidb::KcidbWriter {
                file: file.clone(),
                origin: origin.clone(),
            }));
        }
    }
    reporters
}

/// Runs the selected trials once each with the default reporters and keeps
/// what they came to.
pub fn execute(config: Config, args: &libtest_mimic::Arguments) -> RunRecord {
    execute_with(config, args, &RunOptions::default())
}

/// Runs the selected trials as `options` say, with the default reporters.
pub fn execute_with(
    config: Config,
    args: &libtest_mimic::Arguments,
    options: &RunOptions,
) -> RunRecord {
    let reporters = default_reporters(&config, args, options);
    executor::execute(config, args, &options.schedule, reporters)
}

/// Discovers the suites and runs the selected trials; the exit code is 0 when
/// all passed, 1 on any conformance failure, 2 on infrastructure errors only.
pub fn run(config: Config, args: &libtest_mimic::Arguments) -> ExitCode {
    ExitCode::from(execute(config, args).exit_code)
}
