//! The text a case's snapshot holds: each step's command, exit code,
//! output and kernel records, normalized.

use std::fmt::Write;
use std::time::Duration;

use crate::kmsg::{self, Record};
use crate::names::Names;
use crate::normalize;

/// One step as it ran.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct StepRecord {
    pub n: usize,
    pub command: String,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub kernel: Vec<Record>,
    pub duration: Duration,
    /// Which boot of the guest the step ran in (0 first; a reboot step
    /// starts the next), for its device names.
    pub boot: usize,
    /// A reboot or checkpoint: shown as a rule, not as a command.
    pub marker: bool,
}

impl StepRecord {
    /// A reboot or checkpoint line.
    pub fn marker(n: usize, command: String, boot: usize, duration: Duration) -> StepRecord {
        StepRecord {
            n,
            command,
            exit_code: Some(0),
            signal: None,
            stdout: String::new(),
            stderr: String::new(),
            kernel: Vec::new(),
            duration,
            boot,
            marker: true,
        }
    }
}

const LEVELS: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warn", "notice", "info", "debug",
];

/// A kernel record as a transcript shows it: level and normalized message.
pub fn kernel_line(r: &Record) -> String {
    format!(
        "<{}> {}",
        LEVELS[usize::from(r.level & 7)],
        normalize::text(&r.message)
    )
}

/// Renders steps for a snapshot (no timings: they vary run to run), with
/// probe-order device names replaced by stable ones (`names[boot]`).
pub fn render(steps: &[StepRecord], names: &[Names]) -> String {
    let mut out = String::new();
    let none = Names::default();
    for s in steps {
        let names = names.get(s.boot).unwrap_or(&none);
        if s.marker {
            let _ = writeln!(out, "== {} ==\n", s.command);
            continue;
        }
        let _ = writeln!(out, "$ {}", names.apply(&s.command));
        match (s.exit_code, s.signal) {
            (Some(c), _) => {
                let _ = writeln!(out, "exit: {c}");
            }
            (None, Some(sig)) => {
                let _ = writeln!(out, "killed by signal {sig}");
            }
            (None, None) => {
                let _ = writeln!(out, "exit: unknown");
            }
        }
        section(
            &mut out,
            "stdout",
            &normalize::output(&names.apply(&s.stdout)),
        );
        section(
            &mut out,
            "stderr",
            &normalize::output(&names.apply(&s.stderr)),
        );
        let kernel: Vec<String> = s
            .kernel
            .iter()
            .filter(|r| kmsg::relevant(r))
            .map(|r| names.apply(&kernel_line(r)))
            .collect();
        section(&mut out, "kernel", &kernel.join("\n"));
        out.push('\n');
    }
    out
}

fn section(out: &mut String, name: &str, body: &str) {
    if body.trim().is_empty() {
        return;
    }
    let _ = writeln!(out, "{name}:");
    for line in body.lines() {
        let _ = writeln!(out, "  {line}");
    }
}

/// Renders with timings and every kernel record, for the evidence folder.
pub fn render_evidence(steps: &[StepRecord]) -> String {
    let mut out = String::new();
    for s in steps {
        let _ = writeln!(
            out,
            "### step {} ({:.3} s): {}",
            s.n,
            s.duration.as_secs_f64(),
            s.command
        );
        let _ = writeln!(out, "exit: {:?} signal: {:?}", s.exit_code, s.signal);
        let _ = writeln!(out, "--- stdout\n{}\n--- stderr\n{}", s.stdout, s.stderr);
        let _ = writeln!(out, "--- kernel");
        for r in &s.kernel {
            let _ = writeln!(
                out,
                "[{:>5}.{:06}] <{}> {}",
                r.ts_usec / 1_000_000,
                r.ts_usec % 1_000_000,
                r.level,
                r.message
            );
        }
        out.push('\n');
    }
    out
}

/// How many lines of a kernel report [`evidence_reports`] keeps.
const REPORT_LINES: usize = 25;

