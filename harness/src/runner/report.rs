//! Per-trial results, the summary table, and exit codes.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use super::{run_case, CaseOutcome, Shared};
use crate::suite::Trial;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Pass,
    Fail,
    Error,
}

impl Status {
    fn word(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "FAIL",
            Status::Error => "ERROR",
        }
    }
}

#[derive(Clone, Debug)]
pub struct TrialResult {
    pub name: String,
    pub status: Status,
    pub duration: Duration,
    pub evidence: Option<PathBuf>,
}

/// The libtest-mimic runner of one trial.
pub fn run_one(shared: &Shared, trial: &Trial) -> Result<(), libtest_mimic::Failed> {
    let start = Instant::now();
    let outcome = match shared.env() {
        Err(e) => CaseOutcome::Error {
            message: format!("infrastructure error: {e}"),
            evidence: None,
        },
        Ok(env) => run_case(&shared.config, &env, trial),
    };
    let (status, evidence, verdict) = match outcome {
        CaseOutcome::Pass => (Status::Pass, None, Ok(())),
        CaseOutcome::Fail { message, evidence } => (
            Status::Fail,
            Some(evidence.clone()),
            Err(with_evidence(message, Some(evidence))),
        ),
        CaseOutcome::Error { message, evidence } => (
            Status::Error,
            evidence.clone(),
            Err(with_evidence(message, evidence)),
        ),
    };
    let result = TrialResult {
        name: trial.name.clone(),
        status,
        duration: start.elapsed(),
        evidence,
    };

    if let Ok(mut r) = shared.results.lock() {
        r.push(result);
    }
    verdict.map_err(libtest_mimic::Failed::from)
}

fn with_evidence(message: String, evidence: Option<PathBuf>) -> String {
    match evidence {
        Some(p) => format!("{message}\nevidence: {}", p.display()),
        None => message,
    }
}

pub fn print_summary(results: &[TrialResult]) {
    if results.is_empty() {
        return;
    }
    let mut sorted = results.to_vec();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    println!("\nndharness summary");
    for r in &sorted {
        let ev = r
            .evidence
            .as_ref()
            .map(|p| format!("  {}", p.display()))
            .unwrap_or_default();
        println!(
            "  {:<5} {:>7.1}s  {}{ev}",
            r.status.word(),
            r.duration.as_secs_f64(),
            r.name
        );
    }
    let count = |s| results.iter().filter(|r| r.status == s).count();
    let total: f64 = results.iter().map(|r| r.duration.as_secs_f64()).sum();
    println!(
        "  {} passed, {} failed, {} errors; {:.1}s of guest time",
        count(Status::Pass),
        count(Status::Fail),
        count(Status::Error),
        total
    );
}

pub fn exit_code(results: &[TrialResult], libtest_failed: bool) -> ExitCode {
    if results.iter().any(|r| r.status == Status::Fail) {
        ExitCode::from(1)
    } else if results.iter().any(|r| r.status == Status::Error) {
        ExitCode::from(2)
    } else if libtest_failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
