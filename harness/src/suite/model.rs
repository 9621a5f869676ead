//! The case format, parsed strictly.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::duration as humantime_serde_compat;
use super::ignore::Ignored;
use crate::size::Size;

/// One case file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseSpec {
    #[serde(default)]
    pub description: String,
    /// One topology name (or path), or a list: one trial each.
    pub topology: TopologyRef,
    /// Shown instead of running, everywhere or on the guests it names
    /// ([`Ignored`]); never counted as passed.
    #[serde(default)]
    pub ignored: Ignored,
    /// Failures known on some guests and topologies: the trial runs there
    /// and its failure is reported as known ([`super::known`]).
    #[serde(default)]
    pub known_failures: super::known::KnownFailures,
    /// For a regression case: the upstream bug it reproduces.
    #[serde(default)]
    pub bug: Option<Bug>,
    /// Appended to the guest kernel's command line (e.g. `memhp_default_state=offline`).
    #[serde(default)]
    pub kernel_args: String,
    /// Boot this case's guests cold instead of starting them from the
    /// saved state of a ready guest (see README, "Warm start").
    #[serde(default)]
    pub cold: bool,
    /// The namespace modes the case exercises, for the summary per mode.
    #[serde(default)]
    pub modes: Vec<Mode>,
    /// `false`: the harness leaves the topology's CXL regions to the case's
    /// own steps (default: assembled, labels initialized).
    #[serde(default = "yes")]
    pub assemble: bool,
    /// The steps run ndctl's own tests: the trial needs the image that
    /// ships them.
    #[serde(default)]
    pub ndctl_tests: bool,
    /// A step exiting with this code skips the trial (shown as ignored with
    /// the step's last output line as the reason, never as a pass): 77 for
    /// ndctl's tests, as for meson and automake.
    #[serde(default)]
    pub skip_exit: Option<i32>,
    /// `false`: judged by its steps' exit codes and the kernel log alone, no
    /// snapshots (upstream tests whose output is theirs, not ours).
    #[serde(default = "yes")]
    pub snapshots: bool,
    /// Default timeout of each step.
    #[serde(default = "default_step_timeout", with = "humantime_serde_compat")]
    pub step_timeout: Duration,
    pub steps: Vec<Step>,
}

/// The upstream bug behind a regression case.
#[derive(Clone, Debug, Deserialize, PartialEq)]
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

fn default_step_timeout() -> Duration {
    Duration::from_secs(60)
}

/// One topology (`topology: nfit-1`), several (`topology: [nfit-1, nfit-2]`),
/// or a matrix of CXL widths (`topology: { cxl_ways: [1, 2, 3, 4, 6, 8] }`,
/// the shipped `cxl-xN` topologies), optionally with more names
/// (`{ cxl_ways: [2, 6], and: [nfit-1] }`).
#[derive(Clone, Debug)]
pub struct TopologyRef(pub Vec<String>);

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

/// One step: exactly one action, with expectations.
#[derive(Clone, Debug, Deserialize)]
#[serde(try_from = "RawStep")]
pub struct Step {
    pub action: Action,
    pub expect: Expect,
    pub timeout: Option<Duration>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// A shell line run by the guest's /bin/sh.
    Run(String),
    /// A program and its arguments, no shell.
    Exec(Vec<String>),
    /// A sysfs (or any file) write.
    Write { path: String, value: String },
    /// A new NFIT NVDIMM added through QMP (object-add, device_add); the step
    /// ends when the guest lists one more nmem.
    HotplugNvdimm { size: Size, label_size: Size },
    /// A QMP command, typed through `qapi` (see `qmp::STEP_COMMANDS`).
    Qmp {
        command: String,
        arguments: serde_json::Value,
    },
    /// Power off and boot the same guest again on the same backing files.
    Reboot,
    /// A command run with power cuts taken during it, each judged on a
    /// guest started again on what the cut left.
    PowerCut(super::power_cut::PowerCut),
    /// Snapshot the layout and the kernel log since the last checkpoint.
    Checkpoint(String),
}

impl Action {
    /// The guest command that performs the action.
    pub fn argv(&self) -> Vec<String> {
        match self {
            Action::Run(line) | Action::PowerCut(super::power_cut::PowerCut { run: line, .. }) => {
                vec!["/bin/sh".into(), "-c".into(), line.clone()]
            }
            Action::Exec(argv) => argv.clone(),
            Action::HotplugNvdimm { .. }
            | Action::Qmp { .. }
            | Action::Reboot
            | Action::Checkpoint(_) => Vec::new(),
            Action::Write { path, value } => vec![
                "/bin/sh".into(),
                "-c".into(),
                // The shell's echo reports the errno of a failed write
                // ("write error: Invalid argument"); printf stays silent.
                "echo -n \"$1\" > \"$2\"".into(),
                "write".into(),
                value.clone(),
                path.clone(),
            ],
        }
    }

