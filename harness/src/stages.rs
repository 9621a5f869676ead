//! What long work says while it runs (an image build's stages, the
//! nfit_test and ndctl tests builds, a kernel tree build), on stderr: one
//! line per stage, with a bar where the total is known.
//!
//! At a terminal a stage's line is live (indicatif: a spinner or a bar,
//! the item at hand, the time so far) and stays, ticked, when the stage
//! ends. In a CI log (`CI` set) or when stderr is not a terminal the lines
//! are plain text, no escape codes: one when a stage starts, then one at
//! most every [`PLAIN_EVERY`] while it runs. The builders only call
//! [`Stage`] and [`say`]; nothing else here knows how they are drawn.

use std::io::IsTerminal;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a running stage writes a plain line.
pub const PLAIN_EVERY: Duration = Duration::from_secs(30);

/// The longest item shown after a stage's step (a make target, a package).
const ITEM_CHARS: usize = 70;

/// Whether `CI` is set as CI services set it (not empty, `false` or `0`).
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Whether stages are drawn live: stderr is a terminal and `CI` is not set.
pub fn live() -> bool {
    static LIVE: OnceLock<bool> = OnceLock::new();
    *LIVE.get_or_init(|| !ci() && std::io::stderr().is_terminal())
}

/// The lines of every live stage, drawn together: a build inside another
/// (nfit_test inside an image's kernel stage) gets a line of its own.
fn lines() -> &'static MultiProgress {
    static LINES: OnceLock<MultiProgress> = OnceLock::new();
    LINES.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
}

/// Writes a line on stderr (a warning) without tearing a live stage's
/// line: at a terminal the stages are lifted off, then drawn again below.
pub fn say(line: &str) {
    if live() {
        lines().suspend(|| eprintln!("{line}"));
    } else {
        eprintln!("{line}");
    }
}

/// One stage of long work: `image default: unpack`, `kernel tree: make`.
pub struct Stage {
    what: String,
    step: String,
    total: Option<u64>,
    pos: u64,
    started: Instant,
    last_plain: Instant,
    bar: Option<ProgressBar>,
}

impl Stage {
    /// A stage whose length is unknown (a spinner at a terminal).
    pub fn start(what: &str, step: &str) -> Stage {
        Stage::begin(what, step, None)
    }

    /// A stage of `total` items (a bar at a terminal); `step` names them
    /// (`download 41 packages`).
    pub fn counted(what: &str, step: &str, total: u64) -> Stage {
        Stage::begin(what, step, Some(total))
    }

    fn begin(what: &str, step: &str, total: Option<u64>) -> Stage {
        let now = Instant::now();
        let bar = live().then(|| {
            let bar = match total {
                Some(n) => ProgressBar::new(n).with_style(style(
                    "{spinner:.cyan} {prefix}: {wide_msg} [{bar:20.cyan/blue}] {pos}/{len} [{elapsed}]",
                )),
                None => ProgressBar::new_spinner()
                    .with_style(style("{spinner:.cyan} {prefix}: {wide_msg} [{elapsed}]")),
            }
            .with_prefix(what.to_owned())
            .with_message(step.to_owned());
            let bar = lines().add(bar);
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        if bar.is_none() {
            eprintln!("{what}: {step}");
        }
        Stage {
            what: what.to_owned(),
            step: step.to_owned(),
            total,
            pos: 0,
            started: now,
            last_plain: now,
            bar,
        }
    }

    /// `n` more items done.
    pub fn inc(&mut self, n: u64) {
        self.pos += n;
        match &self.bar {
            Some(bar) => bar.inc(n),
            None => self.plain(None),
        }
    }

    /// The item at hand (the last line of make, a package's name).
    pub fn item(&mut self, item: &str) {
        let item = item.trim();
        if item.is_empty() {
            return;
        }
        let short: String = item.chars().take(ITEM_CHARS).collect();
        match &self.bar {
            Some(bar) => bar.set_message(format!("{}: {short}", self.step)),
            None => self.plain(Some(&short)),
        }
    }

    /// A plain line, when the last is [`PLAIN_EVERY`] old.
    fn plain(&mut self, item: Option<&str>) {
        if self.last_plain.elapsed() < PLAIN_EVERY {
            return;
        }
        self.last_plain = Instant::now();
        let count = self
            .total
            .map(|n| format!(" {}/{n}", self.pos))
            .unwrap_or_default();
        let item = item.map(|i| format!(": {i}")).unwrap_or_default();
        eprintln!(
            "{}: {}{count}{item} ({} so far)",
            self.what,
            self.step,
            humantime::format_duration(Duration::from_secs(self.started.elapsed().as_secs()))
        );
    }

    /// The stage is done: at a terminal its line stays, ticked.
    pub fn finish(self) {
        if let Some(bar) = &self.bar {
            bar.set_style(style("  {prefix}: {msg}, done in {elapsed}"));
            bar.set_message(self.step.clone());
            bar.finish();
        }
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        // An error ended the stage: its line stays as it was.
        if let Some(bar) = &self.bar {
            if !bar.is_finished() {
                bar.abandon();
            }
        }
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .expect("the templates are valid")
        .progress_chars("=> ")
}