/// The kernel reports (WARNING, BUG, Oops, ...; see [`kmsg::problem`]) in
/// an evidence transcript ([`render_evidence`]): each with the step it came
/// in (its `### step` line) and its first lines.
pub fn evidence_reports(text: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let mut step = String::new();
    let mut kernel: Vec<&str> = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if let Some(header) = line.strip_prefix("### ") {
            step = header.to_owned();
            continue;
        }
        if line != "--- kernel" {
            continue;
        }
        kernel.clear();
        while let Some(l) = lines.next_if(|l| !l.starts_with("### ")) {
            kernel.push(l);
        }
        let mut i = 0;
        while i < kernel.len() {
            if evidence_record(kernel[i]).is_some_and(|r| kmsg::problem(&r).is_some()) {
                let end = (i + REPORT_LINES).min(kernel.len());
                let report = kernel[i..end]
                    .iter()
                    .map(|l| l.trim_end().to_owned())
                    .filter(|l| !l.is_empty());
                out.push((step.clone(), report.collect()));
                i = end;
            } else {
                i += 1;
            }
        }
    }
    out
}

/// A kernel line of [`render_evidence`]: `[    5.123456] <4> message`.
fn evidence_record(line: &str) -> Option<Record> {
    let (stamp, rest) = line.strip_prefix('[')?.split_once("] <")?;
    let (level, message) = rest.split_once("> ")?;
    let (secs, micros) = stamp.trim().split_once('.')?;
    Some(Record {
        level: level.parse().ok()?,
        facility: 0,
        seq: 0,
        ts_usec: secs.parse::<u64>().ok()? * 1_000_000 + micros.parse::<u64>().ok()?,
        message: message.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_found_in_an_evidence_transcript() {
        let mut warn = StepRecord::marker(3, "ndctl disable-region all".into(), 0, Duration::ZERO);
        warn.marker = false;
        warn.kernel = [
            "6,40,5000000,-;nd_pmem namespace0.0: unbound",
            "4,41,5000100,-;WARNING: CPU: 1 PID: 77 at drivers/nvdimm/region_devs.c:1 x+0x1/0x2",
            "4,42,5000200,-;Modules linked in: nd_pmem",
            "4,43,5000300,-;Call Trace:",
            "4,44,5000400,-; <TASK>",
        ]
        .iter()
        .map(|l| kmsg::parse_line(l).unwrap())
        .collect();
        let mut quiet = StepRecord::marker(4, "true".into(), 0, Duration::ZERO);
        quiet.marker = false;
        quiet.stdout = "WARNING: in stdout is not the kernel's\n".into();
        let text = render_evidence(&[quiet.clone(), warn, quiet]);
        let reports = evidence_reports(&text);
        assert_eq!(reports.len(), 1, "{reports:?}");
        let (step, lines) = &reports[0];
        assert!(step.starts_with("step 3 "), "{step}");
        // The Call Trace belongs to the warning's report, not one of its own.
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert!(lines[0]
            .ends_with("<4> WARNING: CPU: 1 PID: 77 at drivers/nvdimm/region_devs.c:1 x+0x1/0x2"));
        assert!(lines[3].ends_with("<4>  <TASK>"), "{lines:?}");
        assert!(
            evidence_reports("### step 1 (0 s): x\n--- kernel\n[    1.000000] <6> fine\n")
                .is_empty()
        );
    }

    #[test]
    fn renders_exit_output_and_relevant_kernel_lines() {
        let steps = [StepRecord {
            n: 1,
            command: "ndctl create-namespace -m fsdax -s 132m".into(),
            exit_code: Some(1),
            signal: None,
            stdout: String::new(),
            stderr: "failed to create namespace: Invalid argument\n".into(),
            kernel: vec![
                kmsg::parse_line("3,10,5,-;nd_region region0: align setting is 0x1000000 size 0x8400000 is misaligned").unwrap(),
                kmsg::parse_line("6,11,6,-;random: crng init done").unwrap(),
            ],
            duration: Duration::from_millis(40),
            boot: 0,
            marker: false,
        }];
        insta::assert_snapshot!(render(&steps, &[]), @r"
        $ ndctl create-namespace -m fsdax -s 132m
        exit: 1
        stderr:
          failed to create namespace: Invalid argument
        kernel:
          <err> nd_region region0: align setting is 0x1000000 size 0x8400000 is misaligned
        ");
    }
}
