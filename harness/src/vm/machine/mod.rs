//! A guest's whole life in one place: start (QEMU, QMP, agent ready), steps,
//! kernel log, stop. A start is a cold boot; a warm start, where QEMU
//! restores a VM state ([`state`]) saved from a template guest (ready, or
//! before its drivers loaded); or a power cut's restart on a crash image's
//! backing files. The devices QEMU does not save are looked after in
//! [`devices`]; QEMU's view is checked against the topology in [`checks`];
//! [`console`] watches the serial console for fatal reports; several
//! commands share one round trip in [`each`]; [`step_then`] runs a step and
//! an observation in one call; [`gdbstub`] starts QEMU's gdbstub and
//! pauses and resumes the guest for power cuts; an interactive shell on a
//! console added to the running guest is in [`shell`].

mod checks;
pub mod console;
mod devices;
mod each;
mod gdbstub;
pub mod shell;
mod state;
mod step_then;

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::agent::{self, Agent, ExecOutput};
use super::qmp::{self, GuestEvents, Qmp};
use super::{cmdline, modules, qemu, share, Accel, LaunchSpec, QemuProcess, RunDir, Share};
use crate::image::Image;
use crate::kmsg::{self, Marker, Record};
use crate::topology::Topology;

pub use each::first_failure;
pub use state::backing_dir;

const KMSG_LOG: &str = "/run/kmsg.log";
const STEP_WRAPPER: &str = "/usr/libexec/ndharness/step";

/// The words of a boot timeout's message: a comparison of two kernels
/// (`validate`, `mutate`) looks for them in a trial's error message (a
/// warm start's save wraps them) to tell a candidate whose guest never
/// came up.
pub const NOT_READY: &str = "the guest was not ready within";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Qemu(#[from] qemu::Error),
    #[error(transparent)]
    Qmp(#[from] qmp::Error),
    #[error(transparent)]
    Agent(#[from] agent::Error),
    #[error("{NOT_READY} {timeout:?} (no agent on its virtio port)\n--- serial console (last lines) ---\n{serial}")]
    BootTimeout { timeout: Duration, serial: String },
    #[error(
        "the guest kernel panicked {during}\n--- serial console around the panic ---\n{serial}"
    )]
    Panicked { during: String, serial: String },
    #[error("QEMU exited {during} ({status})\n--- QEMU output ---\n{qemu_log}\n--- serial console (last lines) ---\n{serial}")]
    Exited {
        during: String,
        status: String,
        qemu_log: String,
        serial: String,
    },
    #[error("the kernel reported {kind} {during}, and the command did not finish within {grace:?} of it\n--- serial console ---\n{excerpt}", kind = .report.kind, grace = console::GRACE, excerpt = .report.excerpt)]
    KernelReport {
        during: String,
        report: console::ConsoleReport,
    },
    #[error("QEMU built a different machine than the topology asks for: {0}")]
    Mismatch(String),
    #[error("saved VM state: {0}")]
    State(String),
    #[error("mounting the shared host folders in the guest: {0}")]
    Mount(String),
    #[error("the shell in the guest: {0}")]
    Shell(String),
    #[error("the step wrapper's output: {0}")]
    Frames(String),
}

