//! The trial state machine: a guest taken from its boot (or restore)
//! through the drivers, the CXL region assembly and the case's steps,
//! checkpoints and reboots, with everything it did kept in a [`Trace`] for
//! the verdict, the snapshots and the evidence.

use std::time::{Duration, Instant};

use super::capture::{names_and_layout, stable_names};
use super::step::run_step;
use super::verdict::{
    check_reports, guest_error, judge_seen, machine_verdict, prepared, Seen, Verdict,
};
use crate::assemble::Labels;
use crate::case_guest::{self, CaseGuest, Prepared, Regions};
use crate::kmsg::{self, Record};
use crate::names::Names;
use crate::powercut::cut::{self, CutPlace};
use crate::runner::laps::Laps;
use crate::runner::result::Cause;
use crate::runner::start::{Assembly, Prelude, SavePoint};
use crate::suite::PointSelection;
use crate::suite::{Action, PowerCut, Step, Trial};
use crate::topology::Topology;
use crate::transcript::{self, StepRecord};
use crate::vm::agent;
use crate::vm::machine::{self, Machine, StartSpec};

/// Where the kernel records no step owns are.
#[derive(Clone, Copy, PartialEq, Eq)]
enum KernelLog {
    /// Read on from the guest's log first.
    ReadGuest,
    /// Already read (while waiting for a step's end marker).
    AlreadyRead,
}

/// What a trial has done so far, kept when a step fails.
pub struct Trace<'a> {
    topology: &'a Topology,
    assembly: Assembly,
    /// The guest, its boots and its bring-ups.
    pub guest: CaseGuest<'a>,
    pub records: Vec<StepRecord>,
    /// Stable device names of each boot.
    pub names: Vec<Names>,
    /// Checkpoint name and snapshot body, in order; `layout` last.
    pub checkpoints: Vec<(String, String)>,
    /// Relevant kernel records since the last checkpoint.
    since_checkpoint: Vec<Record>,
    /// The number of the last step run (setup steps count too).
    step_count: usize,
    /// The exit code that skips the trial.
    skip_exit: Option<i32>,
    /// Where the trial's time went, written to its evidence.
    pub clock: Laps,
    /// Which crash points a power-cut step judges.
    power_cuts: PointSelection,
    /// Told of each step as it ends (the run's `StepFinished` events).
    on_step: Option<&'a OnStep<'a>>,
    /// How many of `records` `on_step` has been told of.
    announced: usize,
}

/// What a trial tells of each step as it ends.
pub type OnStep<'a> = dyn Fn(&StepRecord) + Sync + 'a;

impl<'a> Trace<'a> {
    pub fn new(topology: &'a Topology, assembly: Assembly, machine: Machine, clock: Laps) -> Self {
        Trace {
            topology,
            assembly,
            guest: CaseGuest::new(machine, topology),
            records: Vec::new(),
            names: Vec::new(),
            checkpoints: Vec::new(),
            since_checkpoint: Vec::new(),
            step_count: 0,
            skip_exit: None,
            clock,
            power_cuts: PointSelection::default(),
            on_step: None,
            announced: 0,
        }
    }

    /// The trial's own trace: its topology, its assembly, its skip code.
    pub fn of_trial(trial: &'a Trial, machine: Machine, clock: Laps) -> Self {
        let spec = &trial.case.spec;
        let mut trace = Trace::new(
            &trial.topology.topology,
            Assembly::of(spec.assemble),
            machine,
            clock,
        );
        trace.skip_exit = spec.skip_exit;
        trace
    }

    /// The trace telling `on_step` of each step as it ends.
    pub fn with_step_events(mut self, on_step: &'a OnStep<'a>) -> Self {
        self.on_step = Some(on_step);
        self
    }

    /// Tells `on_step` of the steps recorded since it was last told.
    fn announce(&mut self) {
        if let Some(on_step) = self.on_step {
            for rec in &self.records[self.announced.min(self.records.len())..] {
                on_step(rec);
            }
        }
        self.announced = self.records.len();
    }

    /// The trace with its power-cut steps judging `selection`'s points.
    pub fn with_power_cuts(mut self, selection: PointSelection) -> Self {
        self.power_cuts = selection;
        self
    }

    pub fn machine(&mut self) -> &mut Machine {
        self.guest.machine()
    }

    /// Takes over what a template guest did before its state was saved.
    pub fn adopt(&mut self, p: Prelude) {
        self.machine().set_kmsg_position(p.cursor, p.pending);
        self.records = p.records;
        // Its template's steps, not this trial's.
        self.announced = self.records.len();
        self.since_checkpoint = p.since_checkpoint;
        self.step_count = p.steps;
    }

