//! `ndharness compare`: the same trials on two guests (two kernels, or two
//! ndctl versions), and per trial whether the transcript, each checkpoint's
//! layout and its kernel log came out the same; the diff where not.
//!
//! Each side runs with `Config::collect` set: every trial writes its
//! normalized snapshot bodies (the partial transcript when a step failed)
//! to `OUT/SIDE/snapshots/TRIAL/KIND.txt` instead of judging them against
//! the stored snapshots. Then the two folders are compared here.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::evidence::{collect_folder, split_checkpoint};
use super::result::{Cause, RunInfo, Status, TrialResult};

mod html;
pub mod verdict;

pub use html::render_html;

/// One side as it ran.
#[derive(Clone, Debug, Serialize)]
pub struct Side {
    /// As given on the command line.
    pub spec: String,
    pub info: RunInfo,
    pub exit_code: u8,
    #[serde(skip)]
    pub snapshots: PathBuf,
    #[serde(skip)]
    pub results: Vec<TrialResult>,
}

/// What was compared in a trial, and how it came out.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Aspect {
    /// `status`, `transcript`, `NAME layout` or `NAME kernel log`.
    pub what: String,
    pub same: bool,
    /// Unified diff, baseline to candidate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct TrialComparison {
    pub name: String,
    pub baseline: String,
    pub candidate: String,
    /// Either side hit an infrastructure error, or did not run it.
    pub comparable: bool,
    pub same: bool,
    pub aspects: Vec<Aspect>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub candidate_message: Option<String>,
    /// The candidate's guest hung: it never came up, or a step never
    /// finished.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub candidate_hung: Option<Hang>,
}

/// How a trial hung: `boot` or `step N` in the reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub enum Hang {
    /// The guest was not ready within the boot timeout (an infrastructure
    /// error to `run`, which trusts its kernel).
    Boot,
    /// This step did not finish within its timeout (a failure).
    Step(usize),
}

impl Hang {
    /// How `result` hung, if it did.
    pub fn of(result: &TrialResult) -> Option<Hang> {
        match (&result.status, &result.failure) {
            (Status::Error, _)
                if result
                    .message
                    .as_deref()
                    .is_some_and(|m| m.contains(crate::vm::machine::NOT_READY)) =>
            {
                Some(Hang::Boot)
            }
            (Status::Fail | Status::KnownFailure, Some(Cause::Timeout { step, .. })) => {
                Some(Hang::Step(*step))
            }
            _ => None,
        }
    }

    /// As a person reads it.
    pub fn describe(self) -> String {
        match self {
            Hang::Boot => "its guest never came up (the boot timeout)".into(),
            Hang::Step(step) => format!("step {step} never finished (the step timeout)"),
        }
    }
}

