//! Machine-readable results of a run: `results.json` (one object per trial)
//! and `junit.xml` (one test suite per ndharness suite), for CI systems,
//! written by [`ResultsWriter`] when the run ends.

use std::path::{Path, PathBuf};
use std::time::Duration;

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestRerun, TestSuite};
use serde::Serialize;

use super::{Reporter, RunEvent};
use crate::runner::result::{RunInfo, Status, TrialResult};

/// Writes results.json and junit.xml into its folder when the run ends,
/// and prints where.
pub struct ResultsWriter {
    pub dir: PathBuf,
}

impl Reporter for ResultsWriter {
    fn report(&mut self, event: &RunEvent<'_>) {
        let RunEvent::Finished(run) = event else {
            return;
        };
        match write(&self.dir, &run.results, &run.info, run.wall, run.exit_code) {
            Ok((json, junit)) => println!("  results: {} {}", json.display(), junit.display()),
            Err(e) => eprintln!(
                "warning: could not write results to {}: {e}",
                self.dir.display()
            ),
        }
    }
}

#[derive(Serialize)]
struct JsonTrial<'a> {
    name: &'a str,
    suite: &'a str,
    case: &'a str,
    topology: &'a str,
    status: &'static str,
    duration_seconds: f64,
    /// Seconds per phase of the trial (state, boot or restore, drivers,
    /// plan, setup, steps, layout, kernel log, stop).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    phases: Vec<(&'a str, f64)>,
    kernel: &'a str,
    image: &'a str,
    evidence: Option<&'a Path>,
    message: Option<&'a str>,
    /// The infrastructure error of a first attempt that was retried.
    retried_after: Option<&'a str>,
}

#[derive(Serialize)]
struct JsonRun<'a> {
    run: &'a RunInfo,
    wall_seconds: f64,
    passed: usize,
    failed: usize,
    errors: usize,
    ignored: usize,
    exit_code: u8,
    trials: Vec<JsonTrial<'a>>,
}

fn word(s: Status) -> &'static str {
    match s {
        Status::Pass => "pass",
        Status::Fail => "fail",
        Status::Error => "error",
        Status::Ignored => "ignored",
    }
}

fn split(name: &str) -> (&str, &str) {
    let mut parts = name.splitn(3, "::");
    (parts.next().unwrap_or(""), parts.next().unwrap_or(""))
}

pub fn json(results: &[TrialResult], info: &RunInfo, wall: Duration, exit_code: u8) -> String {
    let count = |s| results.iter().filter(|r| r.status == s).count();
    let mut trials: Vec<JsonTrial> = results
        .iter()
        .map(|r| {
            let (suite, case) = split(&r.name);
            JsonTrial {
                name: &r.name,
                suite,
                case,
                topology: &r.topology,
                status: word(r.status),
                duration_seconds: r.duration.as_secs_f64(),
                phases: r
                    .phases
                    .iter()
                    .map(|(n, d)| (*n, d.as_secs_f64()))
                    .collect(),
                kernel: r.guest.as_ref().map_or(&info.kernel, |g| &g.0),
                image: r.guest.as_ref().map_or(&info.image_key, |g| &g.1),
                evidence: r.evidence.as_deref(),
                message: r.message.as_deref(),
                retried_after: r.retried_after(),
            }
        })
        .collect();
    trials.sort_by(|a, b| a.name.cmp(b.name));
    let run = JsonRun {
        run: info,
        wall_seconds: wall.as_secs_f64(),
        passed: count(Status::Pass),
        failed: count(Status::Fail),
        errors: count(Status::Error),
        ignored: count(Status::Ignored),
        exit_code,
        trials,
    };
    serde_json::to_string_pretty(&run).expect("results serialize")
}

