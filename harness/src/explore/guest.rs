//! One explored guest: started from the warm state of its topology (or
//! cold), its devices readied and its labels initialized as a case's first
//! steps would, then each operation of a sequence run as a real step
//! (between kernel-log markers) against the region, and the region
//! observed after it. A namespace is followed by the UUID its create gave
//! (the device names change across a reboot).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

mod command;

use super::invariant::{Dimms, StepResult};
use super::model::{Op, Slot};
use super::observe::{self, Observation};
use crate::assemble::{self, Labels};
use crate::case_guest::{self, CaseGuest, Prepared, Regions};
use crate::command_line::shell;
use crate::runner::start::SavedState;
use crate::runner::warm;
use crate::runner::{Config, GuestEnv};
use crate::suite::Mode;
use crate::topology::Loaded;
use crate::vm::agent;
use crate::vm::machine::{self, Machine};
use crate::vm::RunDir;

/// What finding the region says when the guest has none.
const NO_ND_REGION: &str = "the guest has no nd region";

/// How long one operation may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// What every guest of an explored topology is started from.
pub struct Target<'a> {
    pub config: &'a Config,
    pub env: &'a GuestEnv,
    pub topology: &'a Loaded,
    pub state: Option<SavedState>,
}

/// The guest could not be started or driven: no verdict on the kernel.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    #[error(transparent)]
    Machine(#[from] machine::Error),
    #[error(transparent)]
    Guest(#[from] case_guest::Error),
    #[error(transparent)]
    Qemu(#[from] crate::vm::qemu::Error),
    #[error("readying the devices: {0}")]
    Ready(#[from] warm::ReadyError),
    #[error("{what}: {detail}")]
    Setup { what: &'static str, detail: String },
    /// The kernel reported a problem while the guest was prepared: a
    /// finding, before any step.
    #[error("kernel report while preparing the guest: {0}")]
    Prepared(String),
}

/// A step's command and how it ended, with its output.
#[derive(Clone, Debug, Default)]
pub struct Ran {
    pub result: StepResult,
    pub stdout: String,
    pub stderr: String,
    /// A CXL region operation left the guest without its nd region.
    pub region_lost: bool,
    /// The region after the step, read in the step's own guest call (an
    /// operation that keeps the region's name).
    pub observed: Option<Observation>,
}

pub struct ExploreGuest<'a> {
    target: &'a Target<'a>,
    guest: CaseGuest<'a>,
    /// The nd region the sequence works on.
    pub region: String,
    /// The CXL region under it, and the command that creates it again on
    /// the same devices, labels kept (CXL topologies).
    cxl_region: String,
    recreate: String,
    /// The CXL region's DIMMs as the pmem stack knows them (their
    /// `cxl_nvdimm` devices, `pmemK`), in interleave position order.
    dimms: Vec<String>,
    /// The DIMM [`Op::CxlDimmUnbind`] took away: while it is, the guest
    /// has no nd region.
    unbound: Option<String>,
    /// The nd region's DIMMs (`nmemN`) in the order of its mappings.
    nmems: Vec<String>,
    /// The DIMM [`Op::DimmDisable`] disabled.
    disabled_dimm: Option<String>,
    /// The UUID (as ndctl shows it) of each slot's namespace.
    uuids: BTreeMap<Slot, String>,
    steps: usize,
}

/// The labels a case initializes before its first namespace (new label
/// areas read as label-less). CXL regions get theirs when assembled.
const INIT_LABELS: &str =
    "ndctl disable-region all && ndctl init-labels -f all && ndctl enable-region all";

impl<'a> ExploreGuest<'a> {
    /// A fresh guest in run folder `name`, ready for a sequence's first step.
    pub async fn start(target: &'a Target<'a>, name: &str) -> Result<Self, GuestError> {
        let config = target.config;
        let run = RunDir::create(&config.runs_dir, name, &target.topology.topology)?;
        let spec = target
            .env
            .start_spec(&target.topology.topology, config.boot_timeout)
            .with_incoming(target.state.as_ref().map(|s| s.state.as_path()));
        let mut m = Machine::start(&spec, run).await?;
        let point = target.state.as_ref().map(|s| s.point);
        if let Err(e) = warm::ready_devices(&mut m, &target.topology.topology, point).await {
            m.kill().await.remove();
            if let warm::ReadyError::Guest { source, .. } = &e {
                if !source.is_infrastructure() {
                    let first = source.to_string().lines().next().unwrap_or("").to_owned();
                    return Err(GuestError::Prepared(first));
                }
            }
            return Err(e.into());
        }
        let mut guest = ExploreGuest {
            target,
            guest: CaseGuest::new(m, &target.topology.topology),
            region: String::new(),
            cxl_region: String::new(),
            recreate: String::new(),
            dimms: Vec::new(),
            unbound: None,
            nmems: Vec::new(),
            disabled_dimm: None,
            uuids: BTreeMap::new(),
            steps: 0,
        };
        // What the kernel said before the first step (the boot, or the
        // template's, restored, and the drivers' probes) belongs to no
        // step; a report there is a finding of its own. Read first: each
        // setup command drops the records it leaves.
        guest.machine().read_kernel_log().await?;
        let records = guest.machine().take_unattributed();
        if let Some(r) = records.iter().find(|r| crate::kmsg::problem(r).is_some()) {
            return Err(GuestError::Prepared(r.message.trim().to_owned()));
        }
        if target.topology.topology.cxl.is_none() {
            guest.setup("initializing the labels", INIT_LABELS).await?;
        }
        // The regions' names (and on CXL the region's re-creation and its
        // DIMMs) before the first step, which may be a CXL operation.
        guest.find_regions().await?;
        Ok(guest)
    }

    /// The nd region (and the CXL region under it, with the command that
    /// makes it again) as the guest names them now: a reboot or a CXL
    /// region's re-creation may renumber them.
    async fn find_regions(&mut self) -> Result<(), GuestError> {
        let first =
            |bus: &str| format!("ls /sys/bus/{bus}/devices | grep '^region' | sort -V | head -1");
        // The nd region on the first line, its DIMMs (by mapping) after
        // it: one guest call, made before every sequence.
        let region_and_dimms = format!(
            "r=$({}); echo \"$r\"; if [ -n \"$r\" ]; then \
             for m in /sys/bus/nd/devices/$r/mapping[0-9]*; do [ -e \"$m\" ] && echo \"$m $(cut -d, -f1 \"$m\")\"; done \
             | sort -V | cut -d' ' -f2; fi",
            first("nd")
        );
        let found = self.setup("finding the region", &region_and_dimms).await?;
        let mut lines = found.lines();
        self.region = lines.next().unwrap_or_default().trim().to_owned();
        self.nmems = lines
            .flat_map(str::split_whitespace)
            .map(str::to_owned)
            .collect();
        // A DIMM short, the nd region is expected gone.
        if self.region.is_empty() && self.unbound.is_none() {
            return Err(GuestError::Setup {
                what: "finding the region",
                detail: NO_ND_REGION.into(),
            });
        }
        if self.target.topology.topology.cxl.is_none() {
            return Ok(());
        }
        self.cxl_region = self
            .setup("finding the CXL region", &first("cxl"))
            .await?
            .trim()
            .to_owned();
        self.recreate = self.plan_recreation().await?;
        let dimms = format!(
            "cxl list -R -T -r {} \
             | awk -F'\"' '/\"position\"/ {{p=$3; gsub(/[:,]/, \"\", p)}} /\"memdev\"/ {{print p, $4}}' \
             | sort -n | while read -r _ m; do d=$(ls -d /sys/bus/cxl/devices/$m/pmem[0-9]* | head -1); echo \"${{d##*/}}\"; done",
            self.cxl_region
        );
        self.dimms = self
            .setup("finding the CXL region's DIMMs", &dimms)
            .await?
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        Ok(())
    }

    /// Whether a DIMM of the region is disabled now.
    pub fn dimm_state(&self) -> Dimms {
        match self.disabled_dimm {
            Some(_) => Dimms::OneDisabled,
            None => Dimms::AllEnabled,
        }
    }

    /// How many DIMMs the nd region maps.
    pub fn dimm_count(&self) -> u32 {
        self.nmems.len() as u32
    }

    fn machine(&mut self) -> &mut Machine {
        self.guest.machine()
    }

    /// Runs a preparation command; its stdout.
    async fn setup(&mut self, what: &'static str, script: &str) -> Result<String, GuestError> {
        let out = self.machine().exec(&shell(script), STEP_TIMEOUT).await?;
        if !out.success() {
            let detail = format!("`{script}`: {}", out.stderr_text().trim());
            return Err(GuestError::Setup { what, detail });
        }
        self.machine().take_unattributed();
        Ok(out.stdout_text())
    }

    /// The region and its namespaces as the guest shows them now.
    pub async fn observe(&mut self) -> Result<Observation, GuestError> {
        if self.region.is_empty() {
            // A DIMM short: no nd region to show.
            return Ok(Observation::default());
        }
        let script = observe::script(&self.region);
        let out = self.machine().exec(&shell(script), STEP_TIMEOUT).await?;
        Ok(observe::parse(&out.stdout_text()))
    }

    /// Runs `op` as the next step; `Ok` also when the kernel misbehaved
    /// (a report, a hang: the result says so), `Err` when the harness or
    /// QEMU failed.
    pub async fn run(&mut self, op: &Op, command: &str) -> Result<Ran, GuestError> {
        if matches!(op, Op::Reboot) {
            self.steps += 1;
            return self.reboot().await;
        }
        // The observation goes with the step unless the step may rename or
        // take away the region (then it is found again first).
        let then =
            (!op.renews_region() && !self.region.is_empty()).then(|| observe::script(&self.region));
        let mut ran = self.execute(command, then).await?;
        if matches!(op, Op::CxlDriverReload)
            && ran.result.console_report.is_none()
            && ran.result.exit_code == Some(0)
        {
            let recreate = self.plan_recreation().await?;
            let again = self.execute(&recreate, None).await?;
            ran.result.command = Some(format!("{command} && {recreate}"));
            ran.result.exit_code = again.result.exit_code;
            ran.result.kernel.extend(again.result.kernel);
            ran.result.console_report = again.result.console_report;
            ran.stdout.push_str(&again.stdout);
            ran.stderr.push_str(&again.stderr);
        }
        if ran.result.console_report.is_some() {
            return Ok(ran);
        }
        self.after(op, &mut ran).await?;
        Ok(ran)
    }

    /// The commands that create the CXL region again on the devices the
    /// guest has now, labels kept, as one shell line.
    async fn plan_recreation(&mut self) -> Result<String, GuestError> {
        let m = self.guest.machine();
        let plan = assemble::plan(m, &self.target.topology.topology, Labels::Keep)
            .await
            .map_err(|e| GuestError::Setup {
                what: "planning the CXL region's re-creation",
                detail: e.to_string(),
            })?;
        Ok(plan.join(" >/dev/null && "))
    }

    /// Runs `command` as the next step between kernel-log markers, and the
    /// observation script `then` in the same guest call; a fatal kernel
    /// report, a hang or a failure of the guest is in the result's
    /// `console_report`.
    async fn execute(&mut self, command: &str, then: Option<String>) -> Result<Ran, GuestError> {
        self.steps += 1;
        let n = self.steps;
        let mut ran = Ran {
            result: StepResult {
                command: Some(command.to_owned()),
                ..Default::default()
            },
            ..Default::default()
        };
        let argv = shell(command);
        let stepped = match &then {
            Some(script) => (self
                .machine()
                .step_then(n, &argv, script, STEP_TIMEOUT)
                .await)
                .map(|(step, seen)| (step, Some(observe::parse(&seen)))),
            None => (self.machine().step(n, &argv, STEP_TIMEOUT).await).map(|step| (step, None)),
        };
        match stepped {
            Ok((step, observed)) => {
                ran.observed = observed;
                ran.result.exit_code = step.output.exit_code;
                ran.result.kernel = step.kernel;
                ran.stdout = step.output.stdout_text();
                ran.stderr = step.output.stderr_text();
            }
            Err(machine::Error::KernelReport { report, .. }) => {
                ran.result.console_report = fatal_line(&report.excerpt);
            }
            Err(machine::Error::Agent(agent::Error::CommandTimeout { timeout, .. })) => {
                ran.result.console_report =
                    Some(format!("the step did not finish within {timeout:?} (hung)"));
            }
            Err(e) if !e.is_infrastructure() => {
                ran.result.console_report =
                    Some(e.to_string().lines().next().unwrap_or("").to_owned());
            }
            Err(e) => return Err(e.into()),
        }
        Ok(ran)
    }

    /// What a finished step leaves behind: the kernel's later records, the
    /// namespaces' UUIDs, the unbound DIMM, the regions found again.
    async fn after(&mut self, op: &Op, ran: &mut Ran) -> Result<(), GuestError> {
        self.machine().read_kernel_log().await?;
        ran.result.kernel.extend(self.machine().take_unattributed());
        if let (Op::Create { slot, .. } | Op::Reconfigure { slot, .. }, Some(0)) =
            (op, ran.result.exit_code)
        {
            if let Some(uuid) = created_uuid(&ran.stdout) {
                self.uuids.insert(*slot, uuid);
            }
        }
        if let (Op::Destroy { slot }, Some(0)) = (op, ran.result.exit_code) {
            self.uuids.remove(slot);
        }
        if matches!(op, Op::InitLabels) && ran.result.exit_code == Some(0) {
            self.uuids.clear();
        }
        match op {
            Op::CxlDimmUnbind { .. } if ran.result.exit_code == Some(0) => {
                self.unbound = ran
                    .stdout
                    .trim()
                    .strip_prefix("unbound ")
                    .map(str::to_owned);
            }
            // Bound again or not, the region must be whole now.
            Op::CxlDimmBind => self.unbound = None,
            Op::DimmDisable { position } if ran.result.exit_code == Some(0) => {
                self.disabled_dimm = self.nmems.get(*position as usize).cloned();
            }
            Op::DimmEnable if ran.result.exit_code == Some(0) => self.disabled_dimm = None,
            _ => {}
        }
        if op.renews_region() {
            ran.region_lost = self.region_lost().await?;
        }
        Ok(())
    }

    /// Finds the regions again after an operation that must bring the nd
    /// region back; whether it did not (a finding, not a harness fault).
    async fn region_lost(&mut self) -> Result<bool, GuestError> {
        match self.find_regions().await {
            Err(GuestError::Setup { detail, .. }) if detail == NO_ND_REGION => Ok(true),
            other => other.map(|()| false),
        }
    }

    /// Powers the guest off and boots it again on the same backing files;
    /// CXL regions are created again with their labels kept.
    async fn reboot(&mut self) -> Result<Ran, GuestError> {
        let target = self.target;
        let spec = target
            .env
            .start_spec(&target.topology.topology, target.config.boot_timeout);
        self.guest.reboot(&spec).await?;
        self.unbound = None;
        self.disabled_dimm = None;
        let mut kernel = self.guest.boot_log().await?;
        let brought_up = self
            .guest
            .bring_up(Regions::Assemble(Labels::Keep), self.steps, |part| {
                match part {
                    Prepared::Drivers { output, kernel: k } => {
                        kernel.extend(k);
                        if !output.success() {
                            return Err(output.stderr_text());
                        }
                    }
                    Prepared::Planned => {}
                    // An assembly command's own failure shows in what
                    // the region looks like after.
                    Prepared::Step {
                        run, kernel_after, ..
                    } => {
                        kernel.extend(run.kernel);
                        kernel.extend(kernel_after);
                    }
                }
                Ok(())
            })
            .await;
        match brought_up {
            Ok(Ok(last)) => self.steps = last,
            Ok(Err(detail)) => {
                return Err(GuestError::Setup {
                    what: "loading the drivers after the reboot",
                    detail,
                })
            }
            // The region's assembly met a kernel fault: the reboot's
            // finding.
            Err(case_guest::Error::Step {
                source: machine::Error::KernelReport { report, .. },
                number,
                ..
            }) => {
                self.steps = number;
                return Ok(Ran {
                    result: StepResult {
                        command: Some("reboot".into()),
                        console_report: fatal_line(&report.excerpt),
                        ..Default::default()
                    },
                    ..Default::default()
                });
            }
            Err(case_guest::Error::Assembly(e)) => {
                return Err(GuestError::Setup {
                    what: "assembling the regions after the reboot",
                    detail: e.to_string(),
                })
            }
            Err(e) => return Err(e.into()),
        }
        self.machine().read_kernel_log().await?;
        kernel.extend(self.machine().take_unattributed());
        let region_lost = self.region_lost().await?;
        Ok(Ran {
            result: StepResult {
                command: Some("reboot".into()),
                exit_code: Some(0),
                kernel,
                console_report: None,
            },
            region_lost,
            ..Default::default()
        })
    }

    /// Ends QEMU; the run folder, for evidence or removal.
    pub async fn kill(self) -> Option<RunDir> {
        self.guest.kill().await
    }

    pub fn run_folder(&self) -> Option<PathBuf> {
        self.guest.running().map(|m| m.run.path.clone())
    }
}
/// The first line of a console excerpt that is a fatal kernel report.
fn fatal_line(excerpt: &str) -> Option<String> {
    excerpt
        .lines()
        .find(|l| crate::kmsg::fatal_console_report(l).is_some())
        .map(str::to_owned)
}

/// The UUID a create or a reconfigure printed.
fn created_uuid(stdout: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).ok()?;
    v.get("uuid")?.as_str().map(str::to_owned)
}

/// Whether `mode` has a block device (fsdax, sector, raw) to read.
pub fn has_block_device(mode: Mode) -> bool {
    mode != Mode::Devdax
}
