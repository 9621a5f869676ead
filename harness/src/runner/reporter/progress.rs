//! One line per trial as it ends (`pass     12.3s  suite::case::topology`),
//! the ignored trials' lines and the failure messages when the run ends:
//! what a person watching a terminal or a CI log reads.

use std::io::Write;

use std::time::Duration;

use super::{Reporter, RunEvent, StepDone, TrialName};
use crate::runner::result::{Status, TrialResult};

/// Prints a line per trial as it ends (libtest's own lines go to a log
/// file meanwhile), then the failures, libtest style.
pub struct ProgressReporter;

impl Reporter for ProgressReporter {
    fn report(&mut self, event: &RunEvent<'_>) {
        match event {
            RunEvent::Started {
                trials,
                threads,
                schedule,
            } => {
                let mut what = super::count(*trials, "trial");
                if let Some(p) = &schedule.partition {
                    what.push_str(&format!(" (shard {p})"));
                }
                if let Some(how) = schedule.repeat.describe() {
                    what.push_str(&format!(", {how}"));
                }
                println!("\nrunning {what}, {threads} at a time");
            }
            RunEvent::TrialFinished(result) => {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(progress_line(result).as_bytes());
                let _ = out.flush();
            }
            RunEvent::TrialSlow {
                trial,
                elapsed,
                last_step,
            } => println!("{}", slow_line(trial, *elapsed, *last_step)),
            RunEvent::AttemptFailed { trial, message } => {
                let first = message.lines().next().unwrap_or_default();
                println!("  RETRY            {trial}  (infrastructure error: {first})");
            }
            RunEvent::Finished(run) => print!("{}", failures(&run.results)),
            RunEvent::TrialStarted { .. } | RunEvent::StepFinished { .. } => {}
        }
    }
}

/// `SLOW    120.0s  suite::case::topology  (after step 5 `...`, 3.2s)`: a
/// trial still running, and the last step it finished.
pub fn slow_line(trial: &TrialName, elapsed: Duration, last_step: Option<&StepDone>) -> String {
    let after = match last_step {
        Some(s) => {
            let mut command = s.command.lines().next().unwrap_or_default().to_owned();
            if command.chars().count() > 60 {
                command = command.chars().take(57).collect::<String>() + "...";
            }
            format!("  (after step {} `{command}`)", s.number)
        }
        None => "  (starting)".to_owned(),
    };
    format!(
        "  {:<7} {:>6.1}s  {trial}{after}",
        "SLOW",
        elapsed.as_secs_f64()
    )
}

/// `pass     12.3s  suite::case::topology`, with the evidence folder of a
/// failure or the reason an ignored trial is ignored.
pub fn progress_line(r: &TrialResult) -> String {
    let mut tail = String::new();
    if let Some(p) = &r.evidence {
        tail.push_str(&format!("  {}", p.display()));
    }
    // A known failure's reason is long: the summary lists it once.
    if let Some(note) = r.note.as_ref().filter(|_| r.status != Status::KnownFailure) {
        tail.push_str(&format!("  ({})", note.to_string().trim()));
    }
    let time = if r.status == Status::Ignored {
        "      -".to_owned()
    } else {
        format!("{:>6.1}s", r.duration.as_secs_f64())
    };
    format!(
        "  {:<7} {time}  {}{tail}\n",
        r.status.word(),
        r.display_name()
    )
}

/// The failure messages, libtest style, before the summary.
pub fn failures(results: &[TrialResult]) -> String {
    let mut out = String::new();
    let mut failed: Vec<&TrialResult> = results.iter().filter(|r| r.message.is_some()).collect();
    failed.sort_by(|a, b| (&a.name, a.repetition).cmp(&(&b.name, b.repetition)));
    for r in failed {
        let known = if r.status == Status::KnownFailure {
            " (known failure)"
        } else {
            ""
        };
        out.push_str(&format!(
            "\n---- {}{known} ----\n{}\n",
            r.display_name(),
            r.message.as_deref().unwrap_or_default().trim_end()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_line_names_the_trial_its_time_and_its_last_step() {
        let trial = TrialName {
            name: "s::c::nfit-1".into(),
            repetition: Some(2),
        };
        let step = StepDone {
            number: 5,
            command: format!("ndctl create-namespace {}\nsecond line", "-x ".repeat(30)),
            exit_code: Some(0),
            duration: Duration::from_secs(3),
        };
        let line = slow_line(&trial, Duration::from_secs(120), Some(&step));
        assert!(
            line.starts_with(
                "  SLOW     120.0s  s::c::nfit-1#2  (after step 5 `ndctl create-namespace -x"
            ),
            "{line}"
        );
        assert!(
            line.ends_with("...`)") && !line.contains("second"),
            "{line}"
        );
        let line = slow_line(&trial, Duration::from_secs(60), None);
        assert!(line.ends_with("(starting)"), "{line}");
    }
}
