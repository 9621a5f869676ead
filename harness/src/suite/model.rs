//! The case format, parsed strictly.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::duration as humantime_serde_compat;
use super::ignore::Ignored;
use super::step::Step;

/// One case file.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CaseSpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// One topology name (or path), or a list: one trial each.
    pub topology: TopologyRef,
    /// Shown instead of running, everywhere or on the guests it names
    /// ([`Ignored`]); never counted as passed.
    #[serde(default, skip_serializing_if = "Ignored::is_empty")]
    pub ignored: Ignored,
    /// Failures known on some guests and topologies: the trial runs there
    /// and its failure is reported as known ([`super::known`]).
    #[serde(default, skip_serializing_if = "super::known::KnownFailures::is_empty")]
    pub known_failures: super::known::KnownFailures,
    /// For a regression case: the upstream bug it reproduces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bug: Option<Bug>,
    /// Appended to the guest kernel's command line (e.g. `memhp_default_state=offline`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kernel_args: String,
    /// Boot this case's guests cold instead of starting them from the
    /// saved state of a ready guest (see README, "Warm start").
    #[serde(default, skip_serializing_if = "is_false")]
    pub cold: bool,
    /// The namespace modes the case exercises, for the summary per mode.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modes: Vec<Mode>,
    /// `false`: the harness leaves the topology's CXL regions to the case's
    /// own steps (default: assembled, labels initialized).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub assemble: bool,
    /// The steps run ndctl's own tests: the trial needs the image that
    /// ships them.
    #[serde(default, skip_serializing_if = "is_false")]
    pub ndctl_tests: bool,
    /// A step exiting with this code skips the trial (shown as ignored with
    /// the step's last output line as the reason, never as a pass): 77 for
    /// ndctl's tests, as for meson and automake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_exit: Option<i32>,
    /// `false`: judged by its steps' exit codes and the kernel log alone, no
    /// snapshots (upstream tests whose output is theirs, not ours).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub snapshots: bool,
    /// Default timeout of each step.
    #[serde(
        default = "default_step_timeout",
        with = "humantime_serde_compat",
        skip_serializing_if = "is_default_step_timeout"
    )]
    pub step_timeout: Duration,
    pub steps: Vec<Step>,
}

/// The upstream bug behind a regression case.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Bug {
    /// Issue, commit or mailing-list link.
    pub link: String,
    /// Kernels (or ndctl versions) where it reproduced.
    pub reproduces: String,
    /// Where it is fixed, and by what.
    pub fixed: String,
    /// What the fixed behaviour is: what the snapshots hold.
    pub fixed_behaviour: String,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_default_step_timeout(d: &Duration) -> bool {
    *d == default_step_timeout()
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Fsdax,
    Devdax,
    Sector,
    Raw,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Fsdax => "fsdax",
            Mode::Devdax => "devdax",
            Mode::Sector => "sector",
            Mode::Raw => "raw",
        })
    }
}

impl CaseSpec {
    /// Each step's timeout unless the case says otherwise.
    pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(60);
}

fn default_step_timeout() -> Duration {
    CaseSpec::DEFAULT_STEP_TIMEOUT
}

/// One topology (`topology: nfit-1`), several (`topology: [nfit-1, nfit-2]`),
/// or a matrix of CXL widths (`topology: { cxl_ways: [1, 2, 3, 4, 6, 8] }`,
/// the shipped `cxl-xN` topologies), optionally with more names
/// (`{ cxl_ways: [2, 6], and: [nfit-1] }`).
#[derive(Clone, Debug, PartialEq)]
pub struct TopologyRef(pub Vec<String>);

