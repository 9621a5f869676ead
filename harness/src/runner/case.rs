//! One trial from boot to verdict.

use std::path::PathBuf;
use std::time::Duration;

use super::warm::SavePoint;
use super::{snapshot, Config, GuestEnv};
use crate::kmsg::{self, Record};
use crate::names::Names;
use crate::normalize;
use crate::suite::{Action, Step, Trial};
use crate::transcript::{self, StepRecord};
use crate::vm::machine::{self, Machine, StartSpec, StepRun};
use crate::vm::RunDir;

/// How a trial ended.
#[derive(Debug)]
pub enum CaseOutcome {
    Pass,
    /// A verdict on the kernel or ndctl: expectation, kernel report, snapshot.
    Fail {
        message: String,
        evidence: PathBuf,
    },
    /// The harness or the host failed; says nothing about the kernel.
    Error {
        message: String,
        evidence: Option<PathBuf>,
    },
    /// A step exited with the case's `skip_exit` code: not run, for the
    /// reason the step gave.
    Skip {
        reason: String,
    },
}

/// Where a trial's wall time went: (phase, seconds), in first-seen order.
pub type Phases = Vec<(&'static str, Duration)>;

/// Boots the trial's guest, runs its steps, and judges the result.
pub fn run_case(config: &Config, env: &GuestEnv, trial: &Trial) -> (CaseOutcome, Phases) {
    let run = match RunDir::create(
        &config.runs_dir,
        &trial.name.replace("::", "-"),
        &trial.topology.topology,
    ) {
        Ok(r) => r,
        Err(e) => {
            let message = format!("infrastructure error: {e}");
            let evidence = None;
            return (CaseOutcome::Error { message, evidence }, Phases::new());
        }
    };
    let evidence = run.path.clone();
    let error = |message: String| {
        let evidence = Some(evidence.clone());
        (CaseOutcome::Error { message, evidence }, Phases::new())
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return error(format!(
                "infrastructure error: failed to start a runtime: {e}"
            ))
        }
    };
    let mut clock = Laps::default();
    let state = match super::warm::state_for(config, env, trial) {
        Ok(s) => s,
        Err(e) => return error(format!("infrastructure error: {e}")),
    };
    clock.lap("state");
    let (outcome, clock) = rt.block_on(drive(config, env, trial, run, state.as_ref(), clock));
    let outcome = match outcome {
        Ok(run) => {
            run.remove();
            CaseOutcome::Pass
        }
        Err(Verdict::Fail(message)) => CaseOutcome::Fail { message, evidence },
        Err(Verdict::Skip(reason)) => CaseOutcome::Skip { reason },
        Err(Verdict::Error(message)) => CaseOutcome::Error {
            message: format!("infrastructure error: {message}"),
            evidence: Some(evidence),
        },
    };
    (outcome, clock.laps)
}

enum Verdict {
    Fail(String),
    Error(String),
    Skip(String),
}

impl From<machine::Error> for Verdict {
    fn from(e: machine::Error) -> Verdict {
        if e.is_infrastructure() {
            Verdict::Error(e.to_string())
        } else {
            Verdict::Fail(e.to_string())
        }
    }
}

async fn drive(
    config: &Config,
    env: &GuestEnv,
    trial: &Trial,
    run: RunDir,
    state: Option<&super::warm::Saved>,
    clock: Laps,
) -> (Result<RunDir, Verdict>, Laps) {
    let mut t = Trace {
        skip_exit: trial.case.spec.skip_exit,
        clock,
        ..Trace::default()
    };
    let result = drive_trace(config, env, trial, run, state, &mut t).await;
    (result, t.clock)
}

