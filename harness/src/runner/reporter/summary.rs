//! The run's summary, printed when every trial has ended: one line per
//! trial (with its pass rate when the run repeated its trials), counts per
//! topology and per mode, the slowest trials, the time by phase, and the
//! totals.

use std::fmt::Write;

use super::progress::progress_line;
use super::{Reporter, RunEvent, RunRecord};
use crate::runner::result::{Status, TrialResult};
use crate::runner::tally::{tally, RepeatedOutcome};

/// Prints [`summary`] when the run ends.
pub struct SummaryReporter;

impl Reporter for SummaryReporter {
    fn report(&mut self, event: &RunEvent<'_>) {
        if let RunEvent::Finished(run) = event {
            print!("{}", summary(run));
        }
    }
}

/// What a summary table groups trials by.
type Grouping = dyn Fn(&TrialResult) -> Vec<String>;

/// The summary: one line per trial, counts per topology and per mode, the
/// slowest trials, and the totals.
pub fn summary(run: &RunRecord) -> String {
    let results = &run.results;
    let mut out = String::new();
    if results.is_empty() {
        return out;
    }
    match run.schedule.repeat.describe() {
        Some(how) => {
            let _ = writeln!(out, "\nndharness summary: trials run {how}");
            out.push_str(&pass_rates(results));
        }
        None => {
            let mut sorted = results.to_vec();
            sorted.sort_by(|a, b| a.name.cmp(&b.name));
            let _ = writeln!(out, "\nndharness summary");
            for r in &sorted {
                out.push_str(&progress_line(r));
            }
        }
    }
    let by_topology = |r: &TrialResult| vec![r.topology.clone()];
    let by_mode = |r: &TrialResult| r.modes.iter().map(|m| m.to_string()).collect();
    let groups: [(&str, &Grouping); 2] = [("topology", &by_topology), ("mode", &by_mode)];
    for (title, key) in &groups {
        let mut table: std::collections::BTreeMap<String, [usize; 5]> = Default::default();
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
            "\n  {:<16} {:>5} {:>5} {:>5} {:>7} {:>5}",
            format!("by {title}"),
            "pass",
            "fail",
            "error",
            "ignored",
            "known"
        );
        for (k, c) in table {
            let _ = writeln!(
                out,
                "  {k:<16} {:>5} {:>5} {:>5} {:>7} {:>5}",
                c[0], c[1], c[2], c[3], c[4]
            );
        }
    }
    out.push_str(&known_failures(results));
    let mut slow: Vec<&TrialResult> = results
        .iter()
        .filter(|r| r.status != Status::Ignored)
        .collect();
    slow.sort_by_key(|r| std::cmp::Reverse(r.duration));
    if slow.len() > 1 {
        let _ = writeln!(out, "\n  slowest");
        for r in slow.iter().take(5) {
            let _ = writeln!(
                out,
                "  {:>6.1}s  {}",
                r.duration.as_secs_f64(),
                r.display_name()
            );
        }
    }
    out.push_str(&by_phase(results));
    out.push_str(&totals(run));
    out
}

/// The known failures with their reasons, and the trials that passed
/// where their case expects a known failure (a stale entry).
fn known_failures(results: &[TrialResult]) -> String {
    let mut out = String::new();
    let known: Vec<&TrialResult> = results
        .iter()
        .filter(|r| r.status == Status::KnownFailure)
        .collect();
    if !known.is_empty() {
        let _ = writeln!(out, "\n  known failures (reported, not failing the run)");
        for r in known {
            let reason = r.reason().unwrap_or_default();
            let _ = writeln!(out, "  {}: {reason}", r.display_name());
        }
    }
    let stale: Vec<(&TrialResult, &str)> = results
        .iter()
        .filter_map(|r| Some((r, r.stale_known_failure()?)))
        .collect();
    if !stale.is_empty() {
        let _ = writeln!(out, "\n  known failures that passed (is the entry stale?)");
        for (r, reason) in stale {
            let _ = writeln!(out, "  {}: {reason}", r.display_name());
        }
    }
    out
}

/// One line per trial: its outcome over its runs, passed of run, mean
/// time, and the failing repetitions with their evidence folders.
fn pass_rates(results: &[TrialResult]) -> String {
    let mut out = String::new();
    for t in tally(results) {
        let mut tail = String::new();
        if !t.failing.is_empty() {
            let failing: Vec<String> = t.failing.iter().map(|n| format!("#{n}")).collect();
            let _ = write!(tail, "  failed: {}", failing.join(" "));
        }
        let time = match t.outcome() {
            RepeatedOutcome::Ignored => "      -".to_owned(),
            _ => format!("{:>6.1}s", t.mean.as_secs_f64()),
        };
        let _ = writeln!(
            out,
            "  {:<7} {:>7} {time}  {}{tail}",
            t.outcome().word(),
            t.fraction(),
            t.name
        );
    }
    let mut failed: Vec<&TrialResult> = results.iter().filter(|r| r.evidence.is_some()).collect();
    failed.sort_by(|a, b| (&a.name, a.repetition).cmp(&(&b.name, b.repetition)));
    for (i, r) in failed.into_iter().enumerate() {
        if i == 10 {
            let _ = writeln!(out, "  (more evidence folders in results.json)");
            break;
        }
        if let Some(p) = &r.evidence {
            let _ = writeln!(out, "  {}  {}", r.display_name(), p.display());
        }
    }
    out
}

