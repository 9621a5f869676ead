//! The QEMU binary (found on `$NDHARNESS_QEMU` or `$PATH`) and the errors
//! of starting it: no binary, a spawn that failed, a run folder that could
//! not be made, KVM asked for and unusable.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("qemu-system-x86_64 not found (looked in $NDHARNESS_QEMU and $PATH): run `ci/setup-host`, or `apt-get install -t bookworm-backports qemu-system-x86`")]
    NotFound,
    #[error("failed to start {binary}: {source}")]
    Spawn {
        binary: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to prepare run folder {path}: {source}")]
    RunDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("KVM was asked for but {0}")]
    NoKvm(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// `$NDHARNESS_QEMU`, or qemu-system-x86_64 on `$PATH`.
pub fn find_binary() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("NDHARNESS_QEMU").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.exists() {
            Ok(p)
        } else {
            Err(Error::NotFound)
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("qemu-system-x86_64"))
        .find(|p| p.is_file())
        .ok_or(Error::NotFound)
}