/// `drive`, with what the trial did (and its clock) kept in `t`.
async fn drive_trace(
    config: &Config,
    env: &GuestEnv,
    trial: &Trial,
    run: RunDir,
    state: Option<&super::warm::Saved>,
    t: &mut Trace,
) -> Result<RunDir, Verdict> {
    let evidence = run.path.clone();
    let spec = StartSpec {
        qemu_binary: &env.qemu,
        image: &env.image,
        topology: &trial.topology.topology,
        accel: env.accel,
        extra_append: &trial.case.spec.kernel_args,
        boot_timeout: config.boot_timeout,
        incoming: state.map(|s| s.state.as_path()),
    };
    let m = Machine::start(&spec, run).await;
    t.clock
        .lap(if state.is_some() { "restore" } else { "boot" });
    t.machine = Some(m?);
    if let Some(saved) = state {
        t.adopt(saved.prelude.clone());
    }
    let mut result = t.run(&spec, trial, state.map(|s| s.point)).await;
    let mut partial = None;
    let mut ids = normalize::Uuids::default();
    if let Err(Verdict::Fail(message)) = &mut result {
        if let Some(text) = t.transcript_so_far(trial).await {
            let text = ids.apply(&text);
            let name = format!("{}@{}.transcript", trial.case.name, trial.topology.name);
            let dir = snapshot::locate(
                &trial.case.snapshot_dir(),
                &config.variants,
                false,
                &name,
                &text,
            );
            if let Some(diff) = snapshot::diff_stored(&dir, &name, &text) {
                message.push_str("\n--- the transcript so far, against its snapshot:\n");
                message.push_str(&diff);
            }
            partial = Some(text);
        }
    }
    t.clock.lap("steps");
    let run = match t.machine.take() {
        Some(m) => Some(m.kill().await),
        None => None,
    };
    t.clock.lap("stop");
    // Written whatever happened: a failing case is when it is read.
    let _ = std::fs::write(
        evidence.join("transcript.txt"),
        transcript::render_evidence(&t.records),
    );
    let _ = std::fs::write(evidence.join("timing.txt"), t.clock.render());
    let mut snapshots = vec![(
        "transcript".to_owned(),
        partial.unwrap_or_else(|| ids.apply(&transcript::render(&t.records, &t.names))),
    )];
    for (name, body) in &t.checkpoints {
        let body = ids.apply(body);
        let _ = std::fs::write(evidence.join(format!("{name}.txt")), &body);
        snapshots.push((name.clone(), body));
    }
    if let Some(dir) = &config.collect {
        // Comparing two guests: what came out is kept, not judged.
        collect(dir, trial, &snapshots).map_err(Verdict::Error)?;
    }
    result?;
    let run = run.ok_or_else(|| Verdict::Error("the guest is gone".into()))?;
    if config.collect.is_some() || !trial.case.spec.snapshots {
        return Ok(run);
    }
    let case = &trial.case;
    let mut failures = Vec::new();
    let description = format!("{}: {}", trial.name, case.spec.description.trim());
    for (kind, content) in snapshots {
        let snap_name = format!("{}@{}.{kind}", case.name, trial.topology.name);
        let dir = snapshot::locate(
            &case.snapshot_dir(),
            &config.variants,
            config.new_variant,
            &snap_name,
            &content,
        );
        if let Err(e) = snapshot::compare(&dir, &case.path, &snap_name, &description, &content) {
            failures.push(e);
        }
    }
    if failures.is_empty() {
        Ok(run)
    } else {
        Err(Verdict::Fail(failures.join("\n")))
    }
}

/// Writes a trial's snapshot bodies as `DIR/TRIAL/KIND.txt`, one folder per
/// trial (`::` becomes `__`), for `ndharness compare`.
fn collect(
    dir: &std::path::Path,
    trial: &Trial,
    snapshots: &[(String, String)],
) -> Result<(), String> {
    let out = dir.join(super::compare::trial_folder(&trial.name));
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    for (kind, body) in snapshots {
        let p = out.join(format!("{kind}.txt"));
        std::fs::write(&p, body).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    Ok(())
}

/// What a warm-started trial inherits from its template guest: the setup
/// steps as they ran (CXL region assembly), the kernel records since the
/// boot that no checkpoint has taken yet, and where the kernel log reader
/// stood when the state was saved.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Prelude {
    records: Vec<StepRecord>,
    since_checkpoint: Vec<kmsg::Record>,
    n: usize,
    cursor: kmsg::Cursor,
    pending: Vec<kmsg::Record>,
}

/// How a template's boot and setup went.
pub enum Template {
    /// Ready to save: the guest and what trials inherit.
    Ready(Box<Machine>, Prelude),
    /// The boot or the setup fails the case (a kernel report, a failing
    /// assembly step): trials boot cold and each gets that verdict itself.
    Fails,
}