/// JUnit: a conformance failure is a `<failure>`, an infrastructure error an
/// `<error>`, an ignored case `<skipped>` with its reason; a trial that
/// passed on its retry carries the first attempt as a flaky error.
pub fn junit(results: &[TrialResult], info: &RunInfo, wall: Duration) -> String {
    let mut report = Report::new("ndharness");
    report.set_time(wall);
    let mut suites: std::collections::BTreeMap<&str, Vec<&TrialResult>> = Default::default();
    for r in results {
        suites.entry(split(&r.name).0).or_default().push(r);
    }
    for (suite, mut trials) in suites {
        trials.sort_by(|a, b| a.name.cmp(&b.name));
        let mut ts = TestSuite::new(suite);
        ts.add_property(("kernel", info.kernel.as_str()));
        ts.add_property(("image", info.image_key.as_str()));
        ts.add_property(("accel", info.accel.as_str()));
        for r in trials {
            let mut status = match r.status {
                Status::Pass => TestCaseStatus::success(),
                Status::Fail | Status::Error => {
                    let kind = if r.status == Status::Fail {
                        NonSuccessKind::Failure
                    } else {
                        NonSuccessKind::Error
                    };
                    let mut s = TestCaseStatus::non_success(kind);
                    let msg = r.message.as_deref().unwrap_or_default();
                    s.set_message(msg.lines().next().unwrap_or_default());
                    s.set_type(if r.status == Status::Fail {
                        "conformance"
                    } else {
                        "infrastructure"
                    });
                    s.set_description(msg);
                    s
                }
                Status::Ignored => {
                    let mut s = TestCaseStatus::skipped();
                    if let Some(reason) = &r.note {
                        s.set_message(reason.trim());
                    }
                    s
                }
            };
            if let Some(first) = r.retried_after() {
                let mut rerun = TestRerun::new(NonSuccessKind::Error);
                rerun.set_message(first);
                rerun.set_type("infrastructure");
                status.add_rerun(rerun);
            }
            let (_, case) = split(&r.name);
            let mut tc = TestCase::new(r.topology.as_str(), status);
            tc.set_classname(format!("{suite}::{case}"));
            tc.set_time(r.duration);
            if let Some(p) = &r.evidence {
                tc.add_property(("evidence", p.display().to_string().as_str()));
            }
            ts.add_test_case(tc);
        }
        report.add_test_suite(ts);
    }
    report.to_string().expect("JUnit serializes")
}

