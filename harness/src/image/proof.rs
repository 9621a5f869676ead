//! What a cached build must be, recorded when it is published and checked
//! each time it is found: an image's `vmlinuz` and `initramfs.cpio` (size
//! and sha256, in its manifest), every file of an nfit_test or ndctl tests
//! build (sizes, in its `proof.json`). A file cut short by a full disk or a
//! partial CI cache restore is found before anything reads it; the build
//! is discarded with a warning naming it and made again. Sizes are checked
//! at every use, checksums once per process.
//!
//! A build published before proofs existed is taken when its files are
//! there and not empty, and gets its proof then.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use serde::{Deserialize, Serialize};

use super::host::walk;
use super::{sha256_file, Error, Result};

/// The proof file of a build folder (images keep theirs in the manifest).
pub(super) const FILE: &str = "proof.json";

/// What one file was when it was built.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileProof {
    pub bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// Files by their path under the build's folder.
pub type Files = BTreeMap<String, FileProof>;

/// Why a cached build is not what it was.
#[derive(Debug, thiserror::Error)]
pub enum Damage {
    #[error("its {0} is missing")]
    Missing(String),
    #[error("its {0} is empty")]
    Empty(String),
    #[error("its {name} is {actual} bytes, {expected} when it was built")]
    Size {
        name: String,
        actual: u64,
        expected: u64,
    },
    #[error("its {0}'s sha256 is not the one recorded when it was built")]
    Checksum(String),
    #[error("its {0} cannot be read")]
    Unreadable(String),
}

fn size_of(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.len())
}

/// Sizes, and with `checksum` sha256s, of `names` under `dir`.
pub(super) fn record(dir: &Path, names: &[&str], checksum: bool) -> Result<Files> {
    let mut files = Files::new();
    for name in names {
        let path = dir.join(name);
        let bytes = std::fs::metadata(&path)
            .map_err(|e| Error::io(&path, e))?
            .len();
        let sha256 = if checksum {
            let sum = sha256_file(&path)?;
            verified().insert(path);
            Some(sum)
        } else {
            None
        };
        files.insert((*name).to_owned(), FileProof { bytes, sha256 });
    }
    Ok(files)
}

/// Sizes of every file under `dir` (links and the proof itself left out).
pub(super) fn record_tree(dir: &Path) -> Result<Files> {
    let mut files = Files::new();
    walk(dir, &mut |path, md| {
        let name = path.strip_prefix(dir).unwrap_or(path).to_string_lossy();
        if md.is_file() && name != FILE {
            let proof = FileProof {
                bytes: md.len(),
                sha256: None,
            };
            files.insert(name.into_owned(), proof);
        }
    })?;
    Ok(files)
}

/// The files whose checksum this process has checked.
fn verified() -> std::sync::MutexGuard<'static, HashSet<PathBuf>> {
    static VERIFIED: OnceLock<Mutex<HashSet<PathBuf>>> = OnceLock::new();
    VERIFIED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// Whether the files under `dir` are as recorded: sizes every time, a
/// recorded checksum once per process.
pub(super) fn check(dir: &Path, files: &Files) -> std::result::Result<(), Damage> {
    for (name, proof) in files {
        let actual = size_of(&dir.join(name)).ok_or_else(|| Damage::Missing(name.clone()))?;
        if actual != proof.bytes {
            return Err(Damage::Size {
                name: name.clone(),
                actual,
                expected: proof.bytes,
            });
        }
    }
    for (name, proof) in files {
        if let Some(expected) = &proof.sha256 {
            if !sha256_matches_once(&dir.join(name), expected) {
                return Err(Damage::Checksum(name.clone()));
            }
        }
    }
    Ok(())
}

/// Whether the file at `path` has the sha256 `expected`; read once per
/// process, a file that matched is taken as matching after.
pub fn sha256_matches_once(path: &Path, expected: &str) -> bool {
    if verified().contains(path) {
        return true;
    }
    let matches = sha256_file(path).is_ok_and(|sum| sum == expected);
    if matches {
        verified().insert(path.to_owned());
    }
    matches
}

/// Whether each of `names` under `dir` is there and not empty: all that
/// can be known of a build from before proofs.
pub(super) fn check_present(dir: &Path, names: &[&str]) -> std::result::Result<(), Damage> {
    for name in names {
        match size_of(&dir.join(name)) {
            None => return Err(Damage::Missing((*name).to_owned())),
            Some(0) => return Err(Damage::Empty((*name).to_owned())),
            Some(_) => {}
        }
    }
    Ok(())
}

