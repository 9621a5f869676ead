//! The serial console watched while the guest runs a command: an Oops, a
//! BUG or a panic there ends the wait a short grace after it, so a command
//! the kernel left hanging fails in seconds with the report as its
//! verdict, not at its timeout. The console is a file on the host: it is
//! read even when the guest agent can no longer answer.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::kmsg::{self, ProblemKind};

/// How long a command may still finish after a fatal report (the report's
/// own lines arrive meanwhile, and a step that expected it is judged as
/// usual when its command comes back).
pub const GRACE: Duration = Duration::from_secs(3);
const POLL: Duration = Duration::from_millis(250);
/// Console lines kept before a report and after it.
const BEFORE: usize = 5;
const AFTER: usize = 40;

/// A fatal kernel report seen on the console.
#[derive(Clone, Debug)]
pub struct ConsoleReport {
    pub kind: ProblemKind,
    /// The report's lines and a few before it.
    pub excerpt: String,
}

/// Where the console log ends now: a watch starts there.
pub fn end_of(serial: &Path) -> u64 {
    std::fs::metadata(serial).map_or(0, |m| m.len())
}

/// Resolves a [`GRACE`] after the first fatal report written to `serial`
/// past byte `from`; never resolves without one.
pub async fn fatal_report(serial: PathBuf, from: u64) -> ConsoleReport {
    let kind = loop {
        tokio::time::sleep(POLL).await;
        if let Some(kind) = first_fatal(&read_from(&serial, from)) {
            break kind;
        }
    };
    tokio::time::sleep(GRACE).await;
    ConsoleReport {
        kind,
        excerpt: excerpt(&read_from(&serial, from)),
    }
}

fn read_from(serial: &Path, from: u64) -> String {
    let bytes = std::fs::read(serial).unwrap_or_default();
    let start = (from as usize).min(bytes.len());
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

fn first_fatal(text: &str) -> Option<ProblemKind> {
    text.lines().find_map(kmsg::fatal_console_report)
}

/// The first fatal report in `text` with the lines around it.
fn excerpt(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| kmsg::fatal_console_report(l).is_some())
        .unwrap_or(0);
    lines[at.saturating_sub(BEFORE)..(at + AFTER).min(lines.len())].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_excerpt_starts_a_little_before_the_report() {
        let mut text: Vec<String> = (0..10).map(|i| format!("[ {i}.0] line {i}")).collect();
        text.push("[ 10.0] BUG: kernel NULL pointer dereference, address: 0".into());
        text.push("[ 10.1] #PF: supervisor read access in kernel mode".into());
        let text = text.join("\n");
        assert_eq!(first_fatal(&text), Some(ProblemKind::Bug));
        let e = excerpt(&text);
        assert!(e.starts_with("[ 5.0] line 5"), "{e}");
        assert!(
            e.ends_with("#PF: supervisor read access in kernel mode"),
            "{e}"
        );
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_report_ends_the_watch_after_the_grace() {
        let dir = tempfile::tempdir().unwrap();
        let serial = dir.path().join("serial.log");
        std::fs::write(&serial, "[ 1.0] BUG: old report before the watch\n").unwrap();
        let from = end_of(&serial);
        let watch = tokio::spawn(fatal_report(serial.clone(), from));
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(!watch.is_finished(), "nothing new on the console yet");
        let mut text = std::fs::read_to_string(&serial).unwrap();
        text.push_str("[ 2.0] Oops: 0002 [#1] PREEMPT SMP NOPTI\n");
        std::fs::write(&serial, text).unwrap();
        let report = watch.await.unwrap();
        assert_eq!(report.kind, ProblemKind::Oops);
        assert!(report.excerpt.contains("Oops: 0002"), "{}", report.excerpt);
        assert!(!report.excerpt.contains("old report"), "{}", report.excerpt);
    }
}
