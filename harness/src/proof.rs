//! What a cached thing must be, one home for all of them: the files it is
//! made of, each with its size and, where asked, its sha256
//! ([`Files`]), recorded when it is made and checked each time it is
//! found. An image's `vmlinuz` and `initramfs.cpio` (sizes and sha256s,
//! in its manifest), every file of an nfit_test, ndctl tests or kernel
//! build (sizes, in its `proof.json`), a saved VM state (the state's size
//! and sha256, its backing files' sizes), a kernel tree's build output
//! (`.config`, `bzImage`). A file cut short by a full disk or a partial CI
//! cache restore is found before anything reads it; the thing is
//! discarded (or the file removed, for make to make again) with a warning
//! naming it. Sizes are checked at every use, checksums once per process.
//!
//! A build published before proofs existed is taken when its files are
//! there and not empty, and gets its proof then.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use serde::{Deserialize, Serialize};

use sha2::{Digest, Sha256};

/// A file of a proof could not be read, or the proof not written.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct Error {
    pub path: PathBuf,
    pub source: std::io::Error,
}

impl Error {
    /// `source` at `path`.
    pub fn at(path: &Path, source: std::io::Error) -> Error {
        Error::io(path, source)
    }

    fn io(path: &Path, source: std::io::Error) -> Error {
        Error {
            path: path.to_owned(),
            source,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// The sha256 of a file, in hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|e| Error::io(path, e))?;
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Calls `visit` with every file and link under `dir` (folders are
/// entered, not visited).
pub fn walk(dir: &Path, visit: &mut dyn FnMut(&Path, &std::fs::Metadata)) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        let md = std::fs::symlink_metadata(&path).map_err(|e| Error::io(&path, e))?;
        if md.is_dir() {
            walk(&path, visit)?;
        } else {
            visit(&path, &md);
        }
    }
    Ok(())
}

/// The proof file of a build folder or a saved state (images keep theirs
/// in the manifest).
pub const FILE: &str = "proof.json";

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
    #[error("it has no readable {FILE} (written by an interrupted run?)")]
    NoProof,
}

fn size_of(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.len())
}

/// Sizes, and with `checksum` sha256s, of `names` under `dir`.
pub fn record(dir: &Path, names: &[&str], checksum: bool) -> Result<Files> {
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
pub fn record_tree(dir: &Path) -> Result<Files> {
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
pub fn check(dir: &Path, files: &Files) -> std::result::Result<(), Damage> {
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

/// Forgets that this process checked `path`'s checksum (for tests that
/// change a file after recording it).
#[cfg(test)]
pub fn forget_checked(path: &Path) {
    verified().remove(path);
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
pub fn check_present(dir: &Path, names: &[&str]) -> std::result::Result<(), Damage> {
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
pub fn discard(dir: &Path, what: &str, damage: &Damage) {
    crate::stages::say(&format!(
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
pub fn write_whole(path: &Path, text: &str) -> Result<()> {
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
pub fn seal(dir: &Path) -> Result<()> {
    write(dir, &record_tree(dir)?)
}

/// Writes `files` as the proof of `dir` ([`FILE`]).
pub fn write(dir: &Path, files: &Files) -> Result<()> {
    let json = serde_json::to_string_pretty(files).expect("a proof serializes");
    write_whole(&dir.join(FILE), &json)
}

/// The proof of `dir` ([`FILE`]), if it has a readable one.
pub fn read(dir: &Path) -> Option<Files> {
    std::fs::read_to_string(dir.join(FILE))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
}

/// Whether a whole build is published in `out` (its `marker` file there,
/// its files as its proof says). A damaged one is discarded with a warning
/// naming it as `what`; one from before proofs gets its proof.
pub fn found(out: &Path, marker: &str, what: &str) -> bool {
    if !out.join(marker).exists() {
        if out.exists() {
            discard(out, what, &Damage::Missing(marker.to_owned()));
        }
        return false;
    }
    let files = read(out);
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
