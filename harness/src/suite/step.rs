//! A case's steps: one action each (a shell line, a program, a file
//! write, an NVDIMM hotplug, a QMP command, a reboot, a power cut, a
//! checkpoint) with its expectations, read strictly from a case file and
//! written back in the same form ([`RawStep`] is the file's shape).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::duration as humantime_serde_compat;
use crate::size::Size;

/// One step: exactly one action, with expectations.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(try_from = "RawStep", into = "RawStep")]
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
                crate::command_line::shell(line.clone()).to_vec()
            }
            Action::Exec(argv) => argv.clone(),
            Action::HotplugNvdimm { .. }
            | Action::Qmp { .. }
            | Action::Reboot
            | Action::Checkpoint(_) => Vec::new(),
            Action::Write { path, value } => {
                // The shell's echo reports the errno of a failed write
                // ("write error: Invalid argument"); printf stays silent.
                let mut argv = crate::command_line::shell("echo -n \"$1\" > \"$2\"").to_vec();
                argv.extend(["write".into(), value.clone(), path.clone()]);
                argv
            }
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

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    #[serde(default, skip_serializing_if = "ExitExpect::is_success")]
    pub exit: ExitExpect,
    /// Text that must appear in stdout / stderr.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr: Option<String>,
    /// Kernel reports (WARNING, BUG, ...) this step is expected to cause,
    /// each matched as a substring of the report's first line.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kernel_reports: Vec<String>,
}

impl Expect {
    /// The default: exit 0, nothing else asked.
    pub fn is_default(&self) -> bool {
        *self == Expect::default()
    }
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

impl serde::Serialize for ExitExpect {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ExitExpect::Success => s.serialize_i32(0),
            ExitExpect::Code(c) => s.serialize_i32(*c),
            ExitExpect::Failure => s.serialize_str("failure"),
            ExitExpect::Any => s.serialize_str("any"),
        }
    }
}

impl ExitExpect {
    pub fn is_success(&self) -> bool {
        *self == ExitExpect::Success
    }

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

/// A step as a case file has it: one action key, `expect:`, `timeout:`.
#[derive(Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    #[serde(skip_serializing_if = "Option::is_none")]
    run: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exec: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    write: Option<RawWrite>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hotplug_nvdimm: Option<RawHotplug>,
    #[serde(skip_serializing_if = "Option::is_none")]
    qmp: Option<RawQmp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reboot: Option<RawReboot>,
    #[serde(skip_serializing_if = "Option::is_none")]
    power_cut: Option<super::power_cut::PowerCut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    checkpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Expect::is_default")]
    expect: Expect,
    #[serde(
        default,
        with = "humantime_serde_compat::option",
        skip_serializing_if = "Option::is_none"
    )]
    timeout: Option<Duration>,
}

impl From<Step> for RawStep {
    fn from(step: Step) -> RawStep {
        let mut raw = RawStep {
            expect: step.expect,
            timeout: step.timeout,
            ..RawStep::default()
        };
        match step.action {
            Action::Run(line) => raw.run = Some(line),
            Action::Exec(argv) => raw.exec = Some(argv),
            Action::Write { path, value } => raw.write = Some(RawWrite { path, value }),
            Action::HotplugNvdimm { size, label_size } => {
                raw.hotplug_nvdimm = Some(RawHotplug { size, label_size })
            }
            Action::Qmp { command, arguments } => {
                raw.qmp = Some(RawQmp {
                    execute: command,
                    arguments,
                })
            }
            Action::Reboot => raw.reboot = Some(RawReboot {}),
            Action::PowerCut(cut) => raw.power_cut = Some(cut),
            Action::Checkpoint(name) => raw.checkpoint = Some(name),
        }
        raw
    }
}

#[derive(Deserialize, Serialize)]
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
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawQmp {
    execute: String,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    arguments: serde_json::Value,
}

/// `reboot: {}`
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawReboot {}

#[derive(Deserialize, Serialize)]
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
    use super::super::CaseSpec;

    /// Every case file under `dir`.
    fn case_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() && !path.ends_with("snapshots") {
                case_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "yaml")
                && !path.ends_with("upstream.yaml")
            {
                out.push(path);
            }
        }
    }

    #[test]
    fn every_case_in_the_suites_writes_back_as_it_reads() {
        let suites = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../suites");
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&suites).unwrap().flatten() {
            if entry.path().is_dir() {
                case_files(&entry.path(), &mut files);
            }
        }
        assert!(files.len() > 50, "{} case files", files.len());
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            let name = file.display().to_string();
            let case: CaseSpec = crate::yaml::parse(&name, &text).unwrap();
            let written = serde_yaml_ng::to_string(&case).unwrap();
            let again: CaseSpec = crate::yaml::parse(&name, &written)
                .unwrap_or_else(|e| panic!("{name} written back does not load: {e}\n{written}"));
            assert_eq!(case, again, "{name}:\n{written}");
        }
    }
}
