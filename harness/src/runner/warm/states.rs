//! The saved-state cache (`CACHE/states/KEY/`): what is in it, and pruning.
//! A state is ~170 MB; every change of an input (image, QEMU, topology,
//! harness) makes new ones and leaves the old ones unused. Each use touches
//! `KEY/used`; states unused for [`KEEP_DAYS`] are removed at the start of
//! each `run`, and so are the least recently used ones beyond the cache's
//! size cap ([`RETENTION`]: 8 GB unless `NDHARNESS_STATES_MAX` says
//! otherwise); `ndharness states prune` removes them on demand.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

pub use crate::lru::Removed;

/// Days a saved state is kept after its last use.
pub const KEEP_DAYS: u64 = 7;

/// The states cache's size cap when `NDHARNESS_STATES_MAX` is not set:
/// the whole suite's states (about 4 GB on disk) twice over.
pub const DEFAULT_CAP: u64 = 8 << 30;

/// How long saved states are kept, and how much of them.
pub const RETENTION: crate::lru::Retention = crate::lru::Retention {
    what: "saved states",
    keep_days: KEEP_DAYS,
    cap_variable: "NDHARNESS_STATES_MAX",
    default_cap: DEFAULT_CAP,
};

/// One saved state in the cache.
#[derive(Debug)]
pub struct StateInfo {
    pub dir: PathBuf,
    /// The `topology` line of its `about.txt` (`?` when unreadable).
    pub topology: String,
    /// Disk space it takes (allocated blocks: backing files are sparse).
    pub bytes: u64,
    pub last_used: SystemTime,
}

/// Records that a state was used now (it will be kept [`KEEP_DAYS`] more).
pub fn touch(dir: &Path) {
    crate::lru::touch(dir);
}

/// Every saved state under `states`, least recently used first. Staging
/// folders of saves in progress (`.tmp*`) are not states.
pub fn list(states: &Path) -> Vec<StateInfo> {
    crate::lru::list(states)
        .into_iter()
        .map(|e| StateInfo {
            topology: crate::runner::start::topology_of(&e.dir),
            dir: e.dir,
            bytes: e.bytes,
            last_used: e.last_used,
        })
        .collect()
}

/// Removes the states unused for `older_than` (all of them for zero), and
/// staging folders a killed save left behind (older than an hour).
pub fn prune(states: &Path, older_than: Duration) -> Removed {
    crate::lru::prune(states, older_than)
}

/// Removes the least recently used states until the rest take at most
/// `max_bytes`.
pub fn cap(states: &Path, max_bytes: u64) -> Removed {
    crate::lru::cap(states, max_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_is_listed_with_its_topology_and_pruned_by_age() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("aaaa");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("about.txt"), "topology cxl-x4\n").unwrap();
        std::fs::write(dir.join("state"), vec![1u8; 8192]).unwrap();
        touch(&dir);
        let listed = list(tmp.path());
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].topology, "cxl-x4");
        assert_eq!(
            prune(tmp.path(), Duration::from_secs(KEEP_DAYS * 86400)).entries,
            0
        );
        assert_eq!(prune(tmp.path(), Duration::ZERO).entries, 1);
    }
}