impl Error {
    /// Whether this is the harness's or the host's trouble rather than a
    /// verdict on the kernel (a panic is a verdict).
    pub fn is_infrastructure(&self) -> bool {
        !matches!(
            self,
            Error::Panicked { .. }
                | Error::KernelReport { .. }
                | Error::Agent(agent::Error::CommandTimeout { .. })
        )
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Milestones of one start, measured from spawning QEMU.
#[derive(Clone, Copy, Debug, Default)]
pub struct StartTimes {
    pub qmp_ready: Duration,
    pub agent_ready: Duration,
}

/// One step's command output and the kernel records it caused.
#[derive(Clone, Debug)]
pub struct StepRun {
    pub output: ExecOutput,
    pub kernel: Vec<Record>,
}

pub struct Machine {
    pub run: RunDir,
    qemu: QemuProcess,
    qmp: Qmp,
    agent: Agent,
    events: watch::Receiver<GuestEvents>,
    cursor: kmsg::Cursor,
    /// Records read but not yet handed out.
    pending: Vec<Record>,
    pub times: StartTimes,
    /// What QEMU reports for the memory devices, as JSON.
    pub memory_devices: serde_json::Value,
    /// NVDIMMs the guest has (boot + hotplugged).
    nvdimms: usize,
    hotplugged: usize,
    /// The drivers init leaves to the harness
    /// ([`modules::driver_modules`]): their devices' PCI headers go
    /// with a saved state and come back before the drivers load.
    drivers: Vec<&'static str>,
    /// Started from a saved state.
    restored: bool,
    /// Host folders on the command line, mounted by [`Machine::mount_shares`].
    shares: Vec<Share>,
}

/// How a guest starts: what [`Machine::start`] needs, built with
/// [`StartSpec::boot`] and its `with_*` methods.
#[derive(Clone, Copy)]
pub struct StartSpec<'a> {
    pub qemu_binary: &'a Path,
    pub image: &'a Image,
    pub topology: &'a Topology,
    pub accel: Accel,
    pub extra_append: &'a str,
    pub boot_timeout: Duration,
    /// Start from this saved state (see [`Machine::save`]) instead of booting.
    pub incoming: Option<&'a Path>,
    /// Host folders shared into the guest: on QEMU's command line from the
    /// start, mounted by [`Machine::mount_shares`].
    pub shares: &'a [Share],
    /// QEMU's gdbstub on this local port (and the kernel without KASLR).
    pub gdb: Option<u16>,
    /// The backing files to start on, by name (a power cut's crash image),
    /// instead of fresh ones (a boot) or the saved state's (a restore).
    pub backing_from: Option<&'a Path>,
}

impl<'a> StartSpec<'a> {
    /// A cold boot of `topology` on `image`: no extra kernel arguments, no
    /// shares, no gdbstub, fresh backing files. The `with_*` methods add
    /// the rest.
    pub fn boot(
        qemu_binary: &'a Path,
        image: &'a Image,
        topology: &'a Topology,
        accel: Accel,
        boot_timeout: Duration,
    ) -> Self {
        StartSpec {
            qemu_binary,
            image,
            topology,
            accel,
            extra_append: "",
            boot_timeout,
            incoming: None,
            shares: &[],
            gdb: None,
            backing_from: None,
        }
    }

    /// Started from this saved state, when there is one, instead of booted.
    pub fn with_incoming(self, incoming: Option<&'a Path>) -> Self {
        StartSpec { incoming, ..self }
    }

    /// Words added to the kernel command line.
    pub fn with_append(self, extra_append: &'a str) -> Self {
        StartSpec {
            extra_append,
            ..self
        }
    }

    /// Host folders shared into the guest.
    pub fn with_shares(self, shares: &'a [Share]) -> Self {
        StartSpec { shares, ..self }
    }

    /// QEMU's gdbstub on this port, when given.
    pub fn with_gdb(self, gdb: Option<u16>) -> Self {
        StartSpec { gdb, ..self }
    }

    /// Started on these backing files (a crash image).
    pub fn with_backing_from(self, dir: &'a Path) -> Self {
        StartSpec {
            backing_from: Some(dir),
            ..self
        }
    }

    /// The same guest, booted cold (a reboot is a real boot).
    pub fn cold(&self) -> StartSpec<'_> {
        StartSpec {
            incoming: None,
            ..*self
        }
    }
}