    /// What a template hands to the trials restored from it.
    pub fn into_prelude(self) -> (Machine, Prelude) {
        let mut guest = self.guest;
        let m = guest.take_machine().expect("a running guest");
        let (cursor, pending) = m.kmsg_position();
        let prelude = Prelude {
            records: self.records,
            since_checkpoint: self.since_checkpoint,
            steps: self.step_count,
            cursor,
            pending,
        };
        (m, prelude)
    }

    /// After a failing step: the transcript up to it (UUIDs not yet
    /// numbered).
    pub async fn transcript_so_far(&mut self) -> Option<String> {
        // The names as they are now (a step may have hotplugged a device
        // since the last checkpoint).
        let m = self.guest.running()?;
        let names = tokio::time::timeout(Duration::from_secs(10), stable_names(m, self.topology))
            .await
            .ok()?
            .ok()?;
        self.set_names(names);
        Some(transcript::render(&self.records, &self.names))
    }

    /// The kernel records no step owns yet, kept for the next checkpoint's
    /// log and checked for reports.
    async fn unattributed(&mut self, log: KernelLog, context: &str) -> Result<(), Verdict> {
        if log == KernelLog::ReadGuest {
            self.machine().read_kernel_log().await?;
        }
        let records = self.machine().take_unattributed();
        self.since_checkpoint
            .extend(records.iter().filter(|r| kmsg::relevant(r)).cloned());
        check_reports(&records, &[], context)
    }

    /// The stable names of the current boot, replacing any taken before.
    fn set_names(&mut self, names: Names) {
        self.names.truncate(self.guest.boot());
        self.names.push(names);
    }

    /// Runs every step of `trial` (CXL region assembly first, when the
    /// topology asks for it), stopping at the first one that fails its
    /// expectations, then takes the final checkpoint, `layout`.
    pub async fn run(
        &mut self,
        spec: &StartSpec<'_>,
        trial: &Trial,
        restored: Option<SavePoint>,
    ) -> Result<(), Verdict> {
        // A restored guest's boot (and setup, unless its drivers were left
        // to load after the restore) ran and were checked in its template;
        // their records came with the saved state.
        match restored {
            None => self.prepare().await?,
            Some(SavePoint::BeforeDrivers) if self.machine().defers_drivers() => {
                self.bring_up(Labels::Initialize, &[]).await?;
            }
            Some(_) => self.reattach().await?,
        }
        self.mount_shares().await?;
        for step in &trial.case.spec.steps {
            self.announce();
            let timeout = step.timeout.unwrap_or(trial.case.spec.step_timeout);
            match &step.action {
                Action::Checkpoint(name) => self.checkpoint(name).await?,
                Action::Reboot => self.reboot(spec, step).await?,
                Action::PowerCut(cut) => {
                    let seed = seed_of(&trial.name);
                    self.power_cut(spec, step, cut, seed, timeout).await?
                }
                _ => self.step(step, timeout).await?,
            }
        }
        self.announce();
        // The last checkpoint also records this boot's names.
        self.checkpoint("layout").await?;
        self.unattributed(KernelLog::ReadGuest, "after the last step")
            .await?;
        self.clock.lap("steps");
        Ok(())
    }

    /// The boot's kernel log, checked, then the drivers and the setup steps.
    pub async fn prepare(&mut self) -> Result<(), Verdict> {
        self.boot_check().await?;
        self.bring_up(Labels::Initialize, &[]).await
    }

    /// The boot's kernel log, checked for reports.
    pub async fn boot_check(&mut self) -> Result<(), Verdict> {
        let boot_log = self.guest.boot_log().await.map_err(guest_error)?;
        check_reports(&boot_log, &[], "during boot")
    }

    /// Gives the devices of a guest restored with its drivers bound what
    /// the restore lost; the kernel log meanwhile is checked like a boot's.
    async fn reattach(&mut self) -> Result<(), Verdict> {
        self.clock.lap("steps");
        let out = self.machine().reattach_devices().await;
        self.clock.lap("reattach");
        let Some(out) = out? else {
            return Ok(());
        };
        let what = "reattaching the devices after the restore";
        let kernel = self.machine().take_unattributed();
        prepared(&out, &kernel, &[], what)
    }