/// Boots nothing: takes a freshly started guest through the boot check
/// and the setup every trial of its group starts with.
pub async fn template(
    m: Machine,
    topology: &crate::topology::Topology,
    assemble: bool,
    point: SavePoint,
) -> Result<Template, String> {
    let mut t = Trace {
        machine: Some(m),
        ..Trace::default()
    };
    // Saved before the drivers: right after the boot check, and each trial
    // loads the drivers and runs the setup after its restore.
    let drivers_pending = t.m().defers_drivers() && point == SavePoint::BeforeDrivers;
    let prepared = if drivers_pending {
        t.boot_check().await
    } else {
        t.boot_and_setup_of(topology, assemble).await
    };
    if let Err(verdict) = prepared {
        if let Some(m) = t.machine.take() {
            m.stop().await.remove();
        }
        return match verdict {
            Verdict::Fail(_) | Verdict::Skip(_) => Ok(Template::Fails),
            Verdict::Error(message) => Err(message),
        };
    }
    let m = t.machine.take().expect("a running guest");
    if drivers_pending && !drivers_unbound(&m).await {
        // A kernel with these drivers built in (your own --kernel) has
        // probed the devices already: a restore would find them forgotten.
        m.stop().await.remove();
        return Ok(Template::Fails);
    }
    let (cursor, pending) = m.kmsg_position();
    Ok(Template::Ready(
        Box::new(m),
        Prelude {
            records: t.records,
            since_checkpoint: t.since_checkpoint,
            n: t.n,
            cursor,
            pending,
        },
    ))
}

/// Whether no driver of a device QEMU does not save has bound yet.
async fn drivers_unbound(m: &Machine) -> bool {
    let test =
        "[ ! -e /sys/bus/pci/drivers/cxl_pci ] && [ ! -e /sys/bus/virtio/drivers/virtio_pmem ]";
    let argv = ["/bin/sh".to_owned(), "-c".to_owned(), test.to_owned()];
    matches!(m.exec(&argv, Duration::from_secs(30)).await, Ok(out) if out.success())
}

/// What a trial has done so far, kept when a step fails.
#[derive(Default)]
struct Trace {
    /// `None` only when a reboot failed to bring the guest back.
    machine: Option<Machine>,
    records: Vec<StepRecord>,
    /// Stable device names of each boot.
    names: Vec<Names>,
    /// Checkpoint name and snapshot body, in order; `layout` last.
    checkpoints: Vec<(String, String)>,
    /// Relevant kernel records since the last checkpoint.
    since_checkpoint: Vec<Record>,
    boot: usize,
    /// Number of the next step (setup steps count too).
    n: usize,
    /// The exit code that skips the trial.
    skip_exit: Option<i32>,
    /// Where the trial's time went, written to its evidence.
    clock: Laps,
}

/// Wall time per phase of a trial, summed by name in first-seen order.
struct Laps {
    last: std::time::Instant,
    laps: Vec<(&'static str, Duration)>,
}

impl Default for Laps {
    fn default() -> Laps {
        Laps {
            last: std::time::Instant::now(),
            laps: Vec::new(),
        }
    }
}

impl Laps {
    /// Charges the time since the last lap to `name`.
    fn lap(&mut self, name: &'static str) {
        let now = std::time::Instant::now();
        let d = now - self.last;
        self.last = now;
        match self.laps.iter_mut().find(|(n, _)| *n == name) {
            Some((_, total)) => *total += d,
            None => self.laps.push((name, d)),
        }
    }

    fn render(&self) -> String {
        let total: Duration = self.laps.iter().map(|(_, d)| *d).sum();
        let mut s = String::new();
        for (name, d) in &self.laps {
            s.push_str(&format!("{name:<12} {:>8.3} s\n", d.as_secs_f64()));
        }
        s.push_str(&format!("{:<12} {:>8.3} s\n", "total", total.as_secs_f64()));
        s
    }
}

impl Trace {
    /// After a failing step: the transcript up to it (UUIDs not yet
    /// numbered).
    async fn transcript_so_far(&mut self, trial: &Trial) -> Option<String> {
        // The names as they are now (a step may have hotplugged a device
        // since the last checkpoint).
        let m = self.machine.as_ref()?;
        let names = tokio::time::timeout(
            Duration::from_secs(10),
            stable_names(m, &trial.topology.topology),
        )
        .await
        .ok()?
        .ok()?;
        self.set_names(names);
        Some(transcript::render(&self.records, &self.names))
    }

    fn m(&mut self) -> &mut Machine {
        self.machine.as_mut().expect("a running guest")
    }