impl From<Hang> for String {
    fn from(hang: Hang) -> String {
        match hang {
            Hang::Boot => "boot".into(),
            Hang::Step(step) => format!("step {step}"),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Comparison {
    pub baseline: Side,
    pub candidate: Side,
    pub trials: Vec<TrialComparison>,
}

impl Comparison {
    pub fn differing(&self) -> impl Iterator<Item = &TrialComparison> {
        self.trials.iter().filter(|t| t.comparable && !t.same)
    }
    pub fn incomparable(&self) -> impl Iterator<Item = &TrialComparison> {
        self.trials.iter().filter(|t| !t.comparable)
    }

    /// 0 the same everywhere, 1 some trial differs, 2 some trial could not
    /// be compared (an infrastructure error on either side).
    pub fn exit_code(&self) -> u8 {
        if self.incomparable().next().is_some() {
            2
        } else if self.differing().next().is_some() {
            1
        } else {
            0
        }
    }
}

fn read_bodies(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(kind) = name.strip_suffix(".txt") {
            if let Ok(text) = std::fs::read_to_string(e.path()) {
                out.insert(kind.to_owned(), text);
            }
        }
    }
    out
}

/// The aspects of one trial: status, transcript, then each checkpoint's
/// layout and kernel log, in the order the checkpoints were taken.
pub fn compare_bodies(
    base: &BTreeMap<String, String>,
    cand: &BTreeMap<String, String>,
) -> Vec<Aspect> {
    let mut aspects = Vec::new();
    let empty = String::new();
    let aspect = |what: String, a: &str, b: &str| {
        let same = a == b;
        Aspect {
            what: what.clone(),
            same,
            diff: (!same).then(|| {
                similar::TextDiff::from_lines(a, b)
                    .unified_diff()
                    .context_radius(3)
                    .header(&format!("baseline {what}"), &format!("candidate {what}"))
                    .to_string()
            }),
        }
    };
    aspects.push(aspect(
        "transcript".into(),
        base.get("transcript").unwrap_or(&empty),
        cand.get("transcript").unwrap_or(&empty),
    ));
    // `layout` is the last checkpoint; the others by name.
    let kinds: BTreeSet<&String> = base
        .keys()
        .chain(cand.keys())
        .filter(|k| *k != "transcript")
        .collect();
    let (mut named, last): (Vec<&String>, Vec<&String>) =
        kinds.into_iter().partition(|k| *k != "layout");
    named.extend(last);
    for kind in named {
        let (bl, bk) = split_checkpoint(base.get(kind).unwrap_or(&empty));
        let (cl, ck) = split_checkpoint(cand.get(kind).unwrap_or(&empty));
        aspects.push(aspect(format!("{kind} layout"), bl, cl));
        aspects.push(aspect(format!("{kind} kernel log"), bk, ck));
    }
    aspects
}

/// Where and how a failing trial failed, without what varies from run to
/// run (paths, timestamps, a power cut's sampled counts).
fn failure_summary(cause: &Cause) -> String {
    match cause {
        Cause::Expectation { step, .. } => format!("step {step}: not as expected"),
        Cause::Timeout { step, .. } => format!("step {step}: timed out"),
        Cause::KernelReport { title, .. } => format!("kernel report: {title}"),
        Cause::GuestDied { during } => format!("guest died during {during}"),
        Cause::Setup { what } => format!("setup: {what}"),
        Cause::Snapshot { names } => format!("snapshots differ: {}", names.join(", ")),
        Cause::PowerCut { step, .. } => format!("step {step}: power cuts broke consistency"),
    }
}

/// When both sides failed: whether they failed the same way (a change
/// that moves a failure to a later step is not "the same").
fn failure_aspect(base: Option<&TrialResult>, cand: Option<&TrialResult>) -> Option<Aspect> {
    let failed = |r: Option<&TrialResult>| {
        r.filter(|r| matches!(r.status, Status::Fail | Status::KnownFailure))
            .and_then(|r| r.failure.as_ref())
            .map(failure_summary)
    };
    let (b, c) = (failed(base)?, failed(cand)?);
    let same = b == c;
    Some(Aspect {
        what: "failure".into(),
        same,
        diff: (!same).then(|| format!("baseline: {b}\ncandidate: {c}\n")),
    })
}

/// Compares what the two sides collected, trial by trial.
pub fn compare(baseline: Side, candidate: Side) -> Comparison {
    let by_name = |s: &Side| -> BTreeMap<String, TrialResult> {
        s.results
            .iter()
            .map(|r| (r.name.clone(), r.clone()))
            .collect()
    };
    let (b, c) = (by_name(&baseline), by_name(&candidate));
    let names: BTreeSet<&String> = b.keys().chain(c.keys()).collect();
    let mut trials = Vec::new();
    for name in names {
        let (rb, rc) = (b.get(name), c.get(name));
        let word = |r: Option<&TrialResult>| r.map_or("not run", |r| r.status.word()).to_owned();
        let comparable = matches!(
            (rb.map(|r| r.status), rc.map(|r| r.status)),
            (
                Some(Status::Pass | Status::Fail | Status::KnownFailure),
                Some(Status::Pass | Status::Fail | Status::KnownFailure)
            ) | (Some(Status::Ignored), Some(Status::Ignored))
        );
        let folder = collect_folder(name);
        let mut aspects = vec![Aspect {
            what: "status".into(),
            same: word(rb) == word(rc),
            diff: None,
        }];
        if let Some(failure) = failure_aspect(rb, rc) {
            aspects.push(failure);
        }
        if comparable && rb.is_some_and(|r| r.status != Status::Ignored) {
            aspects.extend(compare_bodies(
                &read_bodies(&baseline.snapshots.join(&folder)),
                &read_bodies(&candidate.snapshots.join(&folder)),
            ));
        }
        let same = aspects.iter().all(|a| a.same);
        let message = |r: Option<&TrialResult>| {
            r.filter(|_| !same || !comparable)
                .and_then(|r| r.message.clone())
        };
        trials.push(TrialComparison {
            name: name.clone(),
            baseline: word(rb),
            candidate: word(rc),
            comparable,
            same,
            aspects,
            baseline_message: message(rb),
            candidate_message: message(rc),
            // A hang the baseline had the same way is not the candidate's.
            candidate_hung: rc
                .and_then(Hang::of)
                .filter(|h| rb.and_then(Hang::of) != Some(*h)),
        });
    }
    Comparison {
        baseline,
        candidate,
        trials,
    }
}

fn side_line(label: &str, s: &Side) -> String {
    format!(
        "{label:9} {} (image {}, kernel {}, {})\n",
        s.spec, s.info.image, s.info.kernel, s.info.ndctl_source
    )
}

/// The terminal report: every differing trial with its diffs, then a count.
pub fn render_text(c: &Comparison) -> String {
    let mut out = String::new();
    out.push_str("\ncomparison\n");
    out.push_str(&side_line("baseline", &c.baseline));
    out.push_str(&side_line("candidate", &c.candidate));
    for t in c.differing() {
        let what: Vec<&str> = t
            .aspects
            .iter()
            .filter(|a| !a.same)
            .map(|a| a.what.as_str())
            .collect();
        let _ = writeln!(out, "\nDIFFERS {}: {}", t.name, what.join(", "));
        if t.baseline != t.candidate {
            let _ = writeln!(out, "  status: {} -> {}", t.baseline, t.candidate);
        }
        for a in t.aspects.iter().filter(|a| !a.same) {
            if let Some(d) = &a.diff {
                for line in d.lines() {
                    let _ = writeln!(out, "  {line}");
                }
            }
        }
    }
    for t in c.incomparable() {
        let _ = writeln!(
            out,
            "\nNOT COMPARED {}: baseline {}, candidate {}",
            t.name, t.baseline, t.candidate
        );
        for m in [&t.baseline_message, &t.candidate_message]
            .into_iter()
            .flatten()
        {
            let _ = writeln!(out, "  {}", m.lines().next().unwrap_or_default());
        }
    }
    let total = c.trials.len();
    let differ = c.differing().count();
    let incomparable = c.incomparable().count();
    let _ = writeln!(
        out,
        "\n{total} trials: {} the same, {differ} differ, {incomparable} not compared (infrastructure error or not run)",
        total - differ - incomparable
    );
    let mut by_aspect: BTreeMap<String, usize> = BTreeMap::new();
    for t in c.differing() {
        for a in t.aspects.iter().filter(|a| !a.same) {
            let key = if a.what.ends_with("kernel log") {
                "kernel log"
            } else if a.what.ends_with("layout") {
                "layout"
            } else {
                a.what.as_str()
            };
            *by_aspect.entry(key.to_owned()).or_default() += 1;
        }
    }
    if !by_aspect.is_empty() {
        let parts: Vec<String> = by_aspect.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let _ = writeln!(out, "differences by kind: {}", parts.join(", "));
    }
    out
}

/// Writes `compare.json` and `compare.html` into `dir`.
pub fn write(dir: &Path, c: &Comparison) -> std::io::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir)?;
    let json = dir.join("compare.json");
    std::fs::write(
        &json,
        serde_json::to_string_pretty(c).expect("a comparison serializes"),
    )?;
    let html = dir.join("compare.html");
    std::fs::write(&html, render_html(c))?;
    Ok((json, html))
}

