//! One guest driver: [`CaseGuest`] owns a guest's life for a case, and
//! is what `run`'s trials, `explore`'s sequences and the power cuts'
//! restarts drive alike. It starts the guest (a boot, a restore, or a
//! crash image's backing files), brings it up (the drivers init leaves
//! to the harness, then the CXL regions assembled, labels initialized or
//! kept, each assembly command a step between kernel-log markers:
//! [`CaseGuest::bring_up`]), hands the running guest to its caller for the
//! case's own steps ([`CaseGuest::machine`]), and reboots it on the same
//! files ([`CaseGuest::reboot`]: stopped, its
//! boot logs kept under a suffix, booted cold). The sequence exists here
//! only; what each caller makes of each part (a verdict, a finding, a
//! setup failure) it says in the judge it hands to `bring_up`.

use std::path::Path;
use std::time::Duration;

use crate::assemble::{self, Labels};
use crate::command_line::shell;
use crate::kmsg::Record;
use crate::topology::Topology;
use crate::vm::agent::ExecOutput;
use crate::vm::machine::{self, Machine, StartSpec, StepRun};
use crate::vm::RunDir;

/// How long one assembly command may take.
const ASSEMBLY_TIMEOUT: Duration = Duration::from_secs(120);

/// A guest could not be driven: its QEMU, its agent or the kernel failed
/// it ([`machine::Error::is_infrastructure`] tells which), or a reboot
/// was asked of a guest that cannot have one.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Guest(#[from] machine::Error),
    #[error(transparent)]
    Qemu(#[from] crate::vm::qemu::Error),
    /// Setup step `number` (`line`) could not be run to its end.
    #[error("{source}")]
    Step {
        number: usize,
        line: String,
        source: machine::Error,
    },
    #[error("CXL region assembly: {0}")]
    Assembly(assemble::Error),
    #[error("a reboot would lose the hotplugged NVDIMMs (they are not on QEMU's command line)")]
    HotpluggedDevices,
}

impl Error {
    pub fn is_infrastructure(&self) -> bool {
        match self {
            Error::Guest(e) | Error::Step { source: e, .. } => e.is_infrastructure(),
            Error::Qemu(_) => true,
            Error::Assembly(assemble::Error::Guest(e)) => e.is_infrastructure(),
            Error::Assembly(_) | Error::HotpluggedDevices => false,
        }
    }
}

/// What a bring-up did, part by part, for its caller's judge.
pub enum Prepared<'a> {
    /// The drivers' command ran (topologies that defer drivers); the
    /// kernel records since the last were taken.
    Drivers {
        output: &'a ExecOutput,
        kernel: Vec<Record>,
    },
    /// The assembly commands are known (for the caller's clock).
    Planned,
    /// Assembly command `number` ran as a step of boot `boot`, with the
    /// records of its kernel-log window; `kernel_after`: those after it.
    Step {
        number: usize,
        line: &'a str,
        boot: usize,
        run: StepRun,
        kernel_after: Vec<Record>,
    },
}

/// Whether a bring-up assembles the topology's CXL regions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Regions {
    /// The harness assembles them, with this label policy.
    Assemble(Labels),
    /// The case does (its own steps), or there is nothing to assemble.
    LeftToCase,
}

/// A guest and its life for one case.
pub struct CaseGuest<'t> {
    /// `None` only once a reboot failed to bring the guest back.
    machine: Option<Machine>,
    topology: &'t Topology,
    /// Boots so far after the first (0: the first boot).
    boot: usize,
}

impl<'t> CaseGuest<'t> {
    /// A guest started already (booted, or restored from a saved state).
    pub fn new(machine: Machine, topology: &'t Topology) -> Self {
        CaseGuest {
            machine: Some(machine),
            topology,
            boot: 0,
        }
    }

    /// Starts a guest in `run` as `spec` says.
    pub async fn start(spec: &StartSpec<'t>, run: RunDir) -> Result<Self, Error> {
        let machine = Machine::start(spec, run).await?;
        Ok(Self::new(machine, spec.topology))
    }

    /// Starts a guest in a new run folder `name` under `runs_dir` on the
    /// backing files in `image` (a crash image), started as `spec` says.
    pub async fn start_on_image(
        spec: &StartSpec<'t>,
        runs_dir: &Path,
        name: &str,
        image: &'t Path,
    ) -> Result<Self, Error> {
        let run = RunDir::create(runs_dir, name, spec.topology)?;
        let on_image = spec.with_backing_from(image);
        Self::start(&on_image, run).await
    }

