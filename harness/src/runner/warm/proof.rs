//! What a saved state must be, written beside it when it is saved
//! (`proof.json`: the state file's size and sha256, each backing file's
//! size) and checked before a state is loaded: a state cut short by a full
//! disk or a partial CI cache restore is found before QEMU reads it. The
//! sizes are checked at every use; the checksum once per process.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

const FILE: &str = "proof.json";

#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proof {
    pub state_bytes: u64,
    pub state_sha256: String,
    /// Each backing file beside the state (`state.files/NAME`) and its size.
    pub backing: BTreeMap<String, u64>,
}

/// Why a state is not what its proof says.
#[derive(Debug, thiserror::Error)]
pub enum Damage {
    #[error("it has no readable {FILE} (saved by an interrupted run?)")]
    NoProof,
    #[error("its state file is {actual} bytes, {expected} when it was saved")]
    Size { actual: u64, expected: u64 },
    #[error("its state file's sha256 is not the one recorded when it was saved")]
    Checksum,
    #[error("its backing file {name} is missing or {actual} bytes, {expected} when it was saved")]
    Backing {
        name: String,
        actual: u64,
        expected: u64,
    },
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

fn backing_sizes(state: &Path) -> BTreeMap<String, u64> {
    let dir = crate::vm::machine::backing_dir(state);
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return BTreeMap::new();
    };
    rd.flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                size(&e.path()),
            )
        })
        .collect()
}

/// Writes the proof of the state saved in `dir` (`dir/state`).
pub fn record(dir: &Path) -> Result<(), crate::image::Error> {
    let state = dir.join("state");
    let proof = Proof {
        state_bytes: size(&state),
        state_sha256: crate::image::sha256_file(&state)?,
        backing: backing_sizes(&state),
    };
    let json = serde_json::to_string_pretty(&proof).expect("a proof serializes");
    let path = dir.join(FILE);
    std::fs::write(&path, json).map_err(|e| crate::image::Error::io(&path, e))
}

/// Whether the state in `dir` is what its proof says.
pub fn check(dir: &Path) -> Result<(), Damage> {
    let text = std::fs::read_to_string(dir.join(FILE)).map_err(|_| Damage::NoProof)?;
    let proof: Proof = serde_json::from_str(&text).map_err(|_| Damage::NoProof)?;
    let state = dir.join("state");
    let actual = size(&state);
    if actual != proof.state_bytes {
        return Err(Damage::Size {
            actual,
            expected: proof.state_bytes,
        });
    }
    let backing = backing_sizes(&state);
    for (name, &expected) in &proof.backing {
        let actual = backing.get(name).copied().unwrap_or(0);
        if actual != expected {
            return Err(Damage::Backing {
                name: name.clone(),
                actual,
                expected,
            });
        }
    }
    if crate::image::sha256_matches_once(&state, &proof.state_sha256) {
        Ok(())
    } else {
        Err(Damage::Checksum)
    }
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
                expected: 4096
            })
        ));

        let dir = tempfile::tempdir().unwrap();
        saved(dir.path());
        let mut bytes = std::fs::read(dir.path().join("state")).unwrap();
        bytes[100] = 8;
        std::fs::write(dir.path().join("state"), bytes).unwrap();
        assert!(matches!(check(dir.path()), Err(Damage::Checksum)));

        let dir = tempfile::tempdir().unwrap();
        saved(dir.path());
        let files = crate::vm::machine::backing_dir(&dir.path().join("state"));
        std::fs::write(files.join("nvdimm0.img"), b"short").unwrap();
        assert!(matches!(check(dir.path()), Err(Damage::Backing { .. })));

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("state"), b"no proof").unwrap();
        assert!(matches!(check(dir.path()), Err(Damage::NoProof)));
    }
}
