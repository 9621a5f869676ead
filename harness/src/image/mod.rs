//! Guest images: a recipe and its lock in, a kernel and an initramfs out.
//!
//! `lock` resolves the recipe's package closure with a private apt
//! configuration and pins every package by version and sha256. `build`
//! downloads exactly the locked packages, checks each against the lock,
//! unpacks them, ships the wanted kernel modules, and writes a newc
//! initramfs. Results are cached under a content key (recipe + lock +
//! builder version), so a warm build is a directory lookup.

mod apt;
mod build;
mod build_root;
mod initramfs;
mod ndctl_tests;
mod nfit_test;
mod recipe;

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub use apt::Archive;
pub use build::{build, lock, BuildOptions, Image, Manifest, UserKernel};
pub use recipe::{ImageFiles, Lock, LockedPackage, Provides, Recipe};

/// Bumped whenever the builder's output for the same inputs changes.
pub const BUILDER_VERSION: &str = "1";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no image recipe `{name}`: {path} does not exist")]
    NoRecipe { name: String, path: PathBuf },
    #[error("no lock file {path}: run `{relock}` to resolve and pin the packages")]
    NoLock { path: PathBuf, relock: String },
    #[error("{recipe} changed since {lock} was written: run `{relock}`")]
    StaleLock {
        recipe: PathBuf,
        lock: PathBuf,
        relock: String,
    },
    #[error("the archive no longer has a package version the lock pins ({detail}): run `{relock}` to re-lock, then review and commit the new lock")]
    Unavailable { detail: String, relock: String },
    #[error("{name} {version}: sha256 {actual} does not match the lock's {expected}; the archive served different bytes than were locked")]
    Checksum {
        name: String,
        version: String,
        expected: String,
        actual: String,
    },
    #[error("no Debian archive found in the host's apt sources: pass --mirror URI or set NDHARNESS_MIRROR")]
    NoArchive,
    #[error("failed to run `{command}`: {stderr}")]
    Apt { command: String, stderr: String },
    #[error("failed to run {tool}: {message}")]
    Tool { tool: String, message: String },
    #[error("no kernel package matches `{pattern}` in {suite}")]
    NoKernel { pattern: String, suite: String },
    #[error("kernel modules: {0}")]
    Modules(String),
    #[error("failed to access {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Yaml(#[from] crate::yaml::Error),
}

impl Error {
    pub fn io(path: &Path, source: std::io::Error) -> Error {
        Error::Io {
            path: path.to_owned(),
            source,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(|e| Error::io(path, e))?;
    Ok(hex(&h.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An exclusive hold on the cache folder for one lock or cold build: two
/// processes must not run apt on the same private state at once. Released
/// on drop (the descriptor closes).
pub(crate) struct CacheLock(#[allow(dead_code)] std::fs::File);

impl CacheLock {
    pub(crate) fn acquire(cache: &Path) -> Result<CacheLock> {
        std::fs::create_dir_all(cache).map_err(|e| Error::io(cache, e))?;
        let path = cache.join("lock");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(Error::io(&path, std::io::Error::last_os_error()));
        }
        Ok(CacheLock(f))
    }
}

/// The user's cache folder for ndharness: `$NDHARNESS_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/ndharness`, else `~/.cache/ndharness`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("NDHARNESS_CACHE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("ndharness");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into());
    PathBuf::from(home).join(".cache/ndharness")
}
