//! A guest's whole life in one place: start (QEMU, QMP, agent ready), steps,
//! kernel log, stop. A start is a cold boot, or a warm start: QEMU restores
//! a VM state saved (`save`) from a guest that had just become ready.

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::agent::{self, Agent, ExecOutput};
use super::qmp::{self, GuestEvents, Qmp};
use super::{cmdline, qemu, Accel, LaunchSpec, QemuProcess, RunDir};
use crate::image::Image;
use crate::kmsg::{self, Marker, Record};
use crate::size::Size;
use crate::topology::Topology;

pub const BOOT_TIMEOUT: Duration = Duration::from_secs(90);
const KMSG_LOG: &str = "/run/kmsg.log";
const STEP_WRAPPER: &str = "/usr/libexec/ndharness/step";
const PCI_STATE: &str = "/usr/libexec/ndharness/pci-state";
/// Decommits and commits every committed CXL region (the kernel's own
/// sysfs path: decommitting releases the region's driver), and binds it
/// again.
const RECOMMIT_REGIONS: &str = "for r in /sys/bus/cxl/devices/region*; do \
     [ \"$(cat \"$r/commit\" 2>/dev/null)\" = 1 ] || continue; \
     echo 0 >\"$r/commit\" && echo 1 >\"$r/commit\" && \
     echo \"${r##*/}\" >/sys/bus/cxl/drivers/cxl_region/bind || exit; \
     done";
