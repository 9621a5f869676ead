//! junit.xml: one test suite per ndharness suite, one test case per run of
//! a trial (`TOPOLOGY#N` for the Nth repetition), for CI systems' test
//! report views.

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestRerun, TestSuite};

use super::RunRecord;
use crate::runner::result::{Status, TrialResult};

fn split(name: &str) -> (&str, &str) {
    let mut parts = name.splitn(3, "::");
    (parts.next().unwrap_or(""), parts.next().unwrap_or(""))
}

/// JUnit: a conformance failure is a `<failure>`, an infrastructure error an
/// `<error>`, an ignored case `<skipped>` with its reason; a trial that
/// passed on its retry carries the first attempt as a flaky error.
pub fn junit(run: &RunRecord) -> String {
    let info = &run.info;
    let mut report = Report::new("ndharness");
    report.set_time(run.wall);
    let mut suites: std::collections::BTreeMap<&str, Vec<&TrialResult>> = Default::default();
    for r in &run.results {
        suites.entry(split(&r.name).0).or_default().push(r);
    }
    for (suite, mut trials) in suites {
        trials.sort_by(|a, b| (&a.name, a.repetition).cmp(&(&b.name, b.repetition)));
        let mut ts = TestSuite::new(suite);
        ts.add_property(("kernel", info.kernel.as_str()));
        ts.add_property(("kernel_package", info.kernel_source.as_str()));
        ts.add_property(("ndctl", info.ndctl_source.as_str()));
        ts.add_property(("image", info.image_key.as_str()));
        ts.add_property(("accel", info.accel.as_str()));
        for r in trials {
            ts.add_test_case(test_case(suite, r));
        }
        report.add_test_suite(ts);
    }
    report.to_string().expect("JUnit serializes")
}

fn test_case(suite: &str, r: &TrialResult) -> TestCase {
    let mut status = match r.status {
        Status::Pass => TestCaseStatus::success(),
        Status::Fail | Status::Error => {
            let (kind, type_) = if r.status == Status::Fail {
                (NonSuccessKind::Failure, "conformance")
            } else {
                (NonSuccessKind::Error, "infrastructure")
            };
            let mut s = TestCaseStatus::non_success(kind);
            let msg = r.message.as_deref().unwrap_or_default();
            s.set_message(msg.lines().next().unwrap_or_default());
            s.set_type(type_);
            s.set_description(msg);
            s
        }
        Status::Ignored => {
            let mut s = TestCaseStatus::skipped();
            if let Some(reason) = r.reason() {
                s.set_message(reason.trim());
            }
            s
        }
        // As pytest reports an expected failure: skipped, with why.
        Status::KnownFailure => {
            let mut s = TestCaseStatus::skipped();
            let reason = r.reason().unwrap_or_default().trim();
            s.set_message(format!("known failure: {reason}"));
            s.set_description(r.message.as_deref().unwrap_or_default());
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
    let name = match r.repetition {
        Some(n) => format!("{}#{n}", r.topology),
        None => r.topology.clone(),
    };
    let mut tc = TestCase::new(name, status);
    tc.set_classname(format!("{suite}::{case}"));
    tc.set_time(r.duration);
    if let Some(p) = &r.evidence {
        tc.add_property(("evidence", p.display().to_string().as_str()));
    }
    tc
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::runner::result::{sample, RunInfo};

    #[test]
    fn junit_tells_failures_errors_skips_and_retries_apart() {
        let mut retried = sample("a::ok::cxl-x6", Status::Pass);
        retried.note = Some(crate::runner::result::Note::RetriedAfter(
            "infrastructure error: QEMU exited while booting".into(),
        ));
        let mut bad = sample("a::bad::nfit-1", Status::Fail);
        bad.message = Some("step 2 (`x`): exit code 1, expected 0".into());
        let mut boot = sample("b::boot::nfit-1", Status::Error);
        boot.message = Some("infrastructure error: QEMU exited".into());
        let mut later = sample("b::later::nfit-1", Status::Ignored);
        later.note = Some(crate::runner::result::Note::Ignored(
            "needs a 6.13 kernel".into(),
        ));
        let run = RunRecord {
            results: vec![
                sample("a::ok::nfit-1", Status::Pass),
                retried,
                bad,
                boot,
                later,
            ],
            info: RunInfo {
                kernel: "7.3.4+deb13-amd64".into(),
                kernel_source: "linux-image-7.3.4+deb13-amd64 7.3.4-1~bpo13+1".into(),
                ndctl_source: "ndctl=85-1".into(),
                ..Default::default()
            },
            wall: Duration::from_secs(9),
            ..Default::default()
        };
        let x = junit(&run);
        // The versions a nightly ran, for a line that follows the newest kernel.
        assert!(
            x.contains(r#"<property name="kernel_package" value="linux-image-7.3.4+deb13-amd64 7.3.4-1~bpo13+1"/>"#)
                && x.contains(r#"<property name="ndctl" value="ndctl=85-1"/>"#),
            "{x}"
        );
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
    }

    #[test]
    fn each_repetition_is_a_test_case() {
        let results = (1..=2)
            .map(|n| {
                let mut r = sample("a::x::nfit-1", Status::Pass);
                r.repetition = Some(n);
                r
            })
            .collect();
        let run = RunRecord {
            results,
            ..Default::default()
        };
        let x = junit(&run);
        assert!(
            x.contains(r#"<testcase name="nfit-1#1" classname="a::x""#),
            "{x}"
        );
        assert!(
            x.contains(r#"<testcase name="nfit-1#2" classname="a::x""#),
            "{x}"
        );
    }
}