    /// How the transcript shows it.
    pub fn display(&self) -> String {
        match self {
            Action::Run(line) => line.clone(),
            Action::Exec(argv) => argv.join(" "),
            Action::Write { path, value } => format!("write {value:?} > {path}"),
            Action::HotplugNvdimm { size, label_size } => {
                format!("qmp: hotplug nvdimm (size {size}, label {label_size})")
            }
            Action::Qmp { command, arguments } if arguments.is_null() => format!("qmp: {command}"),
            Action::Qmp { command, arguments } => format!("qmp: {command} {arguments}"),
            Action::Reboot => "reboot".to_owned(),
            Action::PowerCut(cut) => cut.display(),
            Action::Checkpoint(name) => format!("checkpoint {name}"),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    #[serde(default)]
    pub exit: ExitExpect,
    /// Text that must appear in stdout / stderr.
    #[serde(default)]
    pub stdout: Option<String>,
    #[serde(default)]
    pub stderr: Option<String>,
    /// Kernel reports (WARNING, BUG, ...) this step is expected to cause,
    /// each matched as a substring of the report's first line.
    #[serde(default)]
    pub kernel_reports: Vec<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExitExpect {
    #[default]
    Success,
    Code(i32),
    /// Any non-zero exit.
    Failure,
    Any,
}

impl ExitExpect {
    pub fn accepts(self, code: Option<i32>) -> bool {
        match self {
            ExitExpect::Success => code == Some(0),
            ExitExpect::Code(c) => code == Some(c),
            ExitExpect::Failure => code != Some(0),
            ExitExpect::Any => true,
        }
    }
}

impl std::fmt::Display for ExitExpect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitExpect::Success => f.write_str("0"),
            ExitExpect::Code(c) => write!(f, "{c}"),
            ExitExpect::Failure => f.write_str("non-zero"),
            ExitExpect::Any => f.write_str("any"),
        }
    }
}

impl<'de> Deserialize<'de> for ExitExpect {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ExitExpectVisitor;
        impl serde::de::Visitor<'_> for ExitExpectVisitor {
            type Value = ExitExpect;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an exit code, `failure` or `any`")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ExitExpect, E> {
                Ok(if v == 0 {
                    ExitExpect::Success
                } else {
                    ExitExpect::Code(v as i32)
                })
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ExitExpect, E> {
                self.visit_i64(v as i64)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ExitExpect, E> {
                match v {
                    "failure" => Ok(ExitExpect::Failure),
                    "any" => Ok(ExitExpect::Any),
                    _ => Err(E::custom(format!(
                        "`{v}` is not an exit expectation: use a number, `failure` or `any`"
                    ))),
                }
            }
        }
        d.deserialize_any(ExitExpectVisitor)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    run: Option<String>,
    exec: Option<Vec<String>>,
    write: Option<RawWrite>,
    hotplug_nvdimm: Option<RawHotplug>,
    qmp: Option<RawQmp>,
    reboot: Option<RawReboot>,
    power_cut: Option<super::power_cut::PowerCut>,
    checkpoint: Option<String>,
    #[serde(default)]
    expect: Expect,
    #[serde(default, with = "humantime_serde_compat::option")]
    timeout: Option<Duration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHotplug {
    size: Size,
    #[serde(default = "default_label")]
    label_size: Size,
}

fn default_label() -> Size {
    Size(128 << 10)
}

/// `qmp: { execute: NAME, arguments: {...} }`, as on the QMP wire.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQmp {
    execute: String,
    #[serde(default)]
    arguments: serde_json::Value,
}

/// `reboot: {}`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReboot {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWrite {
    path: String,
    value: String,
}

/// A step that is not one well-formed action. Reported through serde, with
/// the file, line and YAML path of the step in front.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("`exec` needs a program")]
    ExecWithoutProgram,
    /// A QMP command or arguments `qapi` does not accept.
    #[error(transparent)]
    Qmp(#[from] crate::vm::qmp::StepError),
    #[error("checkpoint name `{name}`: use letters, digits, `-` and `_` (it names a snapshot file; `transcript` is taken)")]
    CheckpointName { name: String },
    #[error("a step has exactly one of `run`, `exec`, `write`, `hotplug_nvdimm`, `qmp`, `reboot`, `power_cut`, `checkpoint`; this one has {count}")]
    ActionCount { count: usize },
}

impl TryFrom<RawStep> for Step {
    type Error = StepError;
    fn try_from(raw: RawStep) -> Result<Step, StepError> {
        let mut actions = Vec::new();
        if let Some(line) = raw.run {
            actions.push(Action::Run(line));
        }
        if let Some(argv) = raw.exec {
            if argv.is_empty() {
                return Err(StepError::ExecWithoutProgram);
            }
            actions.push(Action::Exec(argv));
        }
        if let Some(write) = raw.write {
            actions.push(Action::Write {
                path: write.path,
                value: write.value,
            });
        }
        if let Some(hotplug) = raw.hotplug_nvdimm {
            actions.push(Action::HotplugNvdimm {
                size: hotplug.size,
                label_size: hotplug.label_size,
            });
        }
        if let Some(qmp) = raw.qmp {
            crate::vm::qmp::check_step(&qmp.execute, &qmp.arguments)?;
            actions.push(Action::Qmp {
                command: qmp.execute,
                arguments: qmp.arguments,
            });
        }
        if raw.reboot.is_some() {
            actions.push(Action::Reboot);
        }
        if let Some(cut) = raw.power_cut {
            actions.push(Action::PowerCut(cut));
        }
        if let Some(name) = raw.checkpoint {
            if name.is_empty()
                || name == "transcript"
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(StepError::CheckpointName { name });
            }
            actions.push(Action::Checkpoint(name));
        }
        if actions.len() != 1 {
            return Err(StepError::ActionCount {
                count: actions.len(),
            });
        }
        Ok(Step {
            action: actions.remove(0),
            expect: raw.expect,
            timeout: raw.timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