    /// The kernel records no step owns yet: read from the guest when `read`,
    /// kept for the next checkpoint's log, and checked for reports.
    async fn unattributed(&mut self, read: bool, context: &str) -> Result<(), Verdict> {
        if read {
            self.m().read_kernel_log().await?;
        }
        let records = self.m().take_unattributed();
        self.since_checkpoint
            .extend(records.iter().filter(|r| kmsg::relevant(r)).cloned());
        check_reports(&records, &[], context)
    }

    /// The stable names of the current boot, replacing any taken before.
    fn set_names(&mut self, names: Names) {
        self.names.truncate(self.boot);
        self.names.push(names);
    }

    /// Runs every step (CXL region assembly first, when the topology asks
    /// for it), stopping at the first one that fails its expectations, then
    /// takes the final checkpoint, `layout`.
    async fn run(
        &mut self,
        spec: &StartSpec<'_>,
        trial: &Trial,
        restored: Option<SavePoint>,
    ) -> Result<(), Verdict> {
        // A restored guest's boot (and setup, unless its drivers were left
        // to load after the restore) ran and were checked in its template;
        // their records came with the saved state.
        match restored {
            None => self.boot_and_setup(trial).await?,
            Some(SavePoint::BeforeDrivers) if self.m().defers_drivers() => {
                self.drivers(&[]).await?;
                self.setup(trial, true).await?;
            }
            Some(_) => self.reattach().await?,
        }
        for step in &trial.case.spec.steps {
            let timeout = step.timeout.unwrap_or(trial.case.spec.step_timeout);
            match &step.action {
                Action::Checkpoint(name) => self.checkpoint(trial, name).await?,
                Action::Reboot => self.reboot(spec, trial, step).await?,
                _ => self.step(step, timeout).await?,
            }
        }
        // The last checkpoint also records this boot's names.
        self.checkpoint(trial, "layout").await?;
        self.unattributed(true, "after the last step").await?;
        self.clock.lap("steps");
        Ok(())
    }

    /// The boot's kernel log, checked, then the setup steps.
    async fn boot_and_setup(&mut self, trial: &Trial) -> Result<(), Verdict> {
        self.boot_and_setup_of(&trial.topology.topology, trial.case.spec.assemble)
            .await
    }

    async fn boot_and_setup_of(
        &mut self,
        topology: &crate::topology::Topology,
        assemble: bool,
    ) -> Result<(), Verdict> {
        self.boot_check().await?;
        self.drivers(&[]).await?;
        self.setup_of(topology, assemble, true).await
    }

    /// The boot's kernel log, checked for reports.
    async fn boot_check(&mut self) -> Result<(), Verdict> {
        self.m().read_kernel_log().await?;
        let boot_log = self.m().take_unattributed();
        check_reports(&boot_log, &[], "during boot")
    }

    /// Loads the drivers init leaves to the harness; their kernel log is
    /// checked like the boot's.
    async fn drivers(&mut self, expected: &[String]) -> Result<(), Verdict> {
        self.clock.lap("steps");
        let loaded = self.m().load_drivers().await;
        self.clock.lap("drivers");
        self.prepared(loaded?, expected, "loading the topology's drivers")
    }

    /// Gives the devices of a guest restored with its drivers bound what
    /// the restore lost; the kernel log meanwhile is checked like a boot's.
    async fn reattach(&mut self) -> Result<(), Verdict> {
        self.clock.lap("steps");
        let out = self.m().reattach_devices().await;
        self.clock.lap("reattach");
        self.prepared(out?, &[], "reattaching the devices after the restore")
    }

    /// The verdict on a guest's preparation (`what`, `None` when there was
    /// nothing to do): its command's failure, else the kernel reports it
    /// caused beyond `expected`.
    fn prepared(
        &mut self,
        out: Option<crate::vm::agent::ExecOutput>,
        expected: &[String],
        what: &str,
    ) -> Result<(), Verdict> {
        let Some(out) = out else {
            return Ok(());
        };
        if !out.success() {
            return Err(Verdict::Fail(format!(
                "{what}: {}",
                out.stderr_text().trim()
            )));
        }
        let log = self.m().take_unattributed();
        check_reports(&log, expected, &format!("while {what}"))
    }

