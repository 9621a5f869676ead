//! A step and what the harness reads after it, in one guest call: the step
//! wrapper runs the command between its kernel-log markers, then a shell
//! line (an observation), whose output follows the command's after a mark
//! line made for the call; cut apart here. It saves the observation's own
//! exec, and the wait for its end.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{Error, Machine, Result, StepRun, STEP_WRAPPER};

impl Machine {
    /// Runs step `n` as [`Machine::step`] does, then the shell line `then`
    /// in the same guest call; the step's run, and `then`'s stdout.
    pub async fn step_then(
        &mut self,
        n: usize,
        argv: &[String],
        then: &str,
        timeout: Duration,
    ) -> Result<(StepRun, String)> {
        let mark = mark();
        let mut args = vec![
            "--then".to_owned(),
            then.to_owned(),
            "--mark".to_owned(),
            mark.clone(),
            n.to_string(),
        ];
        args.extend(argv.iter().cloned());
        let during = format!("during step {n} (`{}`)", argv.join(" "));
        let fut = self.agent.exec(STEP_WRAPPER, &args, timeout);
        let mut output = self.guard(&during, fut).await??;
        let (out, then_out) = split(&output.stdout, &mark).ok_or_else(|| {
            Error::Frames(format!(
                "step {n} printed no mark before what followed it: {}",
                String::from_utf8_lossy(&output.stdout)
                    .chars()
                    .take(200)
                    .collect::<String>()
            ))
        })?;
        let then_text = String::from_utf8_lossy(&then_out).into_owned();
        output.stdout = out;
        let kernel = self.step_records(n).await?;
        Ok((StepRun { output, kernel }, then_text))
    }
}

/// A mark no command prints by chance: the process, a counter and the time.
fn mark() -> String {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "@@ndharness-then-{}-{}-{nanos}@@",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::Relaxed)
    )
}

/// `bytes` cut at the last "\nMARK\n": what came before and after.
fn split(bytes: &[u8], mark: &str) -> Option<(Vec<u8>, Vec<u8>)> {
    let sep = format!("\n{mark}\n");
    let sep = sep.as_bytes();
    let at = bytes.windows(sep.len()).rposition(|w| w == sep)?;
    Some((bytes[..at].to_vec(), bytes[at + sep.len()..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_cut_at_the_mark() {
        let (out, then) = split(b"hello\n\n@@m@@\nregion 1\n", "@@m@@").unwrap();
        assert_eq!(out, b"hello\n");
        assert_eq!(then, b"region 1\n");
        // A command without a final newline, and without output.
        let (out, then) = split(b"no newline\n@@m@@\n", "@@m@@").unwrap();
        assert_eq!(out, b"no newline");
        assert_eq!(then, b"");
        let (out, _) = split(b"\n@@m@@\nx", "@@m@@").unwrap();
        assert_eq!(out, b"");
    }

    #[test]
    fn no_mark_is_none_and_marks_differ() {
        assert_eq!(split(b"plain output\n", "@@m@@"), None);
        assert_ne!(mark(), mark());
    }
}