#[cfg(test)]
mod tests {
    use super::html::escape;
    use super::*;
    use std::time::Duration;

    fn bodies(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn layout_and_kernel_log_are_told_apart() {
        let base = bodies(&[
            ("transcript", "$ ndctl list\nexit: 0\n"),
            (
                "layout",
                "{\"size\": 1}\n\nkernel log since the last checkpoint:\n  a\n",
            ),
            ("created", "{}\n\nkernel log since the last checkpoint:\n"),
        ]);
        let mut cand = base.clone();
        cand.insert(
            "layout".into(),
            "{\"size\": 1}\n\nkernel log since the last checkpoint:\n  b\n".into(),
        );
        let a = compare_bodies(&base, &cand);
        let whats: Vec<(&str, bool)> = a.iter().map(|a| (a.what.as_str(), a.same)).collect();
        assert_eq!(
            whats,
            [
                ("transcript", true),
                ("created layout", true),
                ("created kernel log", true),
                ("layout layout", true),
                ("layout kernel log", false),
            ]
        );
        let d = a[4].diff.as_deref().unwrap();
        assert!(d.contains("-  a") && d.contains("+  b"), "{d}");
    }

    fn result(name: &str, status: Status) -> TrialResult {
        TrialResult {
            name: name.into(),
            topology: "nfit-1".into(),
            modes: vec![],
            note: None,
            failure: None,
            status,
            duration: Duration::ZERO,
            phases: Vec::new(),
            evidence: None,
            message: Some(format!("{name} went {}", status.word())),
            guest: None,
            repetition: None,
        }
    }

    #[test]
    fn two_failures_at_different_steps_are_not_the_same() {
        let failing = |step| TrialResult {
            failure: Some(Cause::Expectation {
                step,
                command: "ndctl enable-region region0".into(),
            }),
            ..result("r::torn::cxl-x2", Status::Fail)
        };
        let a = tempfile::tempdir().unwrap();
        let compared = |b: TrialResult, c: TrialResult| {
            compare(side(a.path(), vec![b]), side(a.path(), vec![c]))
                .trials
                .remove(0)
        };
        let moved = compared(failing(8), failing(12));
        assert!(!moved.same, "{moved:?}");
        let failure = moved.aspects.iter().find(|a| a.what == "failure").unwrap();
        assert_eq!(
            failure.diff.as_deref(),
            Some("baseline: step 8: not as expected\ncandidate: step 12: not as expected\n")
        );
        assert!(compared(failing(8), failing(8)).same);
    }

    #[test]
    fn a_hang_is_read_back_from_the_result_as_the_runner_writes_it() {
        let boot = crate::vm::machine::Error::BootTimeout {
            timeout: Duration::from_secs(90),
            serial: "[  1.0] nd_pmem namespace0.0: probing".into(),
        };
        let errored = TrialResult {
            message: Some(format!("infrastructure error: {boot}")),
            ..result("b::x::nfit-1", Status::Error)
        };
        assert_eq!(Hang::of(&errored), Some(Hang::Boot));
        let timed_out = TrialResult {
            failure: Some(Cause::Timeout {
                step: 4,
                command: "ndctl destroy-namespace all".into(),
            }),
            ..result("b::x::nfit-1", Status::Fail)
        };
        assert_eq!(Hang::of(&timed_out), Some(Hang::Step(4)));
        let said = |h: Hang| serde_json::to_value(h).unwrap();
        assert_eq!(
            (said(Hang::Boot), said(Hang::Step(4))),
            ("boot".into(), "step 4".into())
        );
        // Another infrastructure error, or another failure, is no hang.
        assert_eq!(Hang::of(&result("b::x::nfit-1", Status::Error)), None);
        assert_eq!(Hang::of(&result("b::x::nfit-1", Status::Fail)), None);
    }

    fn side(dir: &Path, results: Vec<TrialResult>) -> Side {
        Side {
            spec: "x".into(),
            info: RunInfo::default(),
            exit_code: 0,
            snapshots: dir.to_owned(),
            results,
        }
    }

    #[test]
    fn statuses_decide_what_is_compared_and_the_exit_code() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        for (dir, text) in [(a.path(), "one\n"), (b.path(), "two\n")] {
            for t in ["s::same::t", "s::differs::t", "s::fails::t"] {
                let f = dir.join(collect_folder(t));
                std::fs::create_dir_all(&f).unwrap();
                let body = if t.contains("differs") { text } else { "x\n" };
                std::fs::write(f.join("transcript.txt"), body).unwrap();
            }
        }
        let c = compare(
            side(
                a.path(),
                vec![
                    result("s::same::t", Status::Pass),
                    result("s::differs::t", Status::Pass),
                    result("s::fails::t", Status::Pass),
                ],
            ),
            side(
                b.path(),
                vec![
                    result("s::same::t", Status::Pass),
                    result("s::differs::t", Status::Pass),
                    result("s::fails::t", Status::Fail),
                ],
            ),
        );
        let differ: Vec<&str> = c.differing().map(|t| t.name.as_str()).collect();
        assert_eq!(differ, ["s::differs::t", "s::fails::t"]);
        assert_eq!(c.exit_code(), 1);
        let text = render_text(&c);
        assert!(
            text.contains("3 trials: 1 the same, 2 differ, 0 not compared"),
            "{text}"
        );
        assert!(text.contains("status: pass -> FAIL"), "{text}");
        let html = render_html(&c);
        assert!(html.contains("<span class=\"del\">-one</span>"), "{html}");
        assert!(
            !html.contains("src=") && !html.contains("href=\"http"),
            "self-contained"
        );

        // An infrastructure error on one side: not compared, exit 2.
        let c = compare(
            side(a.path(), vec![result("s::same::t", Status::Error)]),
            side(b.path(), vec![result("s::same::t", Status::Pass)]),
        );
        assert_eq!(c.incomparable().count(), 1);
        assert_eq!(c.exit_code(), 2);
    }

    #[test]
    fn html_escapes_what_the_guest_printed() {
        assert_eq!(escape("<b>&\"x\""), "&lt;b&gt;&amp;&quot;x&quot;");
    }
}