    /// Takes over what a template guest did before its state was saved.
    fn adopt(&mut self, p: Prelude) {
        self.m().set_kmsg_position(p.cursor, p.pending);
        self.records = p.records;
        self.since_checkpoint = p.since_checkpoint;
        self.n = p.n;
    }

    /// The CXL region assembly, as steps of their own.
    async fn setup(&mut self, trial: &Trial, fresh_labels: bool) -> Result<(), Verdict> {
        self.setup_of(
            &trial.topology.topology,
            trial.case.spec.assemble,
            fresh_labels,
        )
        .await
    }

    async fn setup_of(
        &mut self,
        topology: &crate::topology::Topology,
        assemble: bool,
        fresh_labels: bool,
    ) -> Result<(), Verdict> {
        if !assemble {
            return Ok(());
        }
        self.clock.lap("steps");
        let lines = crate::assemble::plan(self.m(), topology, fresh_labels)
            .await
            .map_err(|e| Verdict::Fail(format!("CXL region assembly: {e}")))?;
        self.clock.lap("plan");
        for line in lines {
            let step = Step {
                action: Action::Run(line),
                expect: Default::default(),
                timeout: None,
            };
            self.step(&step, Duration::from_secs(120)).await?;
        }
        self.clock.lap("setup");
        Ok(())
    }

    async fn step(&mut self, step: &Step, timeout: Duration) -> Result<(), Verdict> {
        self.n += 1;
        let n = self.n;
        let out = match run_step(self.m(), n, step, timeout).await {
            Ok(out) => out,
            Err(machine::Error::Agent(crate::vm::agent::Error::CommandTimeout {
                timeout, ..
            })) => {
                return Err(Verdict::Fail(format!(
                    "step {n} (`{}`) did not finish within {timeout:?}",
                    step.action.display()
                )))
            }
            Err(e) => return Err(e.into()),
        };
        let rec = StepRecord {
            n,
            command: step.action.display(),
            exit_code: out.output.exit_code,
            signal: out.output.signal,
            stdout: out.output.stdout_text(),
            stderr: out.output.stderr_text(),
            kernel: out.kernel,
            duration: out.output.duration,
            boot: self.boot,
            marker: false,
        };
        self.since_checkpoint
            .extend(rec.kernel.iter().filter(|r| kmsg::relevant(r)).cloned());
        self.records.push(rec);
        let rec = self.records.last().expect("just pushed");
        let context = format!("in step {n} (`{}`)", rec.command);
        check_reports(&rec.kernel, &step.expect.kernel_reports, &context)?;
        if self.skip_exit.is_some() && rec.exit_code == self.skip_exit {
            return Err(Verdict::Skip(skip_reason(&rec.stdout, &rec.stderr)));
        }
        check_expect(step, rec)?;
        // Already read while waiting for the step's end marker.
        self.unattributed(false, &format!("after step {n}")).await
    }

    /// Snapshots the layout and the kernel log since the last checkpoint.
    async fn checkpoint(&mut self, trial: &Trial, name: &str) -> Result<(), Verdict> {
        if self.checkpoints.iter().any(|(n, _)| n == name) {
            return Err(Verdict::Fail(format!(
                "checkpoint `{name}` is taken twice (`layout` is the implicit last one)"
            )));
        }
        self.clock.lap("steps");
        let t0 = std::time::Instant::now();
        let (names, mut body) = names_and_layout(self.m(), trial).await?;
        self.clock.lap("layout");
        self.unattributed(true, &format!("before checkpoint `{name}`"))
            .await?;
        self.clock.lap("kernel log");
        body.push_str("\nkernel log since the last checkpoint:\n");
        for r in std::mem::take(&mut self.since_checkpoint) {
            body.push_str(&format!(
                "  {}\n",
                names.apply(&transcript::kernel_line(&r))
            ));
        }
        self.checkpoints.push((name.to_owned(), body));
        self.set_names(names);
        if name != "layout" {
            self.n += 1;
            let rec = StepRecord::marker(
                self.n,
                format!("checkpoint {name}"),
                self.boot,
                t0.elapsed(),
            );
            self.records.push(rec);
        }
        Ok(())
    }

