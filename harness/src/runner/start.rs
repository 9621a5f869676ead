//! How a trial's guest starts: booted cold, or restored from a saved state
//! ([`SavedState`]) that a template guest left at a [`SavePoint`], with the
//! records the trial takes over from it ([`Prelude`]). Data, and the
//! discarding of a state that would not load: the states are made and
//! found by [`super::warm`], used by [`super::trial`].

use std::path::{Path, PathBuf};

use crate::kmsg;
use crate::transcript::StepRecord;

/// Where a template guest is saved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SavePoint {
    /// After the boot check, the drivers and the setup (CXL regions
    /// assembled): a trial starts at its first step, once
    /// [`crate::vm::Machine::reattach_devices`] has given the CXL devices
    /// back what the restore lost.
    Ready,
    /// After the boot check, before the drivers init leaves to the harness:
    /// each trial loads them and runs the setup itself.
    BeforeDrivers,
}

/// What a warm-started trial inherits from its template guest: the setup
/// steps as they ran (CXL region assembly), the kernel records since the
/// boot that no checkpoint has taken yet, and where the kernel log reader
/// stood when the state was saved.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Prelude {
    pub(in crate::runner) records: Vec<StepRecord>,
    pub(in crate::runner) since_checkpoint: Vec<kmsg::Record>,
    /// The number of the last step the template ran.
    #[serde(rename = "n")]
    pub(in crate::runner) steps: usize,
    pub(in crate::runner) cursor: kmsg::Cursor,
    pub(in crate::runner) pending: Vec<kmsg::Record>,
}

/// A saved state, what a trial restored from it inherits, and the point
/// of the guest's life it was saved at.
#[derive(Clone, Debug)]
pub struct SavedState {
    pub state: PathBuf,
    pub prelude: Prelude,
    pub point: SavePoint,
}

impl SavedState {
    /// Removes a state QEMU could not load, so the next trial of its group
    /// makes it again; says so on stderr.
    pub fn discard(&self, why: &str) {
        if let Some(dir) = self.state.parent() {
            discard(dir, why);
        }
    }
}

/// The topology a saved state in `dir` is of, as its about.txt says
/// (`?` when it does not).
pub fn topology_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("about.txt"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("topology ").map(str::to_owned))
        })
        .unwrap_or_else(|| "?".into())
}

/// Removes the saved state in `dir` (moved aside first, so no reader finds
/// half of it), with a warning line naming it and why.
pub fn discard(dir: &Path, why: &str) {
    let topology = topology_of(dir);
    eprintln!(
        "warning: saved state {} ({topology}) discarded: {why}; it is made again",
        dir.display()
    );
    crate::proof::remove_aside(dir);
}

/// Who assembles a CXL topology's regions (a case's `assemble:`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Assembly {
    /// The harness, as the first steps of every trial.
    ByHarness,
    /// The case's own steps (`assemble: false`).
    ByCase,
}

impl Assembly {
    /// From a case's `assemble:` field.
    pub fn of(harness_assembles: bool) -> Assembly {
        if harness_assembles {
            Assembly::ByHarness
        } else {
            Assembly::ByCase
        }
    }
}
