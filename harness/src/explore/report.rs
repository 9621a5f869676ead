//! What an exploration found and ran: findings (each with its invariant,
//! its minimal sequence and its case file), sequences and steps per
//! topology, steps per second, and coverage as operation x mode x
//! topology; as text and as explore.json. Also writing a finding's case
//! file, and its shrunk transcript as text (the announcement,
//! explore.json).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::coverage::Coverage;
use super::search::{Finding, FindingKey};
use super::sequence::SequenceRun;
use super::{Options, Tally};
use crate::runner::{Config, GuestEnv};

#[derive(Clone, Debug, Default, Serialize)]
pub struct TopologyReport {
    pub sequences: usize,
    pub steps: usize,
    /// Guest time spent, summed over workers.
    pub seconds: f64,
    #[serde(serialize_with = "coverage_as_list")]
    pub coverage: Coverage,
    /// Where the guests' time went (start, step, observe, judge, stop).
    #[serde(serialize_with = "phases_as_seconds")]
    pub phases: crate::runner::result::Phases,
}

fn phases_as_seconds<S: serde::Serializer>(
    phases: &crate::runner::result::Phases,
    s: S,
) -> Result<S::Ok, S::Error> {
    let list: Vec<(&str, f64)> = phases
        .iter()
        .map(|(n, d)| (n.as_ref(), d.as_secs_f64()))
        .collect();
    list.serialize(s)
}

fn coverage_as_list<S: serde::Serializer>(c: &Coverage, s: S) -> Result<S::Ok, S::Error> {
    let list: Vec<(&str, &str, usize)> = c
        .iter()
        .map(|((op, mode), n)| (op.as_str(), mode.as_str(), *n))
        .collect();
    list.serialize(s)
}

#[derive(Clone, Debug, Serialize)]
pub struct FindingReport {
    pub topology: String,
    pub invariant: String,
    /// How it broke ([`super::invariant::Violation::how`]).
    pub how: String,
    pub op: String,
    pub kernel_line: Option<String>,
    pub detail: String,
    pub seed: u64,
    pub sequence: u64,
    pub generated_steps: usize,
    pub minimal_steps: usize,
    pub shrink_runs: usize,
    /// Sequences that broke it the same way.
    pub seen: usize,
    pub case_file: PathBuf,
    pub transcript: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub seed: u64,
    pub kernel: String,
    pub budget_seconds: f64,
    pub wall_seconds: f64,
    pub topologies: BTreeMap<String, TopologyReport>,
    pub steps_per_second: f64,
    pub findings: Vec<FindingReport>,
    /// Every finding's [`label`] on each topology that saw it (a finding
    /// above is listed once, on the first).
    pub labels: Vec<String>,
    pub infrastructure_errors: Vec<String>,
    /// The finding that ended exploring before the budget
    /// ([`super::Until::NewFinding`]), by its [`label`].
    pub ended_early_by: Option<String>,
}

/// A finding as two kernels' explorations are compared: `INVARIANT (HOW)
/// at OP on TOPOLOGY` (its kernel line left out: the same bug may word it
/// otherwise).
pub fn label(key: &FindingKey, topology: &str) -> String {
    format!(
        "{} at {} on {topology}",
        broken(&key.invariant, key.how),
        key.op
    )
}

/// An invariant and how it broke: `create-keeps-its-word (refused)`.
fn broken(invariant: &str, how: &str) -> String {
    if how.is_empty() {
        invariant.to_owned()
    } else {
        format!("{invariant} ({how})")
    }
}

fn file_name(topology: &str, finding: &Finding) -> String {
    let key = &finding.key;
    format!(
        "{topology}-{}-{}-seed{}-seq{}.yaml",
        key.invariant, key.op, finding.seed, finding.index
    )
}

/// Writes the finding's case file into `out`; its path.
pub fn write_case(out: &Path, topology: &str, finding: &Finding, config: &Config) -> PathBuf {
    let path = out.join(file_name(topology, finding));
    let kernel = &config.guest.kernel;
    let _ = std::fs::write(&path, super::case_file::render(finding, topology, kernel));
    path
}

/// The shrunk sequence as it ran: each command, its exit and its kernel
/// lines.
pub fn transcript(run: &SequenceRun) -> String {
    let mut out = String::new();
    for (i, log) in run.steps.iter().enumerate() {
        let Some(command) = &log.command else {
            let _ = writeln!(out, "  {}. (skipped: {:?} has no namespace)", i + 1, log.op);
            continue;
        };
        let exit = log.exit_code.map_or("-".to_owned(), |c| c.to_string());
        let _ = writeln!(out, "  {}. $ {command}    (exit {exit})", i + 1);
        for line in log.stderr.lines().take(3) {
            let _ = writeln!(out, "       {line}");
        }
        for line in log.kernel.iter().take(5) {
            let _ = writeln!(out, "       kernel: {line}");
        }
    }
    if let Some((at, v)) = &run.violation {
        let _ = writeln!(
            out,
            "  broken at step {}: {} ({})",
            at + 1,
            v.invariant,
            v.detail
        );
    }
    out
}