    pub fn topology(&self) -> &'t Topology {
        self.topology
    }

    /// The running guest.
    pub fn machine(&mut self) -> &mut Machine {
        self.machine.as_mut().expect("a running guest")
    }

    /// The running guest, if a failed reboot did not lose it.
    pub fn running(&self) -> Option<&Machine> {
        self.machine.as_ref()
    }

    /// Boots so far after the first.
    pub fn boot(&self) -> usize {
        self.boot
    }

    /// Hands the guest over (a template saving its state, a trial ending).
    pub fn take_machine(&mut self) -> Option<Machine> {
        self.machine.take()
    }

    /// Reads the kernel log on and takes what no step owns: after a boot,
    /// the boot's.
    pub async fn boot_log(&mut self) -> Result<Vec<Record>, Error> {
        let m = self.machine();
        m.read_kernel_log().await?;
        Ok(m.take_unattributed())
    }

    /// Whether the guest can boot again as it is: not with NVDIMMs
    /// hotplugged (QEMU's command line does not have them;
    /// [`Error::HotpluggedDevices`] otherwise).
    pub fn can_reboot(&mut self) -> bool {
        self.machine().hotplugged() == 0
    }

    /// Powers the guest off and boots it again on the same backing files,
    /// cold (a reboot is a real boot); the last boot's console, QEMU and
    /// QMP logs are kept under a `.bootN` suffix. The caller then brings it
    /// up with [`Labels::Keep`] ([`Self::bring_up`]), as firmware would not
    /// assemble CXL regions.
    pub async fn reboot(&mut self, spec: &StartSpec<'_>) -> Result<(), Error> {
        if !self.can_reboot() {
            return Err(Error::HotpluggedDevices);
        }
        let old = self.machine.take().expect("a running guest");
        let run = old.stop().await;
        run.keep_boot_logs(self.boot);
        self.boot += 1;
        self.machine = Some(Machine::start(&spec.cold(), run).await?);
        Ok(())
    }

    /// Loads the drivers init leaves to the harness, then assembles the
    /// regions (`regions`) one command at a time as steps numbered from
    /// `after_step + 1`; `judge` is told each part and stops the bring-up
    /// with its `Err`. Returns the number of the last step run, or the
    /// judge's reason to stop.
    pub async fn bring_up<J>(
        &mut self,
        regions: Regions,
        after_step: usize,
        mut judge: impl FnMut(Prepared<'_>) -> Result<(), J>,
    ) -> Result<Result<usize, J>, Error> {
        let m = self.machine();
        if let Some(output) = m.load_drivers().await? {
            let kernel = m.take_unattributed();
            if let Err(stop) = judge(Prepared::Drivers {
                output: &output,
                kernel,
            }) {
                return Ok(Err(stop));
            }
        }
        let Regions::Assemble(labels) = regions else {
            return Ok(Ok(after_step));
        };
        let topology = self.topology;
        let lines = assemble::plan(self.machine(), topology, labels)
            .await
            .map_err(Error::Assembly)?;
        if let Err(stop) = judge(Prepared::Planned) {
            return Ok(Err(stop));
        }
        let mut number = after_step;
        for line in lines {
            number += 1;
            let m = self.machine();
            let run = match m.step(number, &shell(line.clone()), ASSEMBLY_TIMEOUT).await {
                Ok(run) => run,
                Err(source) => {
                    return Err(Error::Step {
                        number,
                        line,
                        source,
                    })
                }
            };
            let kernel_after = m.take_unattributed();
            let boot = self.boot;
            if let Err(stop) = judge(Prepared::Step {
                number,
                line: &line,
                boot,
                run,
                kernel_after,
            }) {
                return Ok(Err(stop));
            }
        }
        Ok(Ok(number))
    }

    /// Powers the guest off (the guest's own shutdown first).
    pub async fn stop(mut self) -> Option<RunDir> {
        Some(self.machine.take()?.stop().await)
    }

    /// Ends QEMU at once; the run folder, for evidence or removal.
    pub async fn kill(mut self) -> Option<RunDir> {
        Some(self.machine.take()?.kill().await)
    }
}
