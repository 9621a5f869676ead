//! One trial from boot to verdict.

use std::path::PathBuf;
use std::time::Duration;

use super::{snapshot, Config, GuestEnv};
use crate::kmsg::{self, Record};
use crate::machine::{self, Machine, StartSpec, StepRun};
use crate::names::Names;
use crate::qemu::RunDir;
use crate::suite::{Action, Step, Trial};
use crate::transcript::{self, StepRecord};

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
}

/// Boots the trial's guest, runs its steps, and judges the result.
pub fn run_case(config: &Config, env: &GuestEnv, trial: &Trial) -> CaseOutcome {
    let run = match RunDir::create(
        &config.runs_dir,
        &trial.name.replace("::", "-"),
        &trial.topology.topology,
    ) {
        Ok(r) => r,
        Err(e) => {
            return CaseOutcome::Error {
                message: format!("infrastructure error: {e}"),
                evidence: None,
            }
        }
    };
    let evidence = run.path.clone();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return CaseOutcome::Error {
                message: format!("infrastructure error: failed to start a runtime: {e}"),
                evidence: Some(evidence),
            }
        }
    };
    let outcome = rt.block_on(drive(config, env, trial, run));
    match outcome {
        Ok(run) => {
            run.remove();
            CaseOutcome::Pass
        }
        Err(Verdict::Fail(message)) => CaseOutcome::Fail { message, evidence },
        Err(Verdict::Error(message)) => CaseOutcome::Error {
            message: format!("infrastructure error: {message}"),
            evidence: Some(evidence),
        },
    }
}

enum Verdict {
    Fail(String),
    Error(String),
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
) -> Result<RunDir, Verdict> {
    let spec = StartSpec {
        qemu_binary: &env.qemu,
        image: &env.image,
        topology: &trial.topology.topology,
        accel: env.accel,
        extra_append: "",
        boot_timeout: config.boot_timeout,
    };
    let mut m = Machine::start(&spec, run).await?;
    let mut records = Vec::new();
    let result = steps(&mut m, trial, &mut records).await;
    let run = m.stop().await;
    // Written whatever happened: a failing case is when it is read.
    let _ = std::fs::write(
        run.path.join("transcript.txt"),
        transcript::render_evidence(&records),
    );
    let (layout, names) = result?;
    let case = &trial.case;
    let _ = std::fs::write(run.path.join("layout.txt"), &layout);
    let mut failures = Vec::new();
    let snap_name = |kind: &str| format!("{}@{}.{kind}", case.name, trial.topology.name);
    let description = format!("{}: {}", trial.name, case.spec.description.trim());
    for (kind, content) in [
        ("transcript", transcript::render(&records, &names)),
        ("layout", layout),
    ] {
        if let Err(e) = snapshot::compare(
            &case.snapshot_dir(),
            &case.path,
            &snap_name(kind),
            &description,
            &content,
        ) {
            failures.push(e);
        }
    }
    if failures.is_empty() {
        Ok(run)
    } else {
        Err(Verdict::Fail(failures.join("\n")))
    }
}

/// Runs every step (CXL region assembly first, when the topology asks for
/// it), stopping at the first one that fails its expectations.
async fn steps(
    m: &mut Machine,
    trial: &Trial,
    records: &mut Vec<StepRecord>,
) -> Result<(String, Names), Verdict> {
    m.read_kernel_log().await?;
    check_reports(&m.take_unattributed(), &[], "during boot")?;
    let setup: Vec<Step> = crate::assemble::plan(m, &trial.topology.topology)
        .await
        .map_err(|e| Verdict::Fail(format!("CXL region assembly: {e}")))?
        .into_iter()
        .map(|line| Step {
            action: Action::Run(line),
            expect: Default::default(),
            timeout: None,
        })
        .collect();
    for (i, step) in setup.iter().chain(&trial.case.spec.steps).enumerate() {
        let n = i + 1;
        let timeout = step.timeout.unwrap_or(trial.case.spec.step_timeout);
        let out = match run_step(m, n, step, timeout).await {
            Ok(out) => out,
            Err(machine::Error::Agent(crate::guest::Error::CommandTimeout { timeout, .. })) => {
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
        };
        records.push(rec);
        let rec = records.last().expect("just pushed");
        let context = format!("in step {n} (`{}`)", rec.command);
        check_reports(&rec.kernel, &step.expect.kernel_reports, &context)?;
        let between = format!("between steps {n} and {}", n + 1);
        check_reports(&m.take_unattributed(), &[], &between)?;
        check_expect(step, rec)?;
    }
    let names = stable_names(m, &trial.topology.topology).await?;
    let layout = layout(m, trial, &names).await?;
    m.read_kernel_log().await?;
    check_reports(&m.take_unattributed(), &[], "after the last step")?;
    Ok((layout, names))
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
        if expected.iter().any(|e| r.message.contains(e.as_str())) {
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

/// The guest's probe-order names and their stable replacements (CXL only:
/// NFIT devices are named in ACPI order).
async fn stable_names(m: &Machine, t: &crate::topology::Topology) -> Result<Names, Verdict> {
    if t.cxl.is_none() {
        return Ok(Names::default());
    }
    let mut texts = Vec::new();
    for argv in [
        &["cxl", "list", "-M"][..],
        &["cxl", "list", "-P", "-E"],
        &["ndctl", "list", "-D"],
    ] {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        texts.push(m.exec(&argv, Duration::from_secs(60)).await?.stdout_text());
    }
    Ok(Names::from_listings(&texts[0], &texts[1], &texts[2]))
}

/// The layout a snapshot holds: what ndctl (and cxl) list, normalized.
async fn layout(m: &Machine, trial: &Trial, names: &Names) -> Result<String, Verdict> {
    let t = &trial.topology.topology;
    let mut listings: Vec<&[&str]> = Vec::new();
    if t.has_nfit() || t.cxl.is_some() {
        listings.push(&["ndctl", "list", "-RDNu"]);
    }
    if t.cxl.is_some() {
        listings.push(&["cxl", "list", "-RDMu"]);
    }
    let mut text = String::new();
    for argv in listings {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        let out = m.exec(&argv, Duration::from_secs(60)).await?;
        if !out.success() {
            let msg = format!("`{}` failed: {}", argv.join(" "), out.stderr_text());
            return Err(Verdict::Fail(msg));
        }
        let body = crate::normalize::output(&names.apply(&out.stdout_text()));
        text.push_str(&format!("$ {}\n{body}\n", argv.join(" ")));
    }
    Ok(text)
}
