//! One trial from boot to verdict.

use std::path::PathBuf;
use std::time::Duration;

use super::{snapshot, Config, GuestEnv};
use crate::kmsg::{self, Record};
use crate::machine::{self, Machine, StartSpec};
use crate::qemu::RunDir;
use crate::suite::{Step, Trial};
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
    let result = steps(&mut m, trial).await;
    let run = m.stop().await;
    let (records, layout) = result?;
    let case = &trial.case;
    let _ = std::fs::write(
        run.path.join("transcript.txt"),
        transcript::render_evidence(&records),
    );
    let _ = std::fs::write(run.path.join("layout.json"), &layout);
    let mut failures = Vec::new();
    let snap_name = |kind: &str| format!("{}@{}.{kind}", case.name, trial.topology.name);
    let description = format!("{}: {}", trial.name, case.spec.description.trim());
    for (kind, content) in [
        ("transcript", transcript::render(&records)),
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

/// Runs every step, stopping at the first one that fails its expectations.
async fn steps(m: &mut Machine, trial: &Trial) -> Result<(Vec<StepRecord>, String), Verdict> {
    m.read_kernel_log().await?;
    check_reports(&m.take_unattributed(), &[], "during boot")?;
    let mut records = Vec::new();
    for (i, step) in trial.case.spec.steps.iter().enumerate() {
        let n = i + 1;
        let timeout = step.timeout.unwrap_or(trial.case.spec.step_timeout);
        let out = match m.step(n, &step.action.argv(), timeout).await {
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
        check_reports(
            &rec.kernel,
            &step.expect.kernel_reports,
            &format!("in step {n} (`{}`)", rec.command),
        )?;
        check_reports(
            &m.take_unattributed(),
            &[],
            &format!("between steps {n} and {}", n + 1),
        )?;
        check_expect(step, &rec)?;
        records.push(rec);
    }
    let layout = layout(m, trial).await?;
    m.read_kernel_log().await?;
    check_reports(&m.take_unattributed(), &[], "after the last step")?;
    Ok((records, layout))
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

/// The layout a snapshot holds: what ndctl lists, normalized.
async fn layout(m: &Machine, trial: &Trial) -> Result<String, Verdict> {
    if trial.topology.topology.nvdimms.is_empty() {
        return Ok(String::new());
    }
    let argv: Vec<String> = ["ndctl", "list", "-RDNu"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let out = m.exec(&argv, Duration::from_secs(60)).await?;
    if !out.success() {
        return Err(Verdict::Fail(format!(
            "`ndctl list -RDNu` failed: {}",
            out.stderr_text()
        )));
    }
    Ok(crate::normalize::output(&out.stdout_text()))
}
