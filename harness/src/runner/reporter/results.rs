//! Machine-readable results of a run, written by [`ResultsWriter`] when
//! the run ends: `results.json` ([`super::json`]) and `junit.xml`
//! ([`super::junit`]). When a run starts, the last run's results.json
//! becomes `previous.json`, which report.html compares against.

use std::path::{Path, PathBuf};

use super::json::json;
use super::junit::junit;
use super::{Reporter, RunEvent, RunRecord};

/// The results of the run before, kept when a run starts.
pub const PREVIOUS: &str = "previous.json";

/// Keeps the last results.json as previous.json when the run starts;
/// writes results.json and junit.xml into its folder when it ends, and
/// prints where.
pub struct ResultsWriter {
    pub dir: PathBuf,
}

impl Reporter for ResultsWriter {
    fn report(&mut self, event: &RunEvent<'_>) {
        match event {
            RunEvent::Started { .. } => keep_previous(&self.dir),
            RunEvent::Finished(run) => match write(&self.dir, run) {
                Ok((json, junit)) => println!("  results: {} {}", json.display(), junit.display()),
                Err(e) => eprintln!(
                    "warning: could not write results to {}: {e}",
                    self.dir.display()
                ),
            },
            _ => {}
        }
    }
}

/// The last run's results.json becomes previous.json (a run that ended
/// before writing its results leaves the one before in place).
pub fn keep_previous(dir: &Path) {
    let last = dir.join("results.json");
    if last.is_file() {
        if let Err(e) = std::fs::rename(&last, dir.join(PREVIOUS)) {
            eprintln!(
                "warning: could not keep {} as {PREVIOUS}: {e}",
                last.display()
            );
        }
    }
}

/// Writes both files into `dir`; returns their paths.
pub fn write(dir: &Path, run: &RunRecord) -> std::io::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir)?;
    let j = dir.join("results.json");
    let x = dir.join("junit.xml");
    std::fs::write(&j, json(run))?;
    std::fs::write(&x, junit(run))?;
    Ok((j, x))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::reporter::json;
    use crate::runner::result::{sample, Status};

    #[test]
    fn a_run_keeps_the_last_results_as_previous() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ResultsWriter {
            dir: dir.path().to_owned(),
        };
        let first = RunRecord {
            results: vec![sample("a::x::nfit-1", Status::Fail)],
            exit_code: 1,
            ..Default::default()
        };
        w.report(&RunEvent::Finished(&first));
        let schedule = Default::default();
        let started = RunEvent::Started {
            trials: 1,
            threads: 1,
            schedule: &schedule,
        };
        w.report(&started);
        assert!(!dir.path().join("results.json").exists());
        let previous = json::read(&dir.path().join(PREVIOUS)).unwrap();
        assert_eq!(previous.results[0].status, Status::Fail);
        w.report(&RunEvent::Finished(&RunRecord::default()));
        // No results.json: previous.json stays the last one written.
        w.report(&started);
        w.report(&started);
        assert!(json::read(&dir.path().join(PREVIOUS))
            .unwrap()
            .results
            .is_empty());
    }
}