/// The counts (of runs, when the run repeated its trials), how the
/// repetitions ended, wall and guest time.
fn totals(run: &RunRecord) -> String {
    let results = &run.results;
    let mut out = String::new();
    if run.schedule.repeat.is_repeating() {
        let tallies = tally(results);
        let count = |o| tallies.iter().filter(|t| t.outcome() == o).count();
        let _ = writeln!(
            out,
            "\n  {}: {} passed every run, {} flaky, {} failed every run, {} errored",
            super::count(tallies.len(), "trial"),
            count(RepeatedOutcome::Pass),
            count(RepeatedOutcome::Flaky),
            count(RepeatedOutcome::Fail),
            count(RepeatedOutcome::Error),
        );
    }
    if let Some(stopped) = &run.schedule.stopped {
        let _ = writeln!(out, "  {stopped}");
    }
    let count = |s| results.iter().filter(|r| r.status == s).count();
    let total: f64 = results.iter().map(|r| r.duration.as_secs_f64()).sum();
    let _ = writeln!(
        out,
        "\n  {} passed, {} failed, {} errors, {} ignored{}; {:.1}s wall, {:.1}s of guest time",
        count(Status::Pass),
        count(Status::Fail),
        count(Status::Error),
        count(Status::Ignored),
        match count(Status::KnownFailure) {
            0 => String::new(),
            n => format!(", {n} known failures"),
        },
        run.wall.as_secs_f64(),
        total
    );
    out
}

/// Where the trials' time went, summed over trials by phase (boot or
/// restore, drivers, CXL assembly, the steps, the harness's own queries at
/// checkpoints), largest first.
fn by_phase(results: &[TrialResult]) -> String {
    let mut sums: Vec<(&str, f64)> = Vec::new();
    for (name, d) in results.iter().flat_map(|r| &r.phases) {
        let name = name.as_ref();
        match sums.iter_mut().find(|(n, _)| *n == name) {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::runner::result::sample;

    #[test]
    fn the_summary_sums_phases_over_trials() {
        let mut a = sample("s::c::cxl-x2", Status::Pass);
        a.duration = Duration::from_secs(4);
        a.phases = vec![
            ("restore".into(), Duration::from_millis(250)),
            ("steps".into(), Duration::from_millis(3750)),
        ];
        let mut b = sample("s::d::cxl-x2", Status::Pass);
        b.phases = vec![
            ("boot".into(), Duration::from_secs(5)),
            ("steps".into(), Duration::from_secs(1)),
        ];
        b.duration = Duration::from_secs(6);
        let run = RunRecord {
            results: vec![a, b],
            wall: Duration::from_secs(9),
            ..Default::default()
        };
        let s = summary(&run);
        let table = s.split("time by phase").nth(1).expect("a phase table");
        let lines: Vec<&str> = table.lines().skip(1).take(3).collect();
        // Summed over trials, largest first, with their share.
        assert!(lines[0].ends_with("5.0s   50%  boot"), "{table}");
        assert!(lines[1].ends_with("4.8s   48%  steps"), "{table}");
        assert!(lines[2].ends_with("0.2s    2%  restore"), "{table}");
    }

    #[test]
    fn known_failures_and_stale_entries_are_listed_and_do_not_fail_the_run() {
        let mut known = sample("p::create::cxl-x2", Status::KnownFailure);
        known.note = Some(crate::runner::result::Note::KnownFailure(
            "a cut between DIMMs".into(),
        ));
        let mut stale = sample("p::create::cxl-x6", Status::Pass);
        stale.note = Some(crate::runner::result::Note::KnownFailurePassed(
            "a cut between DIMMs".into(),
        ));
        let results = vec![known, stale];
        let run = RunRecord {
            results: results.clone(),
            ..Default::default()
        };
        let s = summary(&run);
        let listed = s.split("known failures (reported").nth(1).expect("{s}");
        assert!(
            listed.contains("p::create::cxl-x2: a cut between DIMMs"),
            "{s}"
        );
        let stale_part = s.split("known failures that passed").nth(1).expect("{s}");
        assert!(
            stale_part.contains("p::create::cxl-x6: a cut between DIMMs"),
            "{s}"
        );
        assert!(
            s.contains("1 passed, 0 failed, 0 errors, 0 ignored, 1 known failures"),
            "{s}"
        );
        assert_eq!(crate::runner::result::exit_code(&results, false), 0);
    }

    #[test]
    fn a_repeated_run_shows_pass_rates() {
        let mut results: Vec<TrialResult> = (1..=3)
            .map(|n| {
                let status = if n == 2 { Status::Fail } else { Status::Pass };
                let mut r = sample("s::flaky::nfit-1", status);
                r.repetition = Some(n);
                r
            })
            .collect();
        let mut steady = sample("s::steady::nfit-1", Status::Pass);
        steady.repetition = Some(1);
        results.push(steady);
        let mut run = RunRecord {
            results,
            ..Default::default()
        };
        run.schedule.repeat.times = Some(3);
        run.schedule.stopped = Some("stopped at the first failure, s::flaky::nfit-1#2".into());
        let s = summary(&run);
        assert!(
            s.contains("ndharness summary: trials run 3 times each\n"),
            "{s}"
        );
        assert!(
            s.contains("  FLAKY       2/3    1.5s  s::flaky::nfit-1  failed: #2\n"),
            "{s}"
        );
        assert!(
            s.contains("  pass        1/1    1.5s  s::steady::nfit-1\n"),
            "{s}"
        );
        assert!(s.contains("  s::flaky::nfit-1#2  /runs/x\n"), "{s}");
        assert!(
            s.contains("2 trials: 1 passed every run, 1 flaky, 0 failed every run"),
            "{s}"
        );
        assert!(
            s.contains("  stopped at the first failure, s::flaky::nfit-1#2\n"),
            "{s}"
        );
        assert!(s.contains("3 passed, 1 failed, 0 errors, 0 ignored"), "{s}");
    }
}
