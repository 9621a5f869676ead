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

#[cfg(test)]
mod tests {
    use super::*;

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
