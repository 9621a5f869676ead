//! `upstream.yaml` in a suite folder: a project's own tests (ndctl's
//! `test/`), one trial each, run in the guest by a runner program the image
//! ships. A test's exit code is its verdict (the skip code is shown as
//! ignored with the test's reason); its kernel log is checked like every
//! case's; there are no snapshots (the output is the test's, not ours).

use std::time::Duration;

use serde::Deserialize;

use super::duration as humantime_serde_compat;
use super::ignore::Ignored;
use super::model::{CaseSpec, TopologyRef};
use super::step::{Action, Expect, Step};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSpec {
    /// What the tests are, for every trial's description.
    pub description: String,
    /// The guest program that runs one test: `RUNNER PROGRAM`.
    pub runner: String,
    /// The exit code that means "skipped" (77 for meson and automake).
    pub skip_exit: i32,
    #[serde(with = "humantime_serde_compat")]
    pub timeout: Duration,
    /// What several tests share (a reason, an `ignored:` list), written
    /// once as YAML anchors; read only through the aliases.
    #[serde(default)]
    pub reasons: std::collections::BTreeMap<String, serde_yaml_ng::Value>,
    pub tests: Vec<UpstreamTest>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTest {
    /// The test's name in its own suite (meson's test name).
    pub test: String,
    /// The program, when it is not named like the test.
    #[serde(default)]
    pub program: Option<String>,
    pub topology: TopologyRef,
    /// Shell lines run first (the state a real system would be in).
    #[serde(default)]
    pub setup: Vec<String>,
    /// Not run, for this reason, everywhere or on the guests it names
    /// (never counted as passed).
    #[serde(default)]
    pub ignored: Ignored,
    /// Runs, and fails for a known reason, on the guests it names.
    #[serde(default)]
    pub known_failures: super::known::KnownFailures,
    #[serde(default)]
    pub kernel_args: String,
    /// Why it runs where it runs, for the reader.
    #[serde(default)]
    pub why: Option<String>,
}

impl UpstreamSpec {
    /// One case per test, named after the test.
    pub fn cases(&self) -> Vec<(String, CaseSpec)> {
        self.tests
            .iter()
            .map(|t| {
                let program = t.program.clone().unwrap_or_else(|| t.test.clone());
                let mut steps: Vec<Step> = t
                    .setup
                    .iter()
                    .map(|line| Step {
                        action: Action::Run(line.clone()),
                        expect: Expect::default(),
                        timeout: None,
                    })
                    .collect();
                steps.push(Step {
                    action: Action::Exec(vec![self.runner.clone(), program.clone()]),
                    expect: Expect::default(),
                    timeout: Some(self.timeout),
                });
                let mut description =
                    format!("{} `{}` ({program})", self.description.trim(), t.test);
                if let Some(why) = &t.why {
                    description.push_str(&format!(": {}", why.trim()));
                }
                let spec = CaseSpec {
                    description,
                    topology: t.topology.clone(),
                    ignored: t.ignored.clone(),
                    known_failures: t.known_failures.clone(),
                    bug: None,
                    kernel_args: t.kernel_args.clone(),
                    cold: false,
                    modes: Vec::new(),
                    assemble: false,
                    ndctl_tests: true,
                    skip_exit: Some(self.skip_exit),
                    snapshots: false,
                    step_timeout: self.timeout,
                    steps,
                };
                (t.test.clone(), spec)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = r#"
description: ndctl's own test
runner: /usr/lib/ndctl-tests/run
skip_exit: 77
timeout: 10m
reasons:
  shared: &shared not here
tests:
  - { test: libndctl, topology: nfit-test-modules }
  - test: max_extent_ns
    program: max_available_extent_ns.sh
    topology: [nfit-test-modules, nfit-6g]
    setup: [modprobe dm_mod]
    kernel_args: hugepages=2
  - { test: cxl-topology.sh, topology: nfit-test-modules, ignored: *shared }
"#;

    #[test]
    fn each_test_is_a_case_judged_by_its_exit() {
        let spec: UpstreamSpec = crate::yaml::parse("upstream.yaml", SPEC).unwrap();
        let cases = spec.cases();
        assert_eq!(cases.len(), 3);
        let (name, c) = &cases[1];
        assert_eq!(name, "max_extent_ns");
        assert_eq!(c.topology.0, ["nfit-test-modules", "nfit-6g"]);
        assert_eq!(c.steps.len(), 2);
        assert_eq!(c.steps[0].action, Action::Run("modprobe dm_mod".into()));
        assert_eq!(
            c.steps[1].action,
            Action::Exec(vec![
                "/usr/lib/ndctl-tests/run".into(),
                "max_available_extent_ns.sh".into()
            ])
        );
        assert_eq!(c.steps[1].timeout, Some(Duration::from_secs(600)));
        assert_eq!(c.skip_exit, Some(77));
        assert!(c.ndctl_tests && !c.snapshots && !c.assemble);
        assert_eq!(c.kernel_args, "hugepages=2");
        let anywhere = super::super::GuestNames::new("debian-6.12", &["81"]);
        assert_eq!(cases[2].1.ignored.reason_for(&anywhere), Some("not here"));
        assert!(cases[0].1.description.contains("`libndctl` (libndctl)"));
    }

    #[test]
    fn a_typo_names_file_line_and_field() {
        let bad = SPEC.replace("program:", "programme:");
        let e = crate::yaml::parse::<UpstreamSpec>("upstream.yaml", &bad)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("upstream.yaml:") && e.contains("programme"),
            "{e}"
        );
    }
}