    /// The drivers init leaves to the harness, then (unless the case
    /// assembles them) the CXL regions as setup steps of their own; the
    /// kernel's reports beyond `expected` fail the trial.
    async fn bring_up(&mut self, labels: Labels, expected: &[String]) -> Result<(), Verdict> {
        self.clock.lap("steps");
        let regions = match self.assembly {
            Assembly::ByCase => Regions::LeftToCase,
            _ => Regions::Assemble(labels),
        };
        let setup = Step {
            action: Action::Run(String::new()),
            expect: Default::default(),
            timeout: None,
        };
        let done = self
            .guest
            .bring_up(regions, self.step_count, |part| match part {
                Prepared::Drivers { output, kernel } => {
                    self.clock.lap("drivers");
                    prepared(output, &kernel, expected, "loading the topology's drivers")
                }
                Prepared::Planned => {
                    self.clock.lap("plan");
                    Ok(())
                }
                Prepared::Step {
                    number,
                    line,
                    boot,
                    run,
                    kernel_after,
                } => {
                    self.step_count = number;
                    let step = Step {
                        action: Action::Run(line.to_owned()),
                        ..setup.clone()
                    };
                    let seen = Seen {
                        number,
                        boot,
                        output: &run.output,
                        kernel: run.kernel.clone(),
                    };
                    judge_seen(
                        &mut self.records,
                        &mut self.since_checkpoint,
                        self.skip_exit,
                        &step,
                        seen,
                    )?;
                    self.since_checkpoint
                        .extend(kernel_after.iter().filter(|r| kmsg::relevant(r)).cloned());
                    check_reports(&kernel_after, &[], &format!("after step {number}"))
                }
            })
            .await;
        match done {
            Ok(Ok(_)) => {}
            Ok(Err(verdict)) => return Err(verdict),
            Err(case_guest::Error::Step {
                number,
                line,
                source,
            }) => {
                self.step_count = number;
                let step = Step {
                    action: Action::Run(line),
                    ..setup
                };
                return Err(step_error(number, &step, &source));
            }
            Err(case_guest::Error::Assembly(e)) => {
                let what = "CXL region assembly".to_owned();
                return Err(Verdict::fail(
                    Cause::Setup { what },
                    format!("CXL region assembly: {e}"),
                ));
            }
            Err(e) => return Err(guest_error(e)),
        }
        self.clock.lap("setup");
        Ok(())
    }

    async fn step(&mut self, step: &Step, timeout: Duration) -> Result<(), Verdict> {
        self.step_count += 1;
        let number = self.step_count;
        let out = match run_step(self.machine(), number, step, timeout).await {
            Ok(out) => out,
            Err(e) => return Err(step_error(number, step, &e)),
        };
        self.judge_step(step, number, &out.output, out.kernel)?;
        let context = format!("after step {number}");
        self.unattributed(KernelLog::AlreadyRead, &context).await
    }

    /// Records step `number`'s run and judges it: its kernel reports, its
    /// skip code, its expectations.
    fn judge_step(
        &mut self,
        step: &Step,
        number: usize,
        output: &agent::ExecOutput,
        kernel: Vec<Record>,
    ) -> Result<(), Verdict> {
        let seen = Seen {
            number,
            boot: self.guest.boot(),
            output,
            kernel,
        };
        judge_seen(
            &mut self.records,
            &mut self.since_checkpoint,
            self.skip_exit,
            step,
            seen,
        )
    }

    /// Snapshots the layout and the kernel log since the last checkpoint.
    async fn checkpoint(&mut self, name: &str) -> Result<(), Verdict> {
        if self.checkpoints.iter().any(|(n, _)| n == name) {
            return Err(Verdict::fail(
                Cause::Setup {
                    what: format!("checkpoint `{name}`"),
                },
                format!("checkpoint `{name}` is taken twice (`layout` is the implicit last one)"),
            ));
        }
        self.clock.lap("steps");
        let t0 = Instant::now();
        let topology = self.topology;
        let (names, layout) = names_and_layout(self.machine(), topology).await?;
        self.clock.lap("layout");
        let context = format!("before checkpoint `{name}`");
        self.unattributed(KernelLog::ReadGuest, &context).await?;
        self.clock.lap("kernel log");
        let kernel: Vec<String> = std::mem::take(&mut self.since_checkpoint)
            .iter()
            .map(|r| names.apply(&transcript::kernel_line(r)))
            .collect();
        let body = crate::runner::evidence::checkpoint_body(&layout, &kernel);
        self.checkpoints.push((name.to_owned(), body));
        self.set_names(names);
        if name != "layout" {
            self.step_count += 1;
            let rec = StepRecord::marker(
                self.step_count,
                format!("checkpoint {name}"),
                self.guest.boot(),
                t0.elapsed(),
            );
            self.records.push(rec);
        }
        Ok(())
    }