/// The lines printed when a finding is new.
pub fn announce(topology: &str, finding: &Finding, path: &Path) -> String {
    format!(
        "explore: FOUND on {topology}: {} at {} (sequence {} of seed {}, {} steps shrunk to {} in {} guest runs)\n{}  case file: {}",
        broken(&finding.key.invariant, finding.key.how),
        finding.key.op,
        finding.index,
        finding.seed,
        finding.generated,
        finding.minimal.len(),
        finding.shrink_runs,
        transcript(&finding.run),
        path.display()
    )
}

pub(super) fn build(
    options: &Options,
    config: &Config,
    env: &GuestEnv,
    tally: Tally,
    wall: Duration,
) -> Report {
    let steps: usize = tally.per_topology.values().map(|t| t.steps).sum();
    let findings = tally
        .findings
        .into_iter()
        .map(|(key, (finding, topology, seen))| {
            finding_report(options, &key, &finding, topology, seen)
        })
        .collect();
    let report = Report {
        seed: options.seed,
        kernel: format!(
            "{} ({})",
            config.guest.kernel, env.image.manifest.kernel_release
        ),
        budget_seconds: options.budget.as_secs_f64(),
        wall_seconds: wall.as_secs_f64(),
        steps_per_second: steps as f64 / wall.as_secs_f64().max(1e-9),
        topologies: tally.per_topology,
        findings,
        labels: tally.labels.into_iter().collect(),
        infrastructure_errors: tally.infrastructure,
        ended_early_by: tally.ended_by,
    };
    let json = options.out.join("explore.json");
    let _ = std::fs::write(
        &json,
        serde_json::to_string_pretty(&report).unwrap_or_default(),
    );
    report
}

fn finding_report(
    options: &Options,
    key: &FindingKey,
    f: &Finding,
    topology: String,
    seen: usize,
) -> FindingReport {
    let detail = f
        .run
        .violation
        .as_ref()
        .map(|(_, v)| v.detail.clone())
        .unwrap_or_default();
    FindingReport {
        case_file: options.out.join(file_name(&topology, f)),
        topology,
        invariant: key.invariant.clone(),
        how: key.how.to_owned(),
        op: key.op.to_owned(),
        kernel_line: key.kernel_line.clone(),
        detail,
        seed: f.seed,
        sequence: f.index,
        generated_steps: f.generated,
        minimal_steps: f.minimal.len(),
        shrink_runs: f.shrink_runs,
        seen,
        transcript: transcript(&f.run),
    }
}

impl Report {
    /// The report as a person reads it.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\nexplore: seed {}, {}, {:.0} s",
            self.seed, self.kernel, self.wall_seconds
        );
        for (name, t) in &self.topologies {
            let _ = writeln!(
                out,
                "  {name:<12} {:>5} sequences {:>6} steps {:>7.2} steps/s (guest time)",
                t.sequences,
                t.steps,
                t.steps as f64 / t.seconds.max(1e-9)
            );
        }
        let _ = writeln!(
            out,
            "  {:.2} steps/s over all guests",
            self.steps_per_second
        );
        if let Some(label) = &self.ended_early_by {
            let _ = writeln!(out, "  ended early by a new finding: {label}");
        }
        for (name, t) in &self.topologies {
            let total: f64 = t.phases.iter().map(|(_, d)| d.as_secs_f64()).sum();
            let parts: Vec<String> = t
                .phases
                .iter()
                .map(|(n, d)| {
                    let secs = d.as_secs_f64();
                    format!("{n} {:.0}%", 100.0 * secs / total.max(1e-9))
                })
                .collect();
            let _ = writeln!(out, "  {name:<12} time by phase: {}", parts.join(", "));
        }
        let _ = writeln!(out, "\n  coverage (operation x mode, a dax round trip by how far it went: steps per topology)");
        let mut keys: Vec<&(String, String)> = self
            .topologies
            .values()
            .flat_map(|t| t.coverage.keys())
            .collect();
        keys.sort();
        keys.dedup();
        for key in keys {
            let counts: Vec<String> = self
                .topologies
                .iter()
                .map(|(n, t)| format!("{n} {}", t.coverage.get(key).copied().unwrap_or(0)))
                .collect();
            let _ = writeln!(out, "  {:<16} {:<7} {}", key.0, key.1, counts.join(", "));
        }
        let _ = writeln!(out, "\n  {} distinct findings", self.findings.len());
        for f in &self.findings {
            let _ = writeln!(
                out,
                "  - {} on {} at {} ({} times): {}\n    {} steps shrunk to {}: {}",
                broken(&f.invariant, &f.how),
                f.topology,
                f.op,
                f.seen,
                f.detail,
                f.generated_steps,
                f.minimal_steps,
                f.case_file.display()
            );
        }
        if !self.infrastructure_errors.is_empty() {
            let _ = writeln!(
                out,
                "\n  {} infrastructure errors (no verdict):",
                self.infrastructure_errors.len()
            );
            for e in self.infrastructure_errors.iter().take(5) {
                let _ = writeln!(out, "    {}", e.lines().next().unwrap_or(""));
            }
        }
        out
    }
}