    /// Powers the guest off and boots it again on the same backing files;
    /// CXL regions are created again (labels kept), as firmware would not.
    async fn reboot(
        &mut self,
        spec: &StartSpec<'_>,
        trial: &Trial,
        step: &Step,
    ) -> Result<(), Verdict> {
        if self.m().hotplugged() > 0 {
            return Err(Verdict::Fail(
                "a reboot would lose the hotplugged NVDIMMs (they are not on QEMU's command line)"
                    .into(),
            ));
        }
        let t0 = std::time::Instant::now();
        let names = stable_names(self.m(), &trial.topology.topology).await?;
        self.set_names(names);
        self.unattributed(true, "before the reboot").await?;
        let old = self.machine.take().expect("a running guest");
        let run = old.stop().await;
        run.keep_boot_logs(self.boot);
        self.boot += 1;
        self.clock.lap("steps");
        self.machine = Some(Machine::start(&spec.cold(), run).await?);
        self.clock.lap("boot");
        self.n += 1;
        self.records.push(StepRecord::marker(
            self.n,
            "reboot".into(),
            self.boot,
            t0.elapsed(),
        ));
        self.m().read_kernel_log().await?;
        let boot_log = self.m().take_unattributed();
        let context = format!("while booting again (step {})", self.n);
        check_reports(&boot_log, &step.expect.kernel_reports, &context)?;
        self.drivers(&step.expect.kernel_reports).await?;
        self.setup(trial, false).await
    }
}

/// Why a step skipped: the last line that says so (ndctl's tests print
/// "kernel VERSION: ... skipping"), else its last line of output.
fn skip_reason(stdout: &str, stderr: &str) -> String {
    let lines: Vec<&str> = stdout
        .lines()
        .chain(stderr.lines())
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('+'))
        .collect();
    lines
        .iter()
        .rev()
        .find(|l| l.to_lowercase().contains("skip"))
        .or(lines.last())
        .map_or_else(
            || "skipped (no reason printed)".to_owned(),
            |l| l.to_string(),
        )
}

/// One step: a guest command, or a host-side action followed by a guest
/// command that waits for its effect (so the kernel's reaction is the step's).
async fn run_step(
    m: &mut Machine,
    n: usize,
    step: &Step,
    timeout: Duration,
) -> machine::Result<StepRun> {
    match &step.action {
        Action::HotplugNvdimm { size, label_size } => {
            let before = m.hotplug_nvdimm(*size, *label_size).await?;
            let wait = format!(
                "i=0; while [ $(ls /sys/bus/nd/devices | grep -c '^nmem') -le {before} ]; do \
                 i=$((i+1)); [ $i -gt 100 ] && echo 'the guest saw no new NVDIMM within 10s' >&2 && exit 1; \
                 sleep 0.1; done; ls /sys/bus/nd/devices | grep '^nmem' | sort"
            );
            m.step(n, &["/bin/sh".into(), "-c".into(), wait], timeout)
                .await
        }
        Action::Qmp { command, arguments } => {
            let answer = m.qmp_step(command, arguments).await?;
            // Settle: the guest's reaction (an interrupt, a log line) lands
            // in this step's kernel records.
            let mut run = m
                .step(
                    n,
                    &["/bin/sh".into(), "-c".into(), "sleep 0.5".into()],
                    timeout,
                )
                .await?;
            match answer {
                Ok(v) => {
                    run.output.stdout = serde_json::to_string_pretty(&v)
                        .unwrap_or_default()
                        .into_bytes();
                }
                Err(e) => {
                    run.output.exit_code = Some(1);
                    run.output.stderr = e.into_bytes();
                }
            }
            Ok(run)
        }
        action => m.step(n, &action.argv(), timeout).await,
    }
}