impl Machine {
    /// Spawns QEMU and waits until the agent answers: after a boot, or
    /// after restoring `spec.incoming`.
    pub async fn start(spec: &StartSpec<'_>, run: RunDir) -> Result<Machine> {
        let t0 = Instant::now();
        let deadline = t0 + spec.boot_timeout;
        let (mut process, qmp) = launch(spec, &run, t0).await?;
        let qmp_ready = t0.elapsed();
        let status = match spec.incoming {
            Some(state) => state::load(&qmp, state, &mut process, &run, deadline).await?,
            None => qmp.status().await?,
        };
        if status != "running" {
            return Err(Error::Mismatch(format!(
                "QEMU reports `{status}` right after start, not `running`"
            )));
        }
        let memory_devices = checks::check_memory_devices(&qmp, spec.topology).await?;
        let agent = Agent::connect(&run.files.agent_socket).await?;
        let mut machine = Machine {
            run,
            qemu: process,
            events: qmp.events(),
            qmp,
            agent,
            cursor: kmsg::Cursor::default(),
            pending: Vec::new(),
            times: StartTimes {
                qmp_ready,
                agent_ready: Duration::ZERO,
            },
            memory_devices,
            nvdimms: spec.topology.nvdimms.len(),
            hotplugged: 0,
            drivers: modules::driver_modules(spec.topology),
            restored: spec.incoming.is_some(),
            shares: spec.shares.to_vec(),
        };
        if spec.incoming.is_some() {
            // The agent's port was open when the state was saved: no event
            // comes; the agent answers as soon as the guest runs.
            let remaining = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_secs(5));
            let sync = machine.agent.sync(remaining);
            machine.guard("after the restore", sync).await??;
        } else {
            machine.wait_agent(deadline).await?;
        }
        machine.times.agent_ready = t0.elapsed();
        // Devices behind bridges show in query-pci only once the guest has
        // given the bridges bus numbers. A restored guest was checked when
        // its state was saved (query-pci then misses the devices behind
        // CXL root ports: QEMU looks them up by bus number before the
        // restored bridges are walked again).
        if spec.incoming.is_none() {
            checks::check_pci(&machine.qmp, spec.topology).await?;
        }
        Ok(machine)
    }

    async fn wait_agent(&mut self, deadline: Instant) -> Result<()> {
        let port = cmdline::AGENT_PORT_ID.to_owned();
        let mut events = self.events.clone();
        let opened = async {
            let _ = events.wait_for(|e| e.open_ports.contains(&port)).await;
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining, self.guard("while booting", opened)).await {
            Err(_) => {
                return Err(Error::BootTimeout {
                    timeout: remaining,
                    serial: self.run.serial_tail(30),
                })
            }
            Ok(r) => r?,
        }
        let remaining = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(5));
        self.agent.sync(remaining).await?;
        Ok(())
    }

    /// Runs `fut` unless the guest panics or QEMU exits first, or the
    /// kernel reports an Oops, a BUG or a panic on the console and `fut`
    /// does not finish within [`console::GRACE`] of it.
    async fn guard<T>(&self, during: &str, fut: impl Future<Output = T>) -> Result<T> {
        let mut events = self.events.clone();
        // The watch guard must not outlive this future: held across the
        // await in `trouble`, it would block the event task's writer, and
        // with it the runtime's only thread.
        let trouble = async move {
            let seen =
                events.wait_for(|e| e.panicked.is_some() || e.shutdown.is_some() || e.disconnected);
            let _ = seen.await.map(drop);
        };
        let serial = self.run.files.serial_log.clone();
        let from = console::end_of(&serial);
        tokio::select! {
            v = fut => Ok(v),
            _ = trouble => Err(self.trouble(during).await),
            report = console::fatal_report(serial, from) => Err(Error::KernelReport {
                during: during.to_owned(),
                report,
            }),
        }
    }

    async fn trouble(&self, during: &str) -> Error {
        // Let the console catch up with the panic message.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let ev = self.events.borrow().clone();
        if ev.panicked.is_some() || self.run.serial_tail(60).contains(kmsg::PANIC_LINE) {
            return Error::Panicked {
                during: during.to_owned(),
                serial: self.run.serial_panic_excerpt(),
            };
        }
        let status = ev
            .shutdown
            .map(|r| format!("shutdown: {r}"))
            .unwrap_or_else(|| "connection closed".into());
        exited(&self.run, during, status)
    }

    /// Waits until the guest panics, or QEMU exits or closes QMP, and says
    /// what happened (for a wait with no end of its own: the shell).
    pub async fn gone(&self, during: &str) -> Error {
        let mut events = self.events.clone();
        let seen =
            events.wait_for(|e| e.panicked.is_some() || e.shutdown.is_some() || e.disconnected);
        let _ = seen.await.map(drop);
        self.trouble(during).await
    }

    /// The host folders shared into the guest.
    pub fn shares(&self) -> &[Share] {
        &self.shares
    }

    /// Mounts the shared host folders (nothing to do without shares): after
    /// a boot, a restore or a reboot, never before a state is saved (QEMU
    /// will not migrate a guest with a 9p export mounted).
    pub async fn mount_shares(&self) -> Result<()> {
        if self.shares.is_empty() {
            return Ok(());
        }
        let script = share::mount_script(&self.shares);
        let argv = crate::command_line::shell(script);
        let out = self.exec(&argv, Duration::from_secs(60)).await?;
        if !out.success() {
            return Err(Error::Mount(out.stderr_text().trim().to_owned()));
        }
        Ok(())
    }

    /// Runs a command without step markers (the harness's own queries).
    pub async fn exec(&self, argv: &[String], timeout: Duration) -> Result<ExecOutput> {
        let (path, args) = argv.split_first().expect("a command has a program");
        let fut = self.agent.exec(path, args, timeout);
        Ok(self
            .guard(&format!("while running `{}`", argv.join(" ")), fut)
            .await??)
    }

    /// Runs step `n` between kernel-log markers and collects its records.
    pub async fn step(&mut self, n: usize, argv: &[String], timeout: Duration) -> Result<StepRun> {
        let mut args = vec![n.to_string()];
        args.extend(argv.iter().cloned());
        let during = format!("during step {n} (`{}`)", argv.join(" "));
        let fut = self.agent.exec(STEP_WRAPPER, &args, timeout);
        let output = self.guard(&during, fut).await??;
        let kernel = self.step_records(n).await?;
        Ok(StepRun { output, kernel })
    }

    /// Reads new kernel records from the guest's log.
    pub async fn read_kernel_log(&mut self) -> Result<()> {
        let bytes = self
            .agent
            .read_file_from(KMSG_LOG, self.cursor.offset)
            .await?;
        let recs = self.cursor.feed(&bytes);
        self.pending.extend(recs);
        Ok(())
    }

    /// Waits for step `n`'s end marker and returns the records between its
    /// markers; records before its begin marker are left in [`Self::take_unattributed`].
    async fn step_records(&mut self, n: usize) -> Result<Vec<Record>> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            // The end marker may have come with the step's own output.
            if !self.has_end(n) {
                self.read_kernel_log().await?;
            }
            let end = self
                .pending
                .iter()
                .position(|r| kmsg::marker(r) == Some(Marker::End(n)));
            if let Some(end) = end {
                let after = self.pending.split_off(end + 1);
                let begin = self
                    .pending
                    .iter()
                    .position(|r| kmsg::marker(r) == Some(Marker::Begin(n)))
                    .unwrap_or(0);
                let step = self.pending.split_off(begin);
                // What came before the begin marker stays for take_unattributed.
                self.pending.extend(after);
                return Ok(step
                    .into_iter()
                    .filter(|r| kmsg::marker(r).is_none())
                    .collect());
            }
            if Instant::now() > deadline {
                return Ok(std::mem::take(&mut self.pending));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether step `n`'s end marker is among the records read.
    fn has_end(&self, n: usize) -> bool {
        self.pending
            .iter()
            .any(|r| kmsg::marker(r) == Some(Marker::End(n)))
    }

    /// Records that belong to no step (boot, between steps).
    pub fn take_unattributed(&mut self) -> Vec<Record> {
        std::mem::take(&mut self.pending)
    }

    /// Sends a case step's QMP command (checked against its `qapi` type).
    pub async fn qmp_step(
        &self,
        name: &str,
        args: &serde_json::Value,
    ) -> Result<std::result::Result<serde_json::Value, qmp::StepError>> {
        let during = format!("during QMP `{name}`");
        self.guard(&during, self.qmp.execute_step(name, args)).await
    }

    /// NVDIMMs hotplugged since start: a reboot would lose them (they are
    /// not on QEMU's command line).
    pub fn hotplugged(&self) -> usize {
        self.hotplugged
    }

    /// Powers the guest off, escalating to QMP quit and then SIGKILL.
    pub async fn stop(mut self) -> RunDir {
        if self.qemu.try_status().is_none() {
            self.agent.poweroff().await;
            if self.qemu.wait(Duration::from_secs(10)).await.is_none() {
                self.qmp.quit().await;
                if self.qemu.wait(Duration::from_secs(3)).await.is_none() {
                    self.qemu.kill().await;
                }
            }
        }
        self.qemu.kill().await;
        self.run
    }

    pub fn pid(&self) -> u32 {
        self.qemu.pid()
    }

    /// Ends QEMU at once, without the guest's shutdown: for a guest whose
    /// trial is over (its backing files are on the host's page cache
    /// already; a reboot step uses [`Machine::stop`]).
    pub async fn kill(mut self) -> RunDir {
        self.qemu.kill().await;
        self.run
    }

    /// Where the kernel log reader stands: saved with a VM state, so a
    /// restored guest reads on from the same record.
    pub fn kmsg_position(&self) -> (kmsg::Cursor, Vec<Record>) {
        (self.cursor.clone(), self.pending.clone())
    }

    pub fn set_kmsg_position(&mut self, cursor: kmsg::Cursor, pending: Vec<Record>) {
        self.cursor = cursor;
        self.pending = pending;
    }
}