/// Flushes the nd bus's asynchronous probes (regions, namespaces and their
/// seed devices) as a boot's idle moments would: a step started while they
/// run found `btt0.1` where a settled guest has `btt0.0`.
const FLUSH_ND_PROBES: &str = "for f in /sys/bus/nd/devices/ndbus*/wait_probe; do \
     [ ! -e \"$f\" ] || cat \"$f\" >/dev/null; done";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Qemu(#[from] qemu::Error),
    #[error(transparent)]
    Qmp(#[from] qmp::Error),
    #[error(transparent)]
    Agent(#[from] agent::Error),
    #[error("the guest was not ready within {timeout:?} (no agent on its virtio port)\n--- serial console (last lines) ---\n{serial}")]
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
    #[error("QEMU built a different machine than the topology asks for: {0}")]
    Mismatch(String),
    #[error("saved VM state: {0}")]
    State(String),
}

impl Error {
    /// Whether this is the harness's or the host's trouble rather than a
    /// verdict on the kernel (a panic is a verdict).
    pub fn is_infrastructure(&self) -> bool {
        !matches!(
            self,
            Error::Panicked { .. } | Error::Agent(agent::Error::CommandTimeout { .. })
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
    /// ([`cmdline::driver_modules`]): their devices' PCI headers go
    /// with a saved state and come back before the drivers load.
    drivers: Vec<&'static str>,
    /// Started from a saved state.
    restored: bool,
}

pub struct StartSpec<'a> {
    pub qemu_binary: &'a Path,
    pub image: &'a Image,
    pub topology: &'a Topology,
    pub accel: Accel,
    pub extra_append: &'a str,
    pub boot_timeout: Duration,
    /// Start from this saved state (see [`Machine::save`]) instead of booting.
    pub incoming: Option<&'a Path>,
}

impl StartSpec<'_> {
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
        let launch = LaunchSpec {
            topology: spec.topology,
            kernel: &spec.image.kernel,
            initrd: &spec.image.initrd,
            files: &run.files,
            accel: spec.accel,
            extra_append: spec.extra_append,
            incoming: spec.incoming,
        };
        if let Some(state) = spec.incoming {
            restore_backing(state, &run)?;
        }
        let argv = cmdline::argv(&launch);
        let _ = std::fs::write(
            run.path.join("qemu.argv"),
            shell_words(spec.qemu_binary, &argv),
        );
        let t0 = Instant::now();
        let deadline = t0 + spec.boot_timeout;
        let mut process = QemuProcess::spawn(spec.qemu_binary, &argv, &run.qemu_log())?;
        let qmp = match Qmp::connect(
            &run.files.qmp_socket,
            &run.qmp_log(),
            t0 + Duration::from_secs(15),
        )
        .await
        {
            Ok(q) => q,
            Err(e) => {
                if let Some(status) = process.wait(Duration::from_millis(500)).await {
                    return Err(exited(&run, "while starting", status.to_string()));
                }
                return Err(e.into());
            }
        };
        let qmp_ready = t0.elapsed();
        let status = match spec.incoming {
            Some(state) => {
                set_capabilities(&qmp).await?;
                qmp.execute(qapi::qmp::migrate_incoming {
                    uri: Some(format!("file:{}", state.display())),
                    channels: None,
                    exit_on_error: None,
                })
                .await?;
                restored(&qmp, &mut process, &run, deadline).await?
            }
            None => qmp.status().await?,
        };
        if status != "running" {
            return Err(Error::Mismatch(format!(
                "QEMU reports `{status}` right after start, not `running`"
            )));
        }
        let memory_devices = check_memory_devices(&qmp, spec.topology).await?;
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
            drivers: cmdline::driver_modules(spec.topology),
            restored: spec.incoming.is_some(),
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
            check_pci(&machine.qmp, spec.topology).await?;
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

    /// Runs `fut` unless the guest panics or QEMU exits first.
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
        tokio::select! {
            v = fut => Ok(v),
            _ = trouble => Err(self.trouble(during).await),
        }
    }

    async fn trouble(&self, during: &str) -> Error {
        // Let the console catch up with the panic message.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let ev = self.events.borrow().clone();
        if ev.panicked.is_some() || self.run.serial_tail(60).contains("Kernel panic") {
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

    /// Runs a command without step markers (the harness's own queries).
    pub async fn exec(&self, argv: &[String], timeout: Duration) -> Result<ExecOutput> {
        let (path, args) = argv.split_first().expect("a command has a program");
        let fut = self.agent.exec(path, args, timeout);
        Ok(self
            .guard(&format!("while running `{}`", argv.join(" ")), fut)
            .await??)
    }

    /// Runs several commands (words without shell syntax) in one guest
    /// round trip, one after the other; returns each one's exit code and
    /// stdout, and the stderr of them all.
    pub async fn exec_each(
        &self,
        commands: &[&[&str]],
        timeout: Duration,
    ) -> Result<(Vec<(i32, String)>, String)> {
        let script = each_script(commands);
        let argv = ["/bin/sh".to_owned(), "-c".to_owned(), script];
        let out = self.exec(&argv, timeout).await?;
        let parts = split_each(&out.stdout_text(), commands.len()).ok_or_else(|| {
            Error::Mismatch(format!(
                "`{}` printed no end mark for each command: {}",
                argv[2],
                out.stderr_text()
            ))
        })?;
        Ok((parts, out.stderr_text()))
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
            self.read_kernel_log().await?;
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

    /// `pci-state save|restore` in the guest: the PCI headers QEMU 10.0.2
    /// saves none of (CXL ports and devices, virtio-pmem), kept in guest
    /// memory so they go with the state.
    async fn pci_state(&self, action: &str) -> Result<()> {
        let argv = [PCI_STATE.to_owned(), action.to_owned()];
        let out = self.exec(&argv, Duration::from_secs(30)).await?;
        if !out.success() {
            return Err(Error::State(format!(
                "pci-state {action}: {}",
                out.stderr_text().trim()
            )));
        }
        Ok(())
    }

    /// Whether the guest's init leaves drivers to the harness (devices QEMU
    /// does not save: CXL, virtio-pmem), loaded by [`Self::load_drivers`].
    pub fn defers_drivers(&self) -> bool {
        !self.drivers.is_empty()
    }

    /// Loads the drivers the guest's init leaves to the harness
    /// ([`cmdline::driver_modules`]), after writing back the PCI
    /// headers of a restored guest; their kernel records stay for
    /// [`Self::take_unattributed`]. `Ok(None)` when the topology has none;
    /// the output of a failing `modprobe` otherwise.
    pub async fn load_drivers(&mut self) -> Result<Option<ExecOutput>> {
        if !self.defers_drivers() {
            return Ok(None);
        }
        if self.restored {
            self.pci_state("restore").await?;
        }
        let argv = [
            "/bin/sh".to_owned(),
            "-c".to_owned(),
            drivers_script(&self.drivers),
        ];
        let out = self.exec(&argv, Duration::from_secs(120)).await?;
        self.read_kernel_log().await?;
        Ok(Some(out))
    }

    /// Reconnects a guest restored with its drivers bound (and its CXL
    /// regions assembled) to the devices QEMU 10.0.2 restores as if reset:
    /// writes their PCI headers back, then commits every committed CXL
    /// region again, so that the kernel programs the HDM decoders anew (the
    /// restore leaves them uncommitted: the region's memory would read as
    /// nothing and writes would be lost), binds it again and flushes the nd
    /// bus's probes as [`Self::load_drivers`] does. Their kernel records
    /// stay for [`Self::take_unattributed`]. `Ok(None)` unless the guest
    /// was restored and has such devices.
    pub async fn reattach_devices(&mut self) -> Result<Option<ExecOutput>> {
        if !self.restored || !self.defers_drivers() {
            return Ok(None);
        }
        let script = format!(
            "{PCI_STATE} restore >/dev/null || exit; {RECOMMIT_REGIONS}; {FLUSH_ND_PROBES}"
        );
        let argv = ["/bin/sh".to_owned(), "-c".to_owned(), script];
        let out = self.exec(&argv, Duration::from_secs(120)).await?;
        self.read_kernel_log().await?;
        Ok(Some(out))
    }

    /// Records that belong to no step (boot, between steps).
    pub fn take_unattributed(&mut self) -> Vec<Record> {
        std::mem::take(&mut self.pending)
    }

    /// Adds an NVDIMM through QMP with a new backing file in the run folder;
    /// returns how many NVDIMMs the guest had before.
    pub async fn hotplug_nvdimm(&mut self, size: Size, label_size: Size) -> Result<usize> {
        use qapi::qmp;
        let before = self.nvdimms;
        let i = self.hotplugged;
        self.hotplugged += 1;
        let backing = self.run.path.join(format!("hotplug{i}.img"));
        let io = |source| qemu::Error::RunDir {
            path: backing.clone(),
            source,
        };
        std::fs::File::create(&backing)
            .and_then(|f| f.set_len(size.bytes()))
            .map_err(io)?;
        let memdev = format!("hpmem{i}");
        let base = qmp::MemoryBackendProperties {
            dump: None,
            host_nodes: None,
            merge: None,
            policy: None,
            prealloc: None,
            prealloc_context: None,
            prealloc_threads: None,
            reserve: None,
            share: Some(true),
            x_use_canonical_path_for_ramblock_id: None,
            size: size.bytes(),
        };
        let file = qmp::MemoryBackendFileProperties {
            base,
            align: None,
            discard_data: None,
            offset: None,
            pmem: None,
            readonly: None,
            rom: None,
            mem_path: backing.display().to_string(),
        };
        self.qmp
            .execute(qmp::object_add(qmp::ObjectOptions::memory_backend_file {
                id: memdev.clone(),
                memory_backend_file: file,
            }))
            .await?;
        let mut arguments = qapi::Dictionary::new();
        arguments.insert("memdev".into(), memdev.into());
        arguments.insert("label-size".into(), label_size.bytes().into());
        self.qmp
            .execute(qmp::device_add {
                driver: "nvdimm".into(),
                bus: None,
                id: Some(format!("hpdimm{i}")),
                arguments,
            })
            .await?;
        self.nvdimms += 1;
        Ok(before)
    }

    /// Sends a case step's QMP command (checked against its `qapi` type).
    pub async fn qmp_step(
        &self,
        name: &str,
        args: &serde_json::Value,
    ) -> Result<std::result::Result<serde_json::Value, String>> {
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

    /// Pauses the guest (first copying into its memory the PCI headers QEMU
    /// does not save, when the topology has such devices), writes its whole state (RAM, devices, and the
    /// NVDIMM, label and CXL memory backends, which are RAM blocks too) to
    /// `state` with QMP `migrate` to a `file:` URI, and ends QEMU.
    pub async fn save(mut self, state: &Path) -> Result<RunDir> {
        if self.defers_drivers() {
            self.pci_state("save").await?;
        }
        self.qmp.execute(qapi::qmp::stop {}).await?;
        set_capabilities(&self.qmp).await?;
        self.qmp
            .execute(qapi::qmp::migrate {
                uri: Some(format!("file:{}", state.display())),
                channels: None,
                detach: None,
                resume: None,
            })
            .await?;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let info = self.qmp.execute(qapi::qmp::query_migrate {}).await?;
            use qapi::qmp::MigrationStatus as S;
            match info.status {
                Some(S::completed) => break,
                Some(S::failed | S::cancelled) => {
                    return Err(Error::State(format!(
                        "saving it failed: {}",
                        info.error_desc.unwrap_or_default()
                    )))
                }
                _ if Instant::now() > deadline => {
                    return Err(Error::State("saving it took over 120 s".into()))
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        self.qemu.kill().await;
        // The shared backing files are not in the state: kept beside it.
        let dir = backing_dir(state);
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| {
                Error::Qemu(qemu::Error::RunDir {
                    path: path.clone(),
                    source,
                })
            }
        };
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        for f in self.run.files.backing() {
            let to = dir.join(f.file_name().expect("a backing file has a name"));
            super::copy_sparse(f, &to).map_err(io(&to))?;
        }
        Ok(self.run)
    }
}

/// The end mark [`Machine::exec_each`] prints after each command's output.
const EACH_MARK: &str = "\n@@ndharness-exit=";

/// Loads `drivers` in order (an optional one only when the kernel has it,
/// [`cmdline::OPTIONAL_DRIVERS`]), then flushes the nd bus's probes
/// ([`FLUSH_ND_PROBES`]).
fn drivers_script(drivers: &[&str]) -> String {
    let (optional, required): (Vec<&str>, Vec<&str>) = drivers
        .iter()
        .partition(|d| cmdline::OPTIONAL_DRIVERS.contains(d));
    let mut s = format!("modprobe -a {} || exit; ", required.join(" "));
    for m in optional {
        s.push_str(&format!("! modprobe -n -q {m} || modprobe {m} || exit; "));
    }
    s.push_str(FLUSH_ND_PROBES);
    s
}

/// A shell script running `commands` in turn, each followed by its exit
/// code on a line of its own.
fn each_script(commands: &[&[&str]]) -> String {
    commands
        .iter()
        .map(|words| {
            debug_assert!(words.iter().all(|w| w
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./=:".contains(c))));
            format!(
                "{}; printf '{}%d\\n' $?",
                words.join(" "),
                EACH_MARK.replace('\n', "\\n")
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Each command's exit code and output from what [`each_script`] printed;
/// `None` unless there are exactly `n` end marks.
fn split_each(stdout: &str, n: usize) -> Option<Vec<(i32, String)>> {
    let mut out = Vec::with_capacity(n);
    let mut rest = stdout;
    for _ in 0..n {
        let at = rest.find(EACH_MARK)?;
        let (output, tail) = rest.split_at(at);
        let tail = &tail[EACH_MARK.len()..];
        let nl = tail.find('\n')?;
        out.push((tail[..nl].parse().ok()?, output.to_owned()));
        rest = &tail[nl + 1..];
    }
    rest.is_empty().then_some(out)
}

/// The first of `commands` whose exit code in `outs` (from
/// [`Machine::exec_each`]) is not 0, as "`COMMAND` failed: STDERR".
pub fn first_failure(commands: &[&[&str]], outs: &[(i32, String)], stderr: &str) -> Option<String> {
    commands
        .iter()
        .zip(outs)
        .find(|(_, (code, _))| *code != 0)
        .map(|(argv, _)| format!("`{}` failed: {stderr}", argv.join(" ")))
}

/// Where [`Machine::save`] keeps the guest's shared backing files: QEMU
/// saves them out of the state (`x-ignore-shared`), so a restore finds
/// them as they were when the state was saved, each trial on its own copy.
pub fn backing_dir(state: &Path) -> std::path::PathBuf {
    let mut name = state.as_os_str().to_owned();
    name.push(".files");
    name.into()
}

/// The capability a state is saved and loaded with: RAM blocks that map a
/// shared file (NVDIMM, CXL memory and label areas, virtio-pmem) stay out
/// of the state. Loading a 1 GiB NVDIMM's pages into a fresh file cost 0.3
/// to 2.5 s per restore; a sparse copy of the file costs microseconds.
async fn set_capabilities(qmp: &Qmp) -> Result<()> {
    qmp.execute(qapi::qmp::migrate_set_capabilities {
        capabilities: vec![qapi::qmp::MigrationCapabilityStatus {
            capability: qapi::qmp::MigrationCapability::x_ignore_shared,
            state: true,
        }],
    })
    .await?;
    Ok(())
}

/// Gives a guest about to be restored the backing files of the saved one.
fn restore_backing(state: &Path, run: &RunDir) -> Result<()> {
    let dir = backing_dir(state);
    for f in run.files.backing() {
        let from = dir.join(f.file_name().expect("a backing file has a name"));
        if !from.exists() {
            return Err(Error::State(format!(
                "{} is missing: a state is kept with its backing files",
                from.display()
            )));
        }
        super::copy_sparse(&from, f).map_err(|source| qemu::Error::RunDir {
            path: f.to_owned(),
            source,
        })?;
    }
    Ok(())
}

/// Waits for QEMU to finish loading an incoming state (it ends paused, as
/// it was saved), then resumes the guest; returns the status after that.
async fn restored(
    qmp: &Qmp,
    process: &mut QemuProcess,
    run: &RunDir,
    deadline: Instant,
) -> Result<String> {
    loop {
        let status = qmp.status().await?;
        match status.as_str() {
            "paused" | "postmigrate" | "prelaunch" => break,
            "inmigrate" | "restore-vm" if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            "inmigrate" | "restore-vm" => {
                return Err(Error::State(
                    "it did not load before the boot deadline".into(),
                ))
            }
            "running" => return Ok(status),
            other => {
                if let Some(st) = process.wait(Duration::from_millis(200)).await {
                    return Err(exited(
                        run,
                        "while restoring the saved state",
                        st.to_string(),
                    ));
                }
                return Err(Error::State(format!("QEMU is `{other}` after loading it")));
            }
        }
    }
    qmp.execute(qapi::qmp::cont {}).await?;
    qmp.status().await.map_err(Into::into)
}

fn exited(run: &RunDir, during: &str, status: String) -> Error {
    Error::Exited {
        during: during.to_owned(),
        status,
        qemu_log: super::rundir_tail(&run.qemu_log(), 20),
        serial: run.serial_tail(30),
    }
}

/// Every PCI device the topology implies must be in QEMU's own PCI tree.
async fn check_pci(qmp: &Qmp, topology: &Topology) -> Result<()> {
    let present = qmp.pci_ids().await?;
    let missing: Vec<String> = cmdline::pci_ids(topology)
        .into_iter()
        .filter(|id| !present.contains(id))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::Mismatch(format!(
            "PCI devices {missing:?} are not in QEMU's query-pci (present: {present:?})"
        )))
    }
}

/// Compares QEMU's own list of memory devices with the topology.
async fn check_memory_devices(qmp: &Qmp, topology: &Topology) -> Result<serde_json::Value> {
    let devices = qmp.memory_devices().await?;
    let json = serde_json::to_value(&devices).unwrap_or_default();
    let nvdimms: Vec<_> = devices
        .iter()
        .filter_map(|d| match d {
            qapi::qmp::MemoryDeviceInfo::nvdimm(w) => Some(&w.data),
            _ => None,
        })
        .collect();
    if nvdimms.len() != topology.nvdimms.len() {
        return Err(Error::Mismatch(format!(
            "{} NVDIMMs in QEMU, {} in the topology",
            nvdimms.len(),
            topology.nvdimms.len()
        )));
    }
    for (i, (q, t)) in nvdimms.iter().zip(&topology.nvdimms).enumerate() {
        let expected = t.size.bytes() - t.label_size.bytes();
        if q.size as u64 != expected && q.size as u64 != t.size.bytes() {
            return Err(Error::Mismatch(format!(
                "nvdimm{i} is {} bytes in QEMU, the topology asks for {}",
                q.size, t.size
            )));
        }
    }
    Ok(json)
}

fn shell_words(binary: &Path, argv: &[String]) -> String {
    let quote = |s: &str| {
        if s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=,./:@+".contains(c))
        {
            s.to_owned()
        } else {
            format!("'{}'", s.replace('\'', r"'\''"))
        }
    };
    let mut out = quote(&binary.display().to_string());
    for a in argv {
        out.push_str(if a.starts_with('-') { " \\\n  " } else { " " });
        out.push_str(&quote(a));
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod each_tests {
    use super::*;

    #[test]
    fn an_optional_driver_is_loaded_only_where_the_kernel_has_it() {
        let s = drivers_script(&["cxl_acpi", "cxl_pci", "dax_cxl"]);
        assert!(
            s.starts_with("modprobe -a cxl_acpi cxl_pci || exit; "),
            "{s}"
        );
        assert!(
            s.contains("! modprobe -n -q dax_cxl || modprobe dax_cxl || exit; "),
            "{s}"
        );
        assert!(s.ends_with("done"), "{s}");
    }

    #[test]
    fn each_command_gets_its_own_output_and_exit_code() {
        let script = each_script(&[&["cxl", "list", "-M"], &["ndctl", "list", "-D"]]);
        assert_eq!(
            script,
            "cxl list -M; printf '\\n@@ndharness-exit=%d\\n' $?; \
             ndctl list -D; printf '\\n@@ndharness-exit=%d\\n' $?"
        );
        // As the shell prints it: output with or without its own last newline.
        let stdout = "[\n  {}\n]\n\n@@ndharness-exit=0\nno newline\n@@ndharness-exit=1\n";
        assert_eq!(
            split_each(stdout, 2).unwrap(),
            vec![(0, "[\n  {}\n]\n".to_owned()), (1, "no newline".to_owned())]
        );
        assert_eq!(
            split_each("\n@@ndharness-exit=0\n", 1).unwrap(),
            vec![(0, String::new())]
        );
        // A missing or an extra mark is not taken for output.
        assert!(split_each(stdout, 3).is_none());
        assert!(split_each(stdout, 1).is_none());
        // The first command that failed is named, with the stderr of all.
        let cmds: [&[&str]; 2] = [&["cxl", "list", "-M"], &["ndctl", "list", "-D"]];
        let outs = split_each(stdout, 2).unwrap();
        assert_eq!(
            first_failure(&cmds, &outs, "no bus"),
            Some("`ndctl list -D` failed: no bus".to_owned())
        );
        assert_eq!(first_failure(&cmds[..1], &outs[..1], ""), None);
    }
}
