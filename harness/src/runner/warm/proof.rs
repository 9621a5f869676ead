//! What a saved state must be ([`crate::proof`]'s files): the state file
//! by size and sha256, each backing file beside it by size, written in
//! `proof.json` when the state is saved and checked before it is loaded,
//! so that a state cut short by a full disk or a partial CI cache restore
//! is found before QEMU reads it. The sizes are checked at every use; the
//! checksum once per process.

use std::path::Path;

use crate::proof::{self, Damage, Files};

/// The state file, as its proof names it.
const STATE: &str = "state";

/// The state and its backing files, as names under `dir`.
fn parts(dir: &Path) -> Vec<String> {
    let backing = crate::vm::machine::backing_dir(&dir.join(STATE));
    let folder = backing
        .strip_prefix(dir)
        .unwrap_or(&backing)
        .to_string_lossy()
        .into_owned();
    let mut names: Vec<String> = std::fs::read_dir(&backing)
        .map(|rd| {
            rd.flatten()
                .map(|e| format!("{folder}/{}", e.file_name().to_string_lossy()))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Writes the proof of the state saved in `dir` (`dir/state`).
pub fn record(dir: &Path) -> Result<(), proof::Error> {
    let mut files: Files = proof::record(dir, &[STATE], true)?;
    let backing = parts(dir);
    let backing: Vec<&str> = backing.iter().map(String::as_str).collect();
    files.extend(proof::record(dir, &backing, false)?);
    proof::write(dir, &files)
}

/// Whether the state in `dir` is what its proof says.
pub fn check(dir: &Path) -> Result<(), Damage> {
    let files = proof::read(dir).ok_or(Damage::NoProof)?;
    if !files.contains_key(STATE) {
        return Err(Damage::NoProof);
    }
    proof::check(dir, &files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved(dir: &Path) {
        std::fs::write(dir.join("state"), vec![7u8; 4096]).unwrap();
        let files = crate::vm::machine::backing_dir(&dir.join("state"));
        std::fs::create_dir_all(&files).unwrap();
        std::fs::write(files.join("nvdimm0.img"), vec![0u8; 1024]).unwrap();
        record(dir).unwrap();
    }

    #[test]
    fn a_state_as_saved_passes() {
        let dir = tempfile::tempdir().unwrap();
        saved(dir.path());
        check(dir.path()).unwrap();
    }

    #[test]
    fn a_cut_state_a_changed_byte_and_a_cut_backing_file_are_found() {
        let dir = tempfile::tempdir().unwrap();
        saved(dir.path());
        let state = dir.path().join("state");
        std::fs::write(&state, vec![7u8; 2048]).unwrap();
        assert!(matches!(
            check(dir.path()),
            Err(Damage::Size {
                actual: 2048,
                expected: 4096,
                ..
            })
        ));

        let dir = tempfile::tempdir().unwrap();
        saved(dir.path());
        let mut bytes = std::fs::read(dir.path().join("state")).unwrap();
        bytes[100] = 8;
        std::fs::write(dir.path().join("state"), bytes).unwrap();
        proof::forget_checked(&dir.path().join("state"));
        assert!(matches!(check(dir.path()), Err(Damage::Checksum(_))));

        let dir = tempfile::tempdir().unwrap();
        saved(dir.path());
        let files = crate::vm::machine::backing_dir(&dir.path().join("state"));
        std::fs::write(files.join("nvdimm0.img"), b"short").unwrap();
        assert!(matches!(
            check(dir.path()),
            Err(Damage::Size { name, .. }) if name.ends_with("nvdimm0.img")
        ));

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("state"), b"no proof").unwrap();
        assert!(matches!(check(dir.path()), Err(Damage::NoProof)));
    }
}