    /// Powers the guest off and boots it again on the same backing files;
    /// CXL regions are created again (labels kept), as firmware would not.
    async fn reboot(&mut self, spec: &StartSpec<'_>, step: &Step) -> Result<(), Verdict> {
        // Refused before anything is read for it.
        if !self.guest.can_reboot() {
            return Err(guest_error(case_guest::Error::HotpluggedDevices));
        }
        let t0 = Instant::now();
        let topology = self.topology;
        let names = stable_names(self.machine(), topology).await?;
        self.set_names(names);
        self.unattributed(KernelLog::ReadGuest, "before the reboot")
            .await?;
        self.clock.lap("steps");
        self.guest.reboot(spec).await.map_err(guest_error)?;
        self.clock.lap("boot");
        self.step_count += 1;
        self.records.push(StepRecord::marker(
            self.step_count,
            "reboot".into(),
            self.guest.boot(),
            t0.elapsed(),
        ));
        let boot_log = self.guest.boot_log().await.map_err(guest_error)?;
        let context = format!("while booting again (step {})", self.step_count);
        check_reports(&boot_log, &step.expect.kernel_reports, &context)?;
        self.bring_up(Labels::Keep, &step.expect.kernel_reports)
            .await?;
        self.mount_shares().await
    }

    /// A step run once with its power cuts taken, each crash image judged
    /// on a guest started again on it (see [`crate::powercut::cut`]); the
    /// transcript shows the writes and the outcomes, the evidence keeps
    /// every point's cost and, for a violation, the image and the restart.
    async fn power_cut(
        &mut self,
        spec: &StartSpec<'_>,
        step: &Step,
        cut: &PowerCut,
        seed: u64,
        timeout: Duration,
    ) -> Result<(), Verdict> {
        self.step_count += 1;
        let number = self.step_count;
        let context = format!("before step {number}");
        self.unattributed(KernelLog::ReadGuest, &context).await?;
        let dir = self.machine().run.path.join(format!("power-cut-{number}"));
        let place = CutPlace {
            spec,
            dir: &dir,
            seed: seed ^ number as u64,
            selection: self.power_cuts,
        };
        let report = match cut::run(self.machine(), cut, timeout, &place).await {
            Ok(report) => report,
            Err(cut::Error::Record(crate::powercut::record::Error::Guest(e))) => {
                return Err(e.into())
            }
            // The case's own files missing: the case's failure.
            Err(e @ cut::Error::Kept(_)) => {
                let cause = Cause::Expectation {
                    step: number,
                    command: step.action.display(),
                };
                return Err(Verdict::fail(cause, format!("step {number}: {e}")));
            }
            Err(e) => return Err(Verdict::Error(format!("step {number}: {e}"))),
        };
        let _ = std::fs::write(dir.join("points.txt"), report.details());
        let summary = report.summary();
        let output = match &report.output {
            Ok(output) => output.clone(),
            Err(e) => return Err(step_error(number, step, e)),
        };
        self.machine().read_kernel_log().await?;
        let kernel = self.machine().take_unattributed();
        let mut output = output;
        output.stdout = format!("{}{summary}\n", output.stdout_text()).into_bytes();
        self.judge_step(step, number, &output, kernel)?;
        let broken: Vec<String> = report
            .violations()
            .map(|p| match &p.evidence {
                Some((image, restart)) => format!(
                    "  {}: {}\n    image {}, restart {}",
                    p.point,
                    p.outcome,
                    image.display(),
                    restart.display()
                ),
                None => format!("  {}: {}", p.point, p.outcome),
            })
            .collect();
        if !broken.is_empty() {
            let judged = report
                .chosen
                .describe()
                .unwrap_or_else(|| format!("all {} crash points judged", report.points.len()));
            let cause = Cause::PowerCut {
                step: number,
                violations: broken.len(),
                judged: report.points.len(),
            };
            return Err(Verdict::fail(
                cause,
                format!(
                    "step {number} (`{}`): {} of {} crash points broke consistency ({judged}):\n{}",
                    step.action.display(),
                    broken.len(),
                    report.points.len(),
                    broken.join("\n")
                ),
            ));
        }
        Ok(())
    }

    /// Mounts the shared host folders before the case's steps (never in a
    /// template: a state is saved with nothing mounted).
    async fn mount_shares(&mut self) -> Result<(), Verdict> {
        if self.machine().shares().is_empty() {
            return Ok(());
        }
        self.clock.lap("steps");
        self.machine().mount_shares().await?;
        self.clock.lap("mount");
        Ok(())
    }
}

/// Step `number` failing in the guest: its timeout is the step's failure,
/// anything else a failure or an infrastructure error as the error says.
fn step_error(number: usize, step: &Step, e: &machine::Error) -> Verdict {
    match e {
        machine::Error::Agent(agent::Error::CommandTimeout { timeout, .. }) => {
            let cause = Cause::Timeout {
                step: number,
                command: step.action.display(),
            };
            Verdict::fail(
                cause,
                format!(
                    "step {number} (`{}`) did not finish within {timeout:?}",
                    step.action.display()
                ),
            )
        }
        e if e.is_infrastructure() => Verdict::Error(e.to_string()),
        e => machine_verdict(e),
    }
}

/// A trial's name as a seed (FNV-1a): the same cuts run after run.
fn seed_of(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