/// Writes the command line into the run folder, spawns QEMU (a restore
/// first gets the saved state's backing files) and connects to its QMP.
async fn launch(spec: &StartSpec<'_>, run: &RunDir, t0: Instant) -> Result<(QemuProcess, Qmp)> {
    let launch = LaunchSpec {
        topology: spec.topology,
        kernel: &spec.image.kernel,
        initrd: &spec.image.initrd,
        files: &run.files,
        accel: spec.accel,
        extra_append: spec.extra_append,
        incoming: spec.incoming,
        shares: spec.shares,
        gdb: spec.gdb,
    };
    if let Some(dir) = spec.backing_from {
        state::backing_from(dir, run)?;
    } else if let Some(state) = spec.incoming {
        state::restore_backing(state, run)?;
    }
    let argv = cmdline::argv(&launch);
    let _ = std::fs::write(
        run.path.join("qemu.argv"),
        super::process::command_line_text(spec.qemu_binary, &argv),
    );
    let mut process = QemuProcess::spawn(spec.qemu_binary, &argv, &run.qemu_log())?;
    let qmp_deadline = t0 + Duration::from_secs(15);
    match Qmp::connect(&run.files.qmp_socket, &run.qmp_log(), qmp_deadline).await {
        Ok(q) => Ok((process, q)),
        Err(e) => {
            if let Some(status) = process.wait(Duration::from_millis(500)).await {
                return Err(exited(run, "while starting", status.to_string()));
            }
            Err(e.into())
        }
    }
}

pub(super) fn exited(run: &RunDir, during: &str, status: String) -> Error {
    Error::Exited {
        during: during.to_owned(),
        status,
        qemu_log: super::rundir_tail(&run.qemu_log(), 20),
        serial: run.serial_tail(30),
    }
}