fn check_expect(step: &Step, rec: &StepRecord) -> Result<(), Verdict> {
    let e = &step.expect;
    let mut problems = Vec::new();
    if !e.exit.accepts(rec.exit_code) {
        problems.push(format!(
            "exit code {:?}, expected {}",
            rec.exit_code, e.exit
        ));
    }
    if let Some(want) = &e.stdout {
        if !rec.stdout.contains(want.as_str()) {
            problems.push(format!("stdout lacks {want:?}"));
        }
    }
    if let Some(want) = &e.stderr {
        if !rec.stderr.contains(want.as_str()) {
            problems.push(format!("stderr lacks {want:?}"));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(Verdict::Fail(format!(
        "step {} (`{}`): {}\n--- stdout\n{}\n--- stderr\n{}",
        rec.n,
        rec.command,
        problems.join("; "),
        rec.stdout.trim_end(),
        rec.stderr.trim_end()
    )))
}

/// Fails on any kernel report not in `expected`, showing it with the lines
/// that follow it.
fn check_reports(records: &[Record], expected: &[String], context: &str) -> Result<(), Verdict> {
    for (i, r) in records.iter().enumerate() {
        let Some(kind) = kmsg::problem(r) else {
            continue;
        };
        let normalized = normalize::text(&r.message);
        if expected
            .iter()
            .any(|e| r.message.contains(e.as_str()) || normalized.contains(e.as_str()))
        {
            continue;
        }
        let report: Vec<String> = records[i..]
            .iter()
            .take(25)
            .map(transcript::kernel_line)
            .collect();
        return Err(Verdict::Fail(format!(
            "kernel {kind} {context}:\n  {}",
            report.join("\n  ")
        )));
    }
    Ok(())
}

/// What the stable names are made from (CXL only: NFIT devices are named
/// in ACPI order).
const NAME_LISTINGS: [&[&str]; 3] = [
    &["cxl", "list", "-M"],
    &["cxl", "list", "-P", "-E"],
    &["ndctl", "list", "-D"],
];

/// The guest's probe-order names and their stable replacements.
async fn stable_names(m: &Machine, t: &crate::topology::Topology) -> Result<Names, Verdict> {
    if t.cxl.is_none() {
        return Ok(Names::default());
    }
    let (outs, _) = m.exec_each(&NAME_LISTINGS, Duration::from_secs(60)).await?;
    Ok(names_from(&outs))
}

/// The names from the outputs of [`NAME_LISTINGS`], in that order.
fn names_from(outs: &[(i32, String)]) -> Names {
    Names::from_listings(&outs[0].1, &outs[1].1, &outs[2].1)
}

/// The listings a layout snapshot holds.
fn layout_listings(t: &crate::topology::Topology) -> Vec<&'static [&'static str]> {
    let mut listings: Vec<&[&str]> = Vec::new();
    if t.has_nfit() || t.cxl.is_some() || t.nfit_test.is_some() {
        listings.push(&["ndctl", "list", "-RDNu"]);
    }
    if t.cxl.is_some() {
        listings.push(&["cxl", "list", "-RDMu"]);
    }
    listings
}

/// The stable names and the layout a snapshot holds (what ndctl and cxl
/// list, names replaced, normalized), from one guest round trip.
async fn names_and_layout(m: &Machine, trial: &Trial) -> Result<(Names, String), Verdict> {
    let t = &trial.topology.topology;
    let mut commands: Vec<&[&str]> = Vec::new();
    if t.cxl.is_some() {
        commands.extend(NAME_LISTINGS);
    }
    let n_names = commands.len();
    let listings = layout_listings(t);
    commands.extend(&listings);
    if commands.is_empty() {
        return Ok((Names::default(), String::new()));
    }
    let (outs, stderr) = m.exec_each(&commands, Duration::from_secs(60)).await?;
    let names = if n_names == 0 {
        Names::default()
    } else {
        names_from(&outs)
    };
    let outs = &outs[n_names..];
    if let Some(failed) = machine::first_failure(&listings, outs, &stderr) {
        return Err(Verdict::Fail(failed));
    }
    let mut text = String::new();
    for (argv, (_, stdout)) in listings.iter().zip(outs) {
        let body = crate::normalize::output(&names.apply(stdout));
        text.push_str(&format!("$ {}\n{body}\n", argv.join(" ")));
    }
    Ok((names, text))
}

#[cfg(test)]
mod tests {
    use super::skip_reason;

    #[test]
    fn skip_reason_is_the_line_that_says_so() {
        let out = "+ modprobe cxl_test\nkernel 6.12.95: missing fio, skipping...\n";
        assert_eq!(
            skip_reason(out, ""),
            "kernel 6.12.95: missing fio, skipping..."
        );
        // C tests say it on stderr; shell traces (`+ ...`) are not reasons.
        assert_eq!(
            skip_reason(
                "",
                "nfit_test unavailable skipping tests\nattempted: 1 skipped: 1\n+ exit 77\n"
            ),
            "attempted: 1 skipped: 1"
        );
        assert_eq!(skip_reason("last words\n", ""), "last words");
        assert_eq!(skip_reason("", ""), "skipped (no reason printed)");
    }
}
