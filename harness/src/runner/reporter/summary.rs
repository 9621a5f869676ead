//! The run's summary, printed when every trial has ended: one line per
//! trial, counts per topology and per mode, the slowest trials, the time by
//! phase, and the totals.

use std::time::Duration;

use super::progress::progress_line;
use super::{Reporter, RunEvent};
use crate::runner::result::{Status, TrialResult};

/// Prints [`summary`] when the run ends.
pub struct SummaryReporter;

impl Reporter for SummaryReporter {
    fn report(&mut self, event: &RunEvent<'_>) {
        if let RunEvent::Finished(run) = event {
            print!("{}", summary(&run.results, run.wall));
        }
    }
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
