//! The verdicts of a trial: how a step, a preparation or a whole trial
//! ends ([`Verdict`]), and the judgments that make them: a step's
//! expectations ([`check_expect`]) and the kernel reports among records
//! ([`check_reports`]).

use crate::case_guest;
use crate::kmsg::{self, Record};
use crate::normalize;
use crate::runner::result::{Cause, Failure};
use crate::suite::Step;
use crate::transcript::{self, StepRecord};
use crate::vm::{agent, machine};

/// Why a trial stopped before its end.
#[derive(Debug)]
pub enum Verdict {
    /// A verdict on the kernel or ndctl: expectation, kernel report,
    /// snapshot, panic, step timeout.
    Fail(Failure),
    /// The harness or the host failed; says nothing about the kernel.
    Error(String),
    /// A step exited with the case's `skip_exit` code, for this reason.
    Skip(String),
}

impl Verdict {
    /// A failure for `cause`, said as `message`.
    pub fn fail(cause: Cause, message: impl Into<String>) -> Verdict {
        Verdict::Fail(Failure::new(cause, message))
    }
}

impl From<machine::Error> for Verdict {
    fn from(e: machine::Error) -> Verdict {
        machine_verdict(&e)
    }
}

/// The guest failing: the harness's trouble (an error) or the kernel's
/// (its panic, its report that hung a command: a failure).
pub fn machine_verdict(e: &machine::Error) -> Verdict {
    {
        if e.is_infrastructure() {
            return Verdict::Error(e.to_string());
        }
        let cause = match e {
            machine::Error::Panicked { during, .. }
            | machine::Error::KernelReport { during, .. } => Cause::GuestDied {
                during: during.clone(),
            },
            _ => Cause::Setup {
                what: e.to_string().lines().next().unwrap_or_default().to_owned(),
            },
        };
        Verdict::fail(cause, e.to_string())
    }
}

/// A step's exit code, stdout and stderr against its `expect:`.
pub fn check_expect(step: &Step, rec: &StepRecord) -> Result<(), Verdict> {
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
    let cause = Cause::Expectation {
        step: rec.n,
        command: rec.command.clone(),
    };
    Err(Verdict::fail(
        cause,
        format!(
            "step {} (`{}`): {}\n--- stdout\n{}\n--- stderr\n{}",
            rec.n,
            rec.command,
            problems.join("; "),
            rec.stdout.trim_end(),
            rec.stderr.trim_end()
        ),
    ))
}

/// Fails on any kernel report not in `expected`, showing it with the lines
/// that follow it.
pub fn check_reports(
    records: &[Record],
    expected: &[String],
    context: &str,
) -> Result<(), Verdict> {
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
        let cause = Cause::KernelReport {
            title: kind.to_string(),
            line: normalize::text(r.message.trim()),
            context: context.to_owned(),
        };
        return Err(Verdict::fail(
            cause,
            format!("kernel {kind} {context}:\n  {}", report.join("\n  ")),
        ));
    }
    Ok(())
}

/// Why a step skipped: the last line that says so (ndctl's tests print
/// "kernel VERSION: ... skipping"), else its last line of output.
pub fn skip_reason(stdout: &str, stderr: &str) -> String {
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

/// The verdict on a guest's preparation `what`: its command's failure,
/// else the kernel reports it caused beyond `expected`.
pub fn prepared(
    out: &agent::ExecOutput,
    kernel: &[Record],
    expected: &[String],
    what: &str,
) -> Result<(), Verdict> {
    if !out.success() {
        let cause = Cause::Setup {
            what: what.to_owned(),
        };
        return Err(Verdict::fail(
            cause,
            format!("{what}: {}", out.stderr_text().trim()),
        ));
    }
    check_reports(kernel, expected, &format!("while {what}"))
}

/// A guest the harness could not drive: the kernel's failure (a panic
/// on the way) or the harness's own.
pub fn guest_error(e: case_guest::Error) -> Verdict {
    match e {
        case_guest::Error::Guest(e) => e.into(),
        e if e.is_infrastructure() => Verdict::Error(e.to_string()),
        e => Verdict::fail(
            Cause::Setup {
                what: e.to_string(),
            },
            e.to_string(),
        ),
    }
}

/// One step as it ran: what [`judge_seen`] records and judges.
pub struct Seen<'o> {
    pub number: usize,
    pub boot: usize,
    pub output: &'o agent::ExecOutput,
    pub kernel: Vec<Record>,
}

/// Records a step's run in `records` (its relevant kernel records in
/// `since_checkpoint`) and judges it: its kernel reports, its skip code,
/// its expectations.
pub fn judge_seen(
    records: &mut Vec<StepRecord>,
    since_checkpoint: &mut Vec<Record>,
    skip_exit: Option<i32>,
    step: &Step,
    seen: Seen<'_>,
) -> Result<(), Verdict> {
    let rec = StepRecord {
        n: seen.number,
        command: step.action.display(),
        exit_code: seen.output.exit_code,
        signal: seen.output.signal,
        stdout: seen.output.stdout_text(),
        stderr: seen.output.stderr_text(),
        kernel: seen.kernel,
        duration: seen.output.duration,
        boot: seen.boot,
        marker: false,
    };
    since_checkpoint.extend(rec.kernel.iter().filter(|r| kmsg::relevant(r)).cloned());
    records.push(rec);
    let rec = records.last().expect("just pushed");
    let context = format!("in step {} (`{}`)", seen.number, rec.command);
    check_reports(&rec.kernel, &step.expect.kernel_reports, &context)?;
    if skip_exit.is_some() && rec.exit_code == skip_exit {
        return Err(Verdict::Skip(skip_reason(&rec.stdout, &rec.stderr)));
    }
    check_expect(step, rec)
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
