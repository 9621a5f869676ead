//! Cache folders whose entries are kept by their last use (saved states,
//! built images): each use touches `ENTRY/used`; entries unused for a
//! while, and the least recently used beyond a size cap, are removed.
//! Staging folders (`.tmp*`, `.discarded*`) are not entries; ones older
//! than an hour are what a killed writer left, and are removed too.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The mark an entry's last use is read from.
const USED: &str = "used";

/// One entry of a cache folder.
#[derive(Debug)]
pub struct Entry {
    pub dir: PathBuf,
    /// Disk space it takes (allocated blocks: sparse files count what is
    /// written).
    pub bytes: u64,
    pub last_used: SystemTime,
}

/// What a prune or a cap removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Removed {
    pub entries: usize,
    pub bytes: u64,
}

/// Records that an entry was used now.
pub fn touch(dir: &Path) {
    let _ = std::fs::File::create(dir.join(USED));
}

/// Disk space under `path` (allocated blocks, symlinks not followed).
pub fn disk_usage(path: &Path) -> u64 {
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

/// When an entry was last used: its `used` mark, else when it was written.
fn last_used(dir: &Path) -> SystemTime {
    modified(&dir.join(USED))
        .or_else(|| modified(dir))
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

fn is_staging(name: &str) -> bool {
    name.starts_with(".tmp") || name.starts_with(".discarded")
}

/// Every entry under `root`, least recently used first.
pub fn list(root: &Path) -> Vec<Entry> {
    let Ok(rd) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut out: Vec<Entry> = rd
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter(|e| e.path().is_dir())
        .map(|e| {
            let dir = e.path();
            Entry {
                bytes: disk_usage(&dir),
                last_used: last_used(&dir),
                dir,
            }
        })
        .collect();
    out.sort_by_key(|e| e.last_used);
    out
}

/// Removes the entries unused for `older_than` (all of them for zero), and
/// staging folders older than an hour.
pub fn prune(root: &Path, older_than: Duration) -> Removed {
    let now = SystemTime::now();
    let age = |t: SystemTime| now.duration_since(t).unwrap_or_default();
    let mut removed = Removed::default();
    for entry in list(root) {
        // Read again right before: another run may have just used it.
        let unused = older_than.is_zero() || age(last_used(&entry.dir)) >= older_than;
        if unused && std::fs::remove_dir_all(&entry.dir).is_ok() {
            removed.entries += 1;
            removed.bytes += entry.bytes;
        }
    }
    for e in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let stale = modified(&e.path()).is_some_and(|t| age(t) > Duration::from_secs(3600));
        if stale && is_staging(&e.file_name().to_string_lossy()) {
            removed.bytes += disk_usage(&e.path());
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    removed
}

/// Removes the least recently used entries until the rest take at most
/// `max_bytes`.
pub fn cap(root: &Path, max_bytes: u64) -> Removed {
    let all = list(root);
    let mut total: u64 = all.iter().map(|e| e.bytes).sum();
    let mut removed = Removed::default();
    for entry in all {
        if total <= max_bytes {
            break;
        }
        if std::fs::remove_dir_all(&entry.dir).is_ok() {
            total -= entry.bytes;
            removed.entries += 1;
            removed.bytes += entry.bytes;
        }
    }
    removed
}

/// How long a cache folder keeps its entries, and how much of them.
#[derive(Clone, Copy, Debug)]
pub struct Retention {
    /// What the entries are, for messages (`saved states`).
    pub what: &'static str,
    /// Days an entry is kept after its last use.
    pub keep_days: u64,
    /// The environment variable that sets the size cap (`12G`, `800M`).
    pub cap_variable: &'static str,
    /// The size cap when the variable is not set.
    pub default_cap: u64,
}

impl Retention {
    /// The size cap: the variable's, else the default.
    pub fn cap(&self) -> Result<u64, crate::size::Error> {
        match std::env::var(self.cap_variable) {
            Ok(v) if !v.trim().is_empty() => crate::size::Size::parse(v.trim()).map(|s| s.bytes()),
            _ => Ok(self.default_cap),
        }
    }

    /// Removes from `root` the entries unused for the days kept, then the
    /// least recently used beyond the cap; returns what to tell the user
    /// (nothing when nothing went). A cap that does not parse is a
    /// warning, and the default cap holds.
    pub fn apply(&self, root: &Path) -> Vec<String> {
        let mut said = Vec::new();
        let what = self.what;
        let aged = prune(root, Duration::from_secs(self.keep_days * 86400));
        if aged.entries > 0 {
            said.push(format!(
                "removed {} {what} unused for {} days ({:.1} GB)",
                aged.entries,
                self.keep_days,
                aged.bytes as f64 / 1e9
            ));
        }
        let max = self.cap().unwrap_or_else(|e| {
            said.push(format!(
                "warning: {}: {e}; keeping the default cap",
                self.cap_variable
            ));
            self.default_cap
        });
        let capped = cap(root, max);
        if capped.entries > 0 {
            said.push(format!(
                "removed the {} least recently used {what} ({:.1} GB) to keep them under {}",
                capped.entries,
                capped.bytes as f64 / 1e9,
                crate::space::human(max)
            ));
        }
        said
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(root: &Path, name: &str, used_secs_ago: u64) -> PathBuf {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("payload"), vec![1u8; 8192]).unwrap();
        touch(&dir);
        let t = SystemTime::now() - Duration::from_secs(used_secs_ago);
        std::fs::File::options()
            .write(true)
            .open(dir.join(USED))
            .unwrap()
            .set_modified(t)
            .unwrap();
        dir
    }

    #[test]
    fn prune_removes_only_entries_unused_for_long_enough() {
        let tmp = tempfile::tempdir().unwrap();
        let old = entry(tmp.path(), "aaaa", 10 * 86400);
        let recent = entry(tmp.path(), "bbbb", 60);
        let listed = list(tmp.path());
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].dir, old, "least recently used first");
        assert!(listed[0].bytes >= 8192, "{}", listed[0].bytes);
        let removed = prune(tmp.path(), Duration::from_secs(7 * 86400));
        assert_eq!(removed.entries, 1);
        assert!(removed.bytes >= 8192);
        assert!(!old.exists() && recent.exists());
        // Zero: everything.
        assert_eq!(prune(tmp.path(), Duration::ZERO).entries, 1);
        assert!(!recent.exists());
    }

    #[test]
    fn the_cap_removes_the_least_recently_used_first() {
        let tmp = tempfile::tempdir().unwrap();
        let oldest = entry(tmp.path(), "aaaa", 300);
        let middle = entry(tmp.path(), "bbbb", 200);
        let newest = entry(tmp.path(), "cccc", 100);
        let each = list(tmp.path())[0].bytes;
        // Room for two: the oldest goes.
        let removed = cap(tmp.path(), 2 * each);
        assert_eq!(
            removed,
            Removed {
                entries: 1,
                bytes: each
            }
        );
        assert!(!oldest.exists() && middle.exists() && newest.exists());
        // Under the cap already: nothing goes.
        assert_eq!(cap(tmp.path(), 2 * each), Removed::default());
        assert_eq!(cap(tmp.path(), 0).entries, 2);
    }

    #[test]
    fn a_write_in_progress_is_not_an_entry_and_stays() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join(".tmpXYZ/state.files")).unwrap();
        assert!(list(tmp.path()).is_empty());
        prune(tmp.path(), Duration::ZERO);
        assert!(tmp.path().join(".tmpXYZ").exists());
    }

    #[test]
    fn a_retention_removes_by_age_then_by_size_and_says_so() {
        let tmp = tempfile::tempdir().unwrap();
        let old = entry(tmp.path(), "aaaa", 30 * 86400);
        let older_of_two = entry(tmp.path(), "bbbb", 200);
        let newest = entry(tmp.path(), "cccc", 100);
        let each = list(tmp.path())[0].bytes;
        let retention = Retention {
            what: "things",
            keep_days: 7,
            cap_variable: "NDHARNESS_TEST_UNSET_CAP",
            default_cap: each,
        };
        assert_eq!(retention.cap().unwrap(), each);
        let said = retention.apply(tmp.path());
        assert_eq!(said.len(), 2, "{said:?}");
        assert!(
            said[0].starts_with("removed 1 things unused for 7 days"),
            "{said:?}"
        );
        assert!(
            said[1].starts_with("removed the 1 least recently used things"),
            "{said:?}"
        );
        assert!(!old.exists() && !older_of_two.exists() && newest.exists());
        assert!(retention.apply(tmp.path()).is_empty());
    }
}
