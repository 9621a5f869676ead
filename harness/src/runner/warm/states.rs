//! The saved-state cache (`CACHE/states/KEY/`): what is in it, and pruning.
//! A state is ~170 MB; every change of an input (image, QEMU, topology,
//! harness) makes new ones and leaves the old ones unused. Each use touches
//! `KEY/used`; states unused for [`KEEP_DAYS`] are removed at the start of
//! each `run`, and so are the least recently used ones beyond the cache's
//! size cap ([`size_cap`]: 8 GB unless `NDHARNESS_STATES_MAX` says
//! otherwise); `ndharness states prune` removes them on demand.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Days a saved state is kept after its last use.
pub const KEEP_DAYS: u64 = 7;

/// The states cache's size cap when `NDHARNESS_STATES_MAX` is not set:
/// the whole suite's states (about 4 GB on disk) twice over.
pub const DEFAULT_CAP: u64 = 8 << 30;

/// The size the states cache is kept under: `NDHARNESS_STATES_MAX` (a
/// size, `12G`, `800M`), else [`DEFAULT_CAP`].
pub fn size_cap() -> Result<u64, crate::size::Error> {
    match std::env::var("NDHARNESS_STATES_MAX") {
        Ok(v) if !v.trim().is_empty() => crate::size::Size::parse(v.trim()).map(|s| s.bytes()),
        _ => Ok(DEFAULT_CAP),
    }
}

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
    let _ = std::fs::File::create(dir.join("used"));
}

fn disk_usage(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    let own = meta.blocks() * 512;
    if !meta.is_dir() {
        return own;
    }
    let children = std::fs::read_dir(path)
        .map(|rd| rd.flatten().map(|e| disk_usage(&e.path())).sum())
        .unwrap_or(0);
    own + children
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// When a state was last used: its `used` mark, else when it was saved.
fn last_used(dir: &Path) -> SystemTime {
    modified(&dir.join("used"))
        .or_else(|| modified(&dir.join("about.txt")))
        .or_else(|| modified(dir))
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// Every saved state under `states`, least recently used first. Staging
/// folders of saves in progress (`.tmp*`) are not states.
pub fn list(states: &Path) -> Vec<StateInfo> {
    let Ok(rd) = std::fs::read_dir(states) else {
        return Vec::new();
    };
    let mut out: Vec<StateInfo> = rd
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter(|e| e.path().is_dir())
        .map(|e| {
            let dir = e.path();
            let topology = crate::runner::start::topology_of(&dir);
            StateInfo {
                bytes: disk_usage(&dir),
                last_used: last_used(&dir),
                topology,
                dir,
            }
        })
        .collect();
    out.sort_by_key(|s| s.last_used);
    out
}

/// Removes the states unused for `older_than` (all of them for zero), and
/// staging folders a killed save left behind (older than an hour); returns
/// how many states went and the bytes freed.
pub fn prune(states: &Path, older_than: Duration) -> (usize, u64) {
    let now = SystemTime::now();
    let age = |t: SystemTime| now.duration_since(t).unwrap_or_default();
    let (mut n, mut freed) = (0, 0);
    for s in list(states) {
        // Checked again right before: another run may have just used it.
        let unused = older_than.is_zero() || age(last_used(&s.dir)) >= older_than;
        if unused && std::fs::remove_dir_all(&s.dir).is_ok() {
            n += 1;
            freed += s.bytes;
        }
    }
    if let Ok(rd) = std::fs::read_dir(states) {
        for e in rd.flatten() {
            let stale = modified(&e.path()).is_some_and(|t| age(t) > Duration::from_secs(3600));
            let name = e.file_name().to_string_lossy().into_owned();
            let leftover = name.starts_with(".tmp") || name.starts_with(".discarded");
            if leftover && stale {
                freed += disk_usage(&e.path());
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    (n, freed)
}

/// Removes the least recently used states until the rest take at most
/// `max_bytes`; returns how many went and the bytes freed.
pub fn cap(states: &Path, max_bytes: u64) -> (usize, u64) {
    let all = list(states);
    let mut total: u64 = all.iter().map(|s| s.bytes).sum();
    let (mut n, mut freed) = (0, 0);
    for s in all {
        if total <= max_bytes {
            break;
        }
        if std::fs::remove_dir_all(&s.dir).is_ok() {
            total -= s.bytes;
            n += 1;
            freed += s.bytes;
        }
    }
    (n, freed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(root: &Path, name: &str, topology: &str, used_secs_ago: u64) -> PathBuf {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("about.txt"), format!("topology {topology}\n")).unwrap();
        std::fs::write(dir.join("state"), vec![1u8; 8192]).unwrap();
        touch(&dir);
        let t = SystemTime::now() - Duration::from_secs(used_secs_ago);
        std::fs::File::options()
            .write(true)
            .open(dir.join("used"))
            .unwrap()
            .set_modified(t)
            .unwrap();
        dir
    }

    #[test]
    fn prune_removes_only_states_unused_for_long_enough() {
        let tmp = tempfile::tempdir().unwrap();
        let old = state(tmp.path(), "aaaa", "nfit-1", 10 * 86400);
        let recent = state(tmp.path(), "bbbb", "cxl-x4", 60);
        let listed = list(tmp.path());
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].dir, old, "least recently used first");
        assert_eq!(listed[1].topology, "cxl-x4");
        assert!(listed[0].bytes >= 8192, "{}", listed[0].bytes);
        let (n, freed) = prune(tmp.path(), Duration::from_secs(KEEP_DAYS * 86400));
        assert_eq!(n, 1);
        assert!(freed >= 8192);
        assert!(!old.exists() && recent.exists());
        // Zero: everything.
        assert_eq!(prune(tmp.path(), Duration::ZERO).0, 1);
        assert!(!recent.exists());
    }

    #[test]
    fn the_cap_removes_the_least_recently_used_first() {
        let tmp = tempfile::tempdir().unwrap();
        let oldest = state(tmp.path(), "aaaa", "nfit-1", 300);
        let middle = state(tmp.path(), "bbbb", "cxl-x2", 200);
        let newest = state(tmp.path(), "cccc", "cxl-x4", 100);
        let each = list(tmp.path())[0].bytes;
        // Room for two: the oldest goes.
        let (n, freed) = cap(tmp.path(), 2 * each);
        assert_eq!((n, freed), (1, each));
        assert!(!oldest.exists() && middle.exists() && newest.exists());
        // Under the cap already: nothing goes.
        assert_eq!(cap(tmp.path(), 2 * each), (0, 0));
        assert_eq!(cap(tmp.path(), 0).0, 2);
    }

    #[test]
    fn a_save_in_progress_is_not_a_state() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join(".tmpXYZ/state.files")).unwrap();
        assert!(list(tmp.path()).is_empty());
        // Fresh staging folders stay (a save may be running).
        prune(tmp.path(), Duration::ZERO);
        assert!(tmp.path().join(".tmpXYZ").exists());
    }
}