/// Writes both files into `dir`; returns their paths.
pub fn write(
    dir: &Path,
    results: &[TrialResult],
    info: &RunInfo,
    wall: Duration,
    exit_code: u8,
) -> std::io::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir)?;
    let j = dir.join("results.json");
    let x = dir.join("junit.xml");
    std::fs::write(&j, json(results, info, wall, exit_code))?;
    std::fs::write(&x, junit(results, info, wall))?;
    Ok((j, x))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trial(name: &str, status: Status, note: Option<&str>, message: Option<&str>) -> TrialResult {
        TrialResult {
            name: name.into(),
            topology: name.rsplit("::").next().unwrap().into(),
            modes: vec![],
            note: note.map(str::to_owned),
            status,
            duration: Duration::from_millis(1500),
            phases: Vec::new(),
            evidence: message.map(|_| PathBuf::from("/runs/x")),
            message: message.map(str::to_owned),
            guest: None,
        }
    }

    #[test]
    fn junit_tells_failures_errors_skips_and_retries_apart() {
        let results = [
            trial("a::ok::nfit-1", Status::Pass, None, None),
            trial(
                "a::ok::cxl-x6",
                Status::Pass,
                Some("retried after: infrastructure error: QEMU exited while booting"),
                None,
            ),
            trial(
                "a::bad::nfit-1",
                Status::Fail,
                None,
                Some("step 2 (`x`): exit code 1, expected 0"),
            ),
            trial(
                "b::boot::nfit-1",
                Status::Error,
                None,
                Some("infrastructure error: QEMU exited"),
            ),
            trial(
                "b::later::nfit-1",
                Status::Ignored,
                Some("needs a 6.13 kernel"),
                None,
            ),
        ];
        let info = RunInfo {
            kernel: "6.12.117+deb13-amd64".into(),
            ..Default::default()
        };
        let x = junit(&results, &info, Duration::from_secs(9));
        assert!(
            x.contains(r#"<testsuite name="a" tests="3" disabled="0" errors="0" failures="1""#),
            "{x}"
        );
        assert!(
            x.contains(r#"<testsuite name="b" tests="2" disabled="1" errors="1" failures="0""#),
            "{x}"
        );
        assert!(
            x.contains(
                r#"<failure message="step 2 (`x`): exit code 1, expected 0" type="conformance">"#
            ),
            "{x}"
        );
        assert!(
            x.contains(
                r#"<error message="infrastructure error: QEMU exited" type="infrastructure">"#
            ),
            "{x}"
        );
        assert!(
            x.contains(r#"<skipped message="needs a 6.13 kernel"/>"#),
            "{x}"
        );
        assert!(x.contains("<flakyError"), "{x}");
        let j: serde_json::Value =
            serde_json::from_str(&json(&results, &info, Duration::from_secs(9), 1)).unwrap();
        assert_eq!(j["failed"], 1);
        assert_eq!(j["errors"], 1);
        assert_eq!(j["trials"][0]["name"], "a::bad::nfit-1");
        assert_eq!(j["trials"][0]["status"], "fail");
        assert_eq!(j["trials"][0]["kernel"], "6.12.117+deb13-amd64");
        assert_eq!(j["trials"][0]["evidence"], "/runs/x");
        assert!(j["trials"][1]["retried_after"]
            .as_str()
            .unwrap()
            .contains("QEMU exited"));
    }

    #[test]
    fn a_trial_on_the_nfit_test_image_names_its_own_kernel() {
        let mut t = trial(
            "ndctl::create.sh::nfit-test-modules",
            Status::Pass,
            None,
            None,
        );
        t.guest = Some(("6.12.95+deb12-amd64".into(), "k2".into()));
        let info = RunInfo {
            kernel: "6.12.117+deb13-amd64".into(),
            image_key: "k1".into(),
            ..Default::default()
        };
        let j: serde_json::Value =
            serde_json::from_str(&json(&[t], &info, Duration::from_secs(1), 0)).unwrap();
        assert_eq!(j["trials"][0]["kernel"], "6.12.95+deb12-amd64");
        assert_eq!(j["trials"][0]["image"], "k2");
    }
}

#[cfg(test)]
mod phase_tests {
    use super::*;
    use crate::runner::reporter::summary::summary;

    #[test]
    fn phases_reach_the_json_and_the_summary_sums_them() {
        let a = TrialResult {
            name: "s::c::cxl-x2".into(),
            topology: "cxl-x2".into(),
            modes: vec![],
            note: None,
            status: Status::Pass,
            duration: Duration::from_secs(4),
            phases: vec![
                ("restore", Duration::from_millis(250)),
                ("steps", Duration::from_millis(3750)),
            ],
            evidence: None,
            message: None,
            guest: None,
        };
        let mut b = a.clone();
        b.name = "s::d::cxl-x2".into();
        b.phases = vec![
            ("boot", Duration::from_secs(5)),
            ("steps", Duration::from_secs(1)),
        ];
        b.duration = Duration::from_secs(6);
        let results = [a, b];
        let info = RunInfo {
            image: "default".into(),
            image_key: "k".into(),
            kernel: "6.12".into(),
            kernel_source: String::new(),
            ndctl_source: String::new(),
            accel: "Tcg".into(),
            start: "warm".into(),
        };
        let j: serde_json::Value =
            serde_json::from_str(&json(&results, &info, Duration::from_secs(9), 0)).unwrap();
        assert_eq!(j["trials"][0]["phases"][0][0], "restore");
        assert_eq!(j["trials"][0]["phases"][1][1], 3.75);
        let s = summary(&results, Duration::from_secs(9));
        let table = s.split("time by phase").nth(1).expect("a phase table");
        let lines: Vec<&str> = table.lines().skip(1).take(3).collect();
        // Summed over trials, largest first, with their share.
        assert!(lines[0].ends_with("5.0s   50%  boot"), "{table}");
        assert!(lines[1].ends_with("4.8s   48%  steps"), "{table}");
        assert!(lines[2].ends_with("0.2s    2%  restore"), "{table}");
    }
}
