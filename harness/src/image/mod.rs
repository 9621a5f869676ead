//! Guest images: a recipe and its lock in, a kernel and an initramfs out.
//!
//! `lock` resolves the recipe's package closure with a private apt
//! configuration and pins every package by version and sha256. `build`
//! downloads exactly the locked packages, checks each against the lock,
//! unpacks them, ships the wanted kernel modules, and writes a newc
//! initramfs. Results are cached under a content key (builder version,
//! recipe, lock, the scripts shipped in the guest, a source kernel's
//! config inputs, the user's own builds), so a warm build is a directory
//! lookup.
//!
//! This file holds what every part shares: the options, the error, hashing
//! and the cache folder's lock. `lock` resolves; `build` stages the root,
//! the kernel (`kernel`) and packs; `cache` keys, finds and publishes
//! images; `store` keeps the locked packages; `apt` is the private apt,
//! `recipe` the recipe and lock formats, `source_kernel` a kernel built
//! from Debian's source; `host` is the file and
//! process helpers every builder uses (`initramfs`, `nfit_test`,
//! `ndctl_tests`, `build_root` included).

mod apt;
mod build;
mod build_root;
mod cache;
mod host;
mod initramfs;
mod kernel;
mod lock;
mod module_index;
mod ndctl_tests;
pub mod ndctl_tree;
mod nfit_test;
mod recipe;
mod source_kernel;
mod store;

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub use apt::Archive;
pub use build::{build, unpack_source};
pub use cache::{images_dir, Image, Manifest, RETENTION};
pub use lock::lock;
pub use recipe::{ImageFiles, Lock, LockedPackage, Provides, Recipe};

/// A kernel the user built: `--kernel BZIMAGE --modules DIR`, where DIR is the
/// `INSTALL_MOD_PATH` given to `make modules_install`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserKernel {
    pub bzimage: PathBuf,
    pub modules: PathBuf,
}

/// What `lock` and `build` work with besides the recipe.
#[derive(Clone, Debug, Default)]
pub struct BuildOptions {
    pub cache: PathBuf,
    pub mirror: Option<String>,
    pub user_kernel: Option<UserKernel>,
    /// The user's ndctl: the `DESTDIR` of its `meson install`
    /// (`usr/bin/ndctl`, `usr/lib/.../libndctl.so.6`, ...), laid over the
    /// image's packages; or its source tree, built with its tests
    /// ([`ndctl_tree`]).
    pub user_ndctl: Option<PathBuf>,
}

/// Bumped whenever the builder's output for the same inputs changes.
pub const BUILDER_VERSION: &str = "2";

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
    /// A host tool that failed, or did not finish within its deadline.
    #[error(transparent)]
    HostTool(Box<crate::tool::Error>),
    #[error(transparent)]
    NoSpace(#[from] crate::space::NoSpace),
    #[error("no kernel package matches `{pattern}` in {suite}")]
    NoKernel { pattern: String, suite: String },
    #[error("kernel modules: {0}")]
    Modules(String),
    #[error("--ndctl {}: an ndctl tree is built in the guest suite's build root, which image `{image}` has none of; take an image that runs ndctl's tests (--kernel debian-7.3-mock, or --image nfit-test), or give the DESTDIR of your own `meson install`", tree.display())]
    NdctlTreeWithoutBuildRoot { tree: PathBuf, image: String },
    #[error("kernel {release} lacks `{module}` ({what}), which the image's `{function}` needs: it is neither a module in {} nor built in (modules.builtin); build the kernel with it, or leave `{function}` out of the recipe's drivers", modules_dep.display())]
    MissingDriver {
        module: String,
        what: String,
        function: String,
        release: String,
        modules_dep: PathBuf,
    },
    #[error("failed to access {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Yaml(#[from] crate::yaml::Error),
    #[error(transparent)]
    KernelBuild(#[from] crate::kbuild::Error),
}

impl Error {
    pub fn io(path: &Path, source: std::io::Error) -> Error {
        Error::Io {
            path: path.to_owned(),
            source,
        }
    }
}

impl From<crate::proof::Error> for Error {
    fn from(e: crate::proof::Error) -> Error {
        Error::Io {
            path: e.path,
            source: e.source,
        }
    }
}

impl From<crate::tool::Error> for Error {
    fn from(e: crate::tool::Error) -> Error {
        Error::HostTool(Box::new(e))
    }
}

pub type Result<T> = std::result::Result<T, Error>;

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

pub use crate::proof::sha256_file;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An exclusive hold on the cache folder for one lock or cold build: two
/// processes must not run apt on the same private state at once. Released
/// on drop (the descriptor closes).
///
/// Every scratch folder (`tmp/`) is made under this hold, so one found
/// when it is taken is what a killed build left (Ctrl-C exits without
/// destructors): it is removed then, as are builds set aside as damaged.
pub(crate) struct CacheLock(#[allow(dead_code)] std::fs::File);

impl CacheLock {
    pub(crate) fn acquire(cache: &Path) -> Result<CacheLock> {
        std::fs::create_dir_all(cache).map_err(|e| Error::io(cache, e))?;
        let file = exclusive(&cache.join("lock"), "the cache")?;
        remove_leftovers(cache);
        Ok(CacheLock(file))
    }
}

/// An exclusive `flock` on `path` (made if missing), held while the file
/// stays open; a wait behind another process says so first, naming `what`.
pub(crate) fn exclusive(path: &Path, what: &str) -> Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    let fd = file.as_raw_fd();
    // SAFETY: flock on a descriptor this function owns.
    if unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(file);
    }
    crate::stages::say(&format!(
        "waiting for another ndharness to finish with {what} ({} is locked)",
        path.display()
    ));
    // SAFETY: as above.
    if unsafe { libc::flock(fd, libc::LOCK_EX) } != 0 {
        return Err(Error::io(path, std::io::Error::last_os_error()));
    }
    Ok(file)
}

/// Removes what killed builds left in the cache: scratch folders, and
/// damaged builds set aside but not yet removed.
fn remove_leftovers(cache: &Path) {
    let tmp = cache.join("tmp");
    for entry in std::fs::read_dir(&tmp).into_iter().flatten().flatten() {
        let _ = std::fs::remove_dir_all(entry.path());
    }
    for folder in ["images", "nfit_test", "ndctl-tests"] {
        let dir = cache.join(folder);
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(".discarded-")
            {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// The user's cache folder for ndharness: `$NDHARNESS_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/ndharness`, else `~/.cache/ndharness`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("NDHARNESS_CACHE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("ndharness");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into());
    PathBuf::from(home).join(".cache/ndharness")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exclusive_lock_waits_for_its_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let held = exclusive(&path, "the test").unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = {
            let path = path.clone();
            std::thread::spawn(move || {
                let got = exclusive(&path, "the test").unwrap();
                tx.send(()).unwrap();
                drop(got);
            })
        };
        let waited = rx.recv_timeout(std::time::Duration::from_millis(200));
        assert!(waited.is_err(), "taken while held");
        drop(held);
        rx.recv_timeout(std::time::Duration::from_secs(5))
            .expect("taken once released");
        waiter.join().unwrap();
    }
}
