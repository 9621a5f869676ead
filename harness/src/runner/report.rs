//! Per-trial results, the summary table, and exit codes.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::{run_case, CaseOutcome, Shared};
use crate::suite::{Mode, Trial};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Pass,
    Fail,
    Error,
    /// Marked `ignored` in its case: shown with the reason, never a pass.
    Ignored,
}

impl Status {
    pub fn word(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "FAIL",
            Status::Error => "ERROR",
            Status::Ignored => "ignored",
        }
    }
}

#[derive(Clone, Debug)]
pub struct TrialResult {
    pub name: String,
    pub topology: String,
    pub modes: Vec<Mode>,
    /// Why an ignored case is ignored.
    pub note: Option<String>,
    pub status: Status,
    pub duration: Duration,
    pub evidence: Option<PathBuf>,
    /// Why it failed or errored, with its evidence folder.
    pub message: Option<String>,
    /// Where the (last attempt's) time went, phase by phase.
    pub phases: super::case::Phases,
    /// The kernel release and image key it ran on, when not the run's
    /// (nfit_test trials and ndctl's own tests run on the image that builds
    /// nfit_test).
    pub guest: Option<(String, String)>,
}

/// The libtest-mimic runner of one trial.
pub fn run_one(shared: &Shared, trial: &Trial) -> Result<(), libtest_mimic::Failed> {
    let start = Instant::now();
    let mut retried = None;
    let mut skipped = None;
    let env = shared.env_for(trial);
    let guest = match (&env, trial.needs_test_image()) {
        (Ok(e), true) => Some((
            e.image.manifest.kernel_release.clone(),
            e.image.manifest.key.clone(),
        )),
        _ => None,
    };
    let (outcome, phases) = match env {
        Err(e) => (
            CaseOutcome::Error {
                message: format!("infrastructure error: {e}"),
                evidence: None,
            },
            Vec::new(),
        ),
        Ok(env) => match run_case(&shared.config, &env, trial) {
            // QEMU or the host failed, not the kernel: once more, and the
            // first attempt stays on record.
            (CaseOutcome::Error { message, evidence }, _) => {
                let first = message.lines().next().unwrap_or_default().to_owned();
                let at = evidence
                    .map(|p| format!(" ({})", p.display()))
                    .unwrap_or_default();
                retried = Some(format!("retried after: {first}{at}"));
                run_case(&shared.config, &env, trial)
            }
            other => other,
        },
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
        CaseOutcome::Skip { reason } => {
            skipped = Some(reason);
            (Status::Ignored, None, Ok(()))
        }
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
        message: verdict.as_ref().err().cloned(),
        guest,
    };
    // One line per trial as it ends (libtest's own lines go to a log file).
    if shared.progress.load(std::sync::atomic::Ordering::Relaxed) {
        use std::io::Write;
        let line = progress_line(&result);
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(line.as_bytes());
        let _ = out.flush();
    }
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

impl TrialResult {
    /// The first attempt's infrastructure error, when the trial was retried.
    pub fn retried_after(&self) -> Option<&str> {
        self.note
            .as_deref()
            .and_then(|n| n.strip_prefix("retried after: "))
    }
}

/// An ignored trial the filter selected, for the summary.
/// `why` overrides the case's own reason (the run cannot give the trial
/// the guest it needs).
pub fn ignored(trial: &Trial, why: Option<String>) -> TrialResult {
    TrialResult {
        name: trial.name.clone(),
        topology: trial.topology.name.clone(),
        modes: trial.case.spec.modes.clone(),
        note: why.or_else(|| trial.case.spec.ignored.clone()),
        status: Status::Ignored,
        duration: Duration::ZERO,
        phases: Vec::new(),
        evidence: None,
        message: None,
        guest: None,
    }
}

/// `pass     12.3s  suite::case::topology`, with the evidence folder of a
/// failure or the reason an ignored trial is ignored.
pub fn progress_line(r: &TrialResult) -> String {
    let mut tail = String::new();
    if let Some(p) = &r.evidence {
        tail.push_str(&format!("  {}", p.display()));
    }
    if let Some(note) = &r.note {
        tail.push_str(&format!("  ({})", note.trim()));
    }
    let time = if r.status == Status::Ignored {
        "      -".to_owned()
    } else {
        format!("{:>6.1}s", r.duration.as_secs_f64())
    };
    format!("  {:<7} {time}  {}{tail}\n", r.status.word(), r.name)
}

/// The failure messages, libtest style, before the summary.
pub fn failures(results: &[TrialResult]) -> String {
    let mut out = String::new();
    let mut failed: Vec<&TrialResult> = results.iter().filter(|r| r.message.is_some()).collect();
    failed.sort_by(|a, b| a.name.cmp(&b.name));
    for r in failed {
        out.push_str(&format!(
            "\n---- {} ----\n{}\n",
            r.name,
            r.message.as_deref().unwrap_or_default().trim_end()
        ));
    }
    out
}

/// What a summary table groups trials by.
type Grouping = dyn Fn(&TrialResult) -> Vec<String>;

/// The summary: one line per trial, counts per topology and per mode, the
/// slowest trials, and the totals.
pub fn summary(results: &[TrialResult], wall: Duration) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if results.is_empty() {
        return out;
    }
    let mut sorted = results.to_vec();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let _ = writeln!(out, "\nndharness summary");
    for r in &sorted {
        out.push_str(&progress_line(r));
    }
    let by_topology = |r: &TrialResult| vec![r.topology.clone()];
    let by_mode = |r: &TrialResult| r.modes.iter().map(|m| m.to_string()).collect();
    let groups: [(&str, &Grouping); 2] = [("topology", &by_topology), ("mode", &by_mode)];
    for (title, key) in &groups {
        let mut table: std::collections::BTreeMap<String, [usize; 4]> = Default::default();
        for r in results {
            for k in key(r) {
                table.entry(k).or_default()[r.status as usize] += 1;
            }
        }
        if table.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "\n  {:<16} {:>5} {:>5} {:>5} {:>7}",
            format!("by {title}"),
            "pass",
            "fail",
            "error",
            "ignored"
        );
        for (k, c) in table {
            let _ = writeln!(
                out,
                "  {k:<16} {:>5} {:>5} {:>5} {:>7}",
                c[0], c[1], c[2], c[3]
            );
        }
    }
    let mut slow: Vec<&TrialResult> = results
        .iter()
        .filter(|r| r.status != Status::Ignored)
        .collect();
    slow.sort_by_key(|r| std::cmp::Reverse(r.duration));
    if slow.len() > 1 {
        let _ = writeln!(out, "\n  slowest");
        for r in slow.iter().take(5) {
            let _ = writeln!(out, "  {:>6.1}s  {}", r.duration.as_secs_f64(), r.name);
        }
    }
    out.push_str(&by_phase(results));
    let count = |s| results.iter().filter(|r| r.status == s).count();
    let total: f64 = results.iter().map(|r| r.duration.as_secs_f64()).sum();
    let _ = writeln!(
        out,
        "\n  {} passed, {} failed, {} errors, {} ignored; {:.1}s wall, {:.1}s of guest time",
        count(Status::Pass),
        count(Status::Fail),
        count(Status::Error),
        count(Status::Ignored),
        wall.as_secs_f64(),
        total
    );
    out
}

/// Where the trials' time went, summed over trials by phase (boot or
/// restore, drivers, CXL assembly, the steps, the harness's own queries at
/// checkpoints), largest first.
fn by_phase(results: &[TrialResult]) -> String {
    use std::fmt::Write;
    let mut sums: Vec<(&str, f64)> = Vec::new();
    for (name, d) in results.iter().flat_map(|r| &r.phases) {
        match sums.iter_mut().find(|(n, _)| n == name) {
            Some((_, s)) => *s += d.as_secs_f64(),
            None => sums.push((name, d.as_secs_f64())),
        }
    }
    let total: f64 = sums.iter().map(|(_, s)| s).sum();
    let mut out = String::new();
    if total <= 0.0 {
        return out;
    }
    sums.sort_by(|a, b| b.1.total_cmp(&a.1));
    let _ = writeln!(out, "\n  time by phase (all trials)");
    for (name, s) in sums.iter().filter(|(_, s)| *s >= 0.05) {
        let _ = writeln!(out, "  {s:>7.1}s {:>4.0}%  {name}", 100.0 * s / total);
    }
    out
}

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