/// Removes the damaged build in `dir` (moved aside first, so no reader
/// finds half of it), with a warning line naming it and why.
pub(super) fn discard(dir: &Path, what: &str, damage: &Damage) {
    crate::progress::say(&format!(
        "warning: {what} {} discarded: {damage}; it is built again",
        dir.display()
    ));
    remove_aside(dir);
}

/// Removes a folder of the cache so that no reader finds half of it:
/// renamed aside first (a `.discarded-` name), then removed.
pub fn remove_aside(dir: &Path) {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let aside = dir.with_file_name(format!(".discarded-{name}-{}", std::process::id()));
    let gone = std::fs::rename(dir, &aside)
        .map(|()| aside)
        .unwrap_or_else(|_| dir.to_owned());
    let _ = std::fs::remove_dir_all(gone);
}

/// Writes `text` to `path` through a temporary file and a rename, so no
/// reader sees half of it.
pub(super) fn write_whole(path: &Path, text: &str) -> Result<()> {
    let part = path.with_extension(format!("part-{}", std::process::id()));
    let written = std::fs::write(&part, text)
        .and_then(|()| std::fs::rename(&part, path))
        .map_err(|e| Error::io(path, e));
    if written.is_err() {
        let _ = std::fs::remove_file(&part);
    }
    written
}

/// Writes the proof of a build staged in `dir`: the size of every file.
pub(super) fn seal(dir: &Path) -> Result<()> {
    let json = serde_json::to_string_pretty(&record_tree(dir)?).expect("a proof serializes");
    write_whole(&dir.join(FILE), &json)
}

/// Whether a whole build is published in `out` (its `marker` file there,
/// its files as its proof says). A damaged one is discarded with a warning
/// naming it as `what`; one from before proofs gets its proof.
pub(super) fn found(out: &Path, marker: &str, what: &str) -> bool {
    if !out.join(marker).exists() {
        if out.exists() {
            discard(out, what, &Damage::Missing(marker.to_owned()));
        }
        return false;
    }
    let files: Option<Files> = std::fs::read_to_string(out.join(FILE))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let verdict = match &files {
        Some(files) => check(out, files),
        None => check_present(out, &[marker]),
    };
    match verdict {
        Ok(()) if files.is_none() => {
            // Older than proofs: what is there now is what it holds. A
            // cache that cannot be written keeps working without one.
            let _ = seal(out);
            true
        }
        Ok(()) => true,
        Err(damage) => {
            discard(out, what, &damage);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(dir: &Path) {
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("done"), "about\n").unwrap();
        std::fs::write(dir.join("sub/nfit_test.ko"), vec![1u8; 4096]).unwrap();
    }

    #[test]
    fn a_sealed_build_is_found_until_a_file_is_cut() {
        let cache = tempfile::tempdir().unwrap();
        let out = cache.path().join("nfit_test/6.12-abc");
        build(&out);
        seal(&out).unwrap();
        assert!(found(&out, "done", "nfit_test build"));
        std::fs::write(out.join("sub/nfit_test.ko"), vec![1u8; 100]).unwrap();
        assert!(!found(&out, "done", "nfit_test build"));
        assert!(!out.exists(), "a damaged build is removed");
        let left: Vec<_> = std::fs::read_dir(out.parent().unwrap()).unwrap().collect();
        assert!(left.is_empty(), "nothing set aside is left: {left:?}");
    }

    #[test]
    fn a_build_from_before_proofs_is_taken_and_sealed() {
        let cache = tempfile::tempdir().unwrap();
        let out = cache.path().join("old");
        build(&out);
        assert!(found(&out, "done", "tests"));
        assert!(out.join(FILE).exists());
        std::fs::remove_file(out.join("sub/nfit_test.ko")).unwrap();
        assert!(!found(&out, "done", "tests"));
    }

    #[test]
    fn a_changed_byte_is_caught_by_the_checksum() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("vmlinuz"), vec![5u8; 1000]).unwrap();
        let mut files = record(dir.path(), &["vmlinuz"], true).unwrap();
        check(dir.path(), &files).unwrap();
        files.get_mut("vmlinuz").unwrap().sha256 = Some("0".repeat(64));
        verified().remove(&dir.path().join("vmlinuz"));
        assert!(matches!(
            check(dir.path(), &files),
            Err(Damage::Checksum(n)) if n == "vmlinuz"
        ));
    }
}
