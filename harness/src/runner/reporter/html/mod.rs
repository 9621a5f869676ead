//! report.html, beside results.json: one self-contained page (inline CSS,
//! nothing fetched) of a run: every trial with its status and time, each
//! failure with its message (the step's or the snapshot's diff), its step
//! transcript and the kernel reports in it, and, given the previous run's
//! results (`previous.json`, kept when the run started, or `--previous
//! FILE`), what changed: statuses, and times side by side as blktests
//! shows them ([`changes`]). Everything the guest printed is escaped.

pub mod changes;
mod page;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::results::PREVIOUS;
use super::{json, Reporter, RunEvent, RunRecord};

/// The run a report compares against, and where it was read from.
#[derive(Clone, Debug)]
pub struct Previous {
    pub source: PathBuf,
    pub record: RunRecord,
}

/// Writes report.html into its folder when the run ends.
pub struct HtmlReporter {
    pub dir: PathBuf,
    /// `--previous FILE`, read before the run; else the folder's
    /// previous.json is read when the run ends.
    pub previous: Option<Previous>,
}

impl Reporter for HtmlReporter {
    fn report(&mut self, event: &RunEvent<'_>) {
        let RunEvent::Finished(run) = event else {
            return;
        };
        let previous = self.previous.clone().or_else(|| previous_in(&self.dir));
        match write(&self.dir, run, previous.as_ref()) {
            Ok(path) => println!("  report:  {}", path.display()),
            Err(e) => eprintln!(
                "warning: could not write report.html to {}: {e}",
                self.dir.display()
            ),
        }
    }
}

/// The previous run kept in a results folder, if it is there and reads.
pub fn previous_in(dir: &Path) -> Option<Previous> {
    let source = dir.join(PREVIOUS);
    if !source.is_file() {
        return None;
    }
    match json::read(&source) {
        Ok(record) => Some(Previous { source, record }),
        Err(e) => {
            eprintln!("warning: report.html compares with no previous run: {e}");
            None
        }
    }
}

/// Writes `dir/report.html`; returns its path.
pub fn write(dir: &Path, run: &RunRecord, previous: Option<&Previous>) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("report.html");
    std::fs::write(&path, page::render(run, previous))?;
    Ok(path)
}

/// Text made safe for HTML, in an element or an attribute. Control
/// characters a guest may print (terminal escapes) are shown as `\xNN`.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\n' | '\t' => out.push(ch),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

/// Text with unified-diff lines in it, escaped, its added, removed and
/// header lines marked (`add`, `del`, `hunk` classes).
pub fn diff_lines(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let class = if line.starts_with("+++") || line.starts_with("---") || line.starts_with("@@")
        {
            "hunk"
        } else if line.starts_with('+') {
            "add"
        } else if line.starts_with('-') {
            "del"
        } else {
            ""
        };
        match class {
            "" => {
                let _ = writeln!(out, "{}", escape(line));
            }
            c => {
                let _ = writeln!(out, "<span class=\"{c}\">{}</span>", escape(line));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_quotes_and_terminal_codes() {
        assert_eq!(
            escape("<b>&\"x\"'</b>"),
            "&lt;b&gt;&amp;&quot;x&quot;&#39;&lt;/b&gt;"
        );
        assert_eq!(
            escape("\u{1b}[31mred\u{0}\n\tok"),
            "\\x1b[31mred\\x00\n\tok"
        );
        assert_eq!(escape("é µ"), "é µ");
    }

    #[test]
    fn diff_lines_are_marked_and_escaped() {
        let d = diff_lines("--- a.snap\n+++ this run\n@@ -1 +1 @@\n-<old>\n+new & more\n same");
        assert_eq!(
            d,
            "<span class=\"hunk\">--- a.snap</span>\n\
             <span class=\"hunk\">+++ this run</span>\n\
             <span class=\"hunk\">@@ -1 +1 @@</span>\n\
             <span class=\"del\">-&lt;old&gt;</span>\n\
             <span class=\"add\">+new &amp; more</span>\n \
             same\n"
        );
    }
}