/// Written as one name, or the list of names (a matrix comes back as its
/// names).
impl Serialize for TopologyRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [one] => s.serialize_str(one),
            names => names.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for TopologyRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TopologyRefVisitor;
        impl<'de> serde::de::Visitor<'de> for TopologyRefVisitor {
            type Value = TopologyRef;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a topology name or a list of them")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<TopologyRef, E> {
                Ok(TopologyRef(vec![v.to_owned()]))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<TopologyRef, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = seq.next_element::<String>()? {
                    names.push(name);
                }
                if names.is_empty() {
                    return Err(serde::de::Error::custom(
                        "a case needs at least one topology",
                    ));
                }
                Ok(TopologyRef(names))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<TopologyRef, A::Error> {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Matrix {
                    cxl_ways: Vec<u32>,
                    #[serde(default)]
                    and: Vec<String>,
                }
                let matrix =
                    Matrix::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                let mut names = Vec::new();
                for ways in &matrix.cxl_ways {
                    let name = format!("cxl-x{ways}");
                    if crate::topology::named::get(&name).is_none() {
                        return Err(serde::de::Error::custom(format!(
                            "no shipped topology for CXL width {ways} (widths: 1, 2, 3, 4, 6, 8, 12, 16)"
                        )));
                    }
                    names.push(name);
                }
                names.extend(matrix.and);
                if names.is_empty() {
                    return Err(serde::de::Error::custom(
                        "a case needs at least one topology",
                    ));
                }
                Ok(TopologyRef(names))
            }
        }
        d.deserialize_any(TopologyRefVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::{Action, ExitExpect};

    fn parse(yaml: &str) -> Result<CaseSpec, crate::yaml::Error> {
        crate::yaml::parse("case.yaml", yaml)
    }

    /// The error `yaml` is refused with, as the user reads it.
    fn refused(yaml: &str) -> String {
        parse(yaml).unwrap_err().to_string()
    }

    #[test]
    fn full_case() {
        let case = parse(
            "topology: nfit-1\nstep_timeout: 30s\nsteps:\n  - run: ndctl list\n  - exec: [ndctl, list, -R]\n    timeout: 5s\n  - write: { path: /sys/x, value: '1' }\n    expect: { exit: failure, stderr: denied }\n",
        )
        .unwrap();
        assert_eq!(case.topology.0, vec!["nfit-1"]);
        assert_eq!(case.steps.len(), 3);
        assert_eq!(case.steps[1].timeout, Some(Duration::from_secs(5)));
        assert_eq!(case.steps[2].expect.exit, ExitExpect::Failure);
    }

    #[test]
    fn two_actions_is_an_error_with_location() {
        let err = refused("topology: nfit-1\nsteps:\n  - run: a\n    exec: [b]\n");
        assert!(err.contains("case.yaml:3:"), "{err}");
        assert!(err.contains("steps[0]"), "{err}");
        assert!(err.contains("exactly one of"), "{err}");
    }

    #[test]
    fn unknown_expectation_field() {
        let err = refused("topology: nfit-1\nsteps:\n  - run: a\n    expect: { exitcode: 1 }\n");
        assert!(err.contains("steps[0].expect.exitcode"), "{err}");
    }

    #[test]
    fn topology_list() {
        let case = parse("topology: [nfit-1, nfit-2]\nsteps: []\n").unwrap();
        assert_eq!(case.topology.0.len(), 2);
    }

    #[test]
    fn width_matrix_and_new_step_kinds() {
        let case = parse(
            "topology: { cxl_ways: [1, 6], and: [nfit-1] }\nmodes: [fsdax]\nsteps:\n  - checkpoint: before\n  - reboot: {}\n  - qmp: { execute: cxl-inject-poison, arguments: { path: /machine/peripheral/cxl-pmem0, start: 0, length: 64 } }\n",
        )
        .unwrap();
        assert_eq!(case.topology.0, vec!["cxl-x1", "cxl-x6", "nfit-1"]);
        assert_eq!(case.modes, vec![Mode::Fsdax]);
        assert_eq!(case.steps[0].action, Action::Checkpoint("before".into()));
        assert_eq!(case.steps[1].action, Action::Reboot);
        assert!(
            matches!(&case.steps[2].action, Action::Qmp { command, .. } if command == "cxl-inject-poison")
        );
    }

    #[test]
    fn impossible_width_in_a_matrix() {
        let err = refused("topology: { cxl_ways: [5] }\nsteps: []\n");
        assert!(err.contains("width 5"), "{err}");
    }

    #[test]
    fn qmp_arguments_checked_at_parse_time() {
        let err = refused(
            "topology: cxl-x1\nsteps:\n  - qmp: { execute: cxl-inject-poison, arguments: { path: /x } }\n",
        );
        assert!(err.contains("case.yaml:3:"), "{err}");
        assert!(err.contains("missing field"), "{err}");
    }

    #[test]
    fn checkpoint_names_are_file_safe() {
        let err = refused("topology: nfit-1\nsteps:\n  - checkpoint: a/b\n");
        assert!(err.contains("checkpoint name"), "{err}");
    }

    #[test]
    fn bad_duration() {
        let err = refused("topology: nfit-1\nsteps:\n  - run: a\n    timeout: soon\n");
        assert!(err.contains("steps[0].timeout"), "{err}");
    }
}
