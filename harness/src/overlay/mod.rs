//! A kernel tree's source overlay: the tree `validate` and `mutate` build
//! instead of the user's, so that the user's tree is never written. It is
//! a folder of the cache (`CACHE/overlay/KEY/src`, one per tree) whose
//! files are hard links to the user's (made in a second, no space taken),
//! except the files a change touches: those are copies, written with the
//! change, with a new mtime so that make rebuilds what they feed.
//!
//! [`Overlay::sync`] makes the overlay the user's tree as it is now: files
//! the user changed since (a new inode) linked again, files gone removed,
//! the files the last change touched copied back from the user's tree
//! (fresh mtimes again: the objects built from the changed copies are
//! rebuilt). [`Overlay::apply`] then applies a change ([`change`]). The
//! overlay keeps one path, so one build folder serves the baseline and
//! every change after it: each build is incremental, a file or a few.
//!
//! The mock buses' builds (`make M=tools/testing/nvdimm`, `.../cxl`) write
//! their objects into the source tree, beside the drivers they compile
//! again ([`COPIED`]): there a link would let a build write through to
//! the user's file, so those folders hold copies, taken again only when
//! the user's file changed, and the build's own files are left there.

pub mod change;

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use change::Change;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O error at a path.
    #[error(transparent)]
    Io(#[from] crate::proof::Error),
    #[error("{0} is not a kernel source tree (no Makefile and Kconfig at its top)")]
    NotATree(PathBuf),
    #[error("{change} does not apply to {tree}:\n{output}")]
    DoesNotApply {
        change: String,
        tree: PathBuf,
        output: String,
    },
    #[error(transparent)]
    Tool(#[from] crate::tool::Error),
    /// Taking the overlay's lock (the cache's own locking).
    #[error(transparent)]
    Lock(#[from] crate::image::Error),
    #[error("{0}")]
    Change(String),
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io(crate::proof::Error::at(path, source))
}

/// The folders the mock buses' builds write into: copies, not links.
pub const COPIED: &[&str] = &[
    "drivers/nvdimm/",
    "drivers/cxl/",
    "drivers/dax/",
    "drivers/acpi/nfit/",
    "tools/testing/nvdimm/",
    "tools/testing/cxl/",
];

fn copied(rel: &str) -> bool {
    COPIED.iter().any(|dir| rel.starts_with(dir))
}

/// What the overlay holds beside the user's tree, kept across runs.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Ledger {
    /// Paths (relative) the last change wrote: copies, or files it added.
    touched: BTreeSet<String>,
    /// Each file of the [`COPIED`] folders as the user's was when copied:
    /// its size and mtime (seconds, nanoseconds).
    #[serde(default)]
    copies: std::collections::BTreeMap<String, (u64, i64, i64)>,
}

const LEDGER: &str = "overlay.json";

/// A user's kernel tree and its overlay in the cache, held: one process
/// at a time syncs, changes and builds an overlay (another waits, saying
/// so), until the `Overlay` is dropped.
pub struct Overlay {
    tree: PathBuf,
    dir: PathBuf,
    ledger: Ledger,
    _held: std::fs::File,
}

/// What a sync did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Synced {
    pub files: usize,
    /// Linked anew (new, or changed by the user since).
    pub linked: usize,
    /// Copied back from the user's tree after a change.
    pub restored: usize,
    pub removed: usize,
}

impl Overlay {
    /// The overlay of `tree` under `cache` (made on the first sync).
    pub fn for_tree(cache: &Path, tree: &Path) -> Result<Overlay, Error> {
        if !tree.join("Makefile").is_file() || !tree.join("Kconfig").is_file() {
            return Err(Error::NotATree(tree.to_owned()));
        }
        let tree = tree.canonicalize().map_err(io(tree))?;
        let key = crate::kbuild::out_dir(Path::new(""), &tree);
        let key = key.file_name().expect("a key").to_owned();
        let dir = cache.join("overlay").join(key);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let what = format!("the overlay of {}", tree.display());
        let held = crate::image::exclusive(&dir.with_extension("lock"), &what)?;
        let ledger = std::fs::read_to_string(dir.join(LEDGER))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        Ok(Overlay {
            tree,
            dir,
            ledger,
            _held: held,
        })
    }

    /// The source tree to build: the overlay.
    pub fn src(&self) -> PathBuf {
        self.dir.join("src")
    }

    /// The user's tree.
    pub fn tree(&self) -> &Path {
        &self.tree
    }

    /// Makes the overlay the user's tree as it is now (see the module's
    /// header).
    pub fn sync(&mut self) -> Result<Synced, Error> {
        let src = self.src();
        std::fs::create_dir_all(&src).map_err(io(&src))?;
        let mut synced = Synced::default();
        let mut seen = BTreeSet::new();
        let tree = self.tree.clone();
        walk(&tree, Path::new(""), &mut |rel, md| {
            seen.insert(rel.to_owned());
            synced.files += 1;
            let ours = src.join(rel);
            let key = rel.to_string_lossy();
            if self.ledger.touched.contains(key.as_ref()) {
                // A change wrote it: a fresh copy, so make rebuilds it.
                replace_with_copy(&tree.join(rel), &ours)?;
                synced.restored += 1;
                return Ok(());
            }
            if copied(&key) {
                let stamp = (md.len(), md.mtime(), md.mtime_nsec());
                if self.ledger.copies.get(key.as_ref()) != Some(&stamp) || !ours.exists() {
                    replace_with_copy(&tree.join(rel), &ours)?;
                    self.ledger.copies.insert(key.into_owned(), stamp);
                    synced.linked += 1;
                }
                return Ok(());
            }
            let same = std::fs::symlink_metadata(&ours)
                .is_ok_and(|o| o.ino() == md.ino() && o.dev() == md.dev());
            if !same {
                link_or_copy(&tree.join(rel), &ours, md)?;
                synced.linked += 1;
            }
            Ok(())
        })?;
        // What is in the overlay but no longer in the tree (a file the
        // user deleted, or one a change added).
        let mut extra = Vec::new();
        let added = std::mem::take(&mut self.ledger.touched);
        walk(&src, Path::new(""), &mut |rel, _| {
            let key = rel.to_string_lossy();
            // In the copied folders a file of the build's stays, unless a
            // change added it.
            let built_here = copied(&key) && !added.contains(key.as_ref());
            if !seen.contains(rel) && !built_here {
                extra.push(src.join(rel));
            }
            Ok(())
        })?;
        for path in extra {
            std::fs::remove_file(&path).map_err(io(&path))?;
            synced.removed += 1;
        }
        self.save()?;
        Ok(synced)
    }

    /// Applies `change` to the overlay (after [`Self::sync`]): the files it
    /// touches become copies first (the user's are never written), and are
    /// recorded, so that the next sync puts them back. Returns the paths it
    /// touched.
    pub fn apply(&mut self, change: &Change) -> Result<Vec<String>, Error> {
        let src = self.src();
        let touched = change.paths();
        for rel in &touched {
            self.ledger.touched.insert(rel.clone());
            let ours = src.join(rel);
            if ours.exists() {
                replace_with_copy(&ours, &ours)?;
            }
        }
        self.save()?;
        change.apply(&src)?;
        Ok(touched)
    }

    fn save(&self) -> Result<(), Error> {
        let path = self.dir.join(LEDGER);
        let json = serde_json::to_string_pretty(&self.ledger).expect("a ledger serializes");
        std::fs::write(&path, json).map_err(io(&path))
    }
}

/// Calls `visit` with each file and link under `root/rel` (relative
/// paths; `.git` left out).
fn walk(
    root: &Path,
    rel: &Path,
    visit: &mut dyn FnMut(&Path, &std::fs::Metadata) -> Result<(), Error>,
) -> Result<(), Error> {
    let dir = root.join(rel);
    for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
        let entry = entry.map_err(io(&dir))?;
        let name = entry.file_name();
        if rel.as_os_str().is_empty() && name == ".git" {
            continue;
        }
        let child = rel.join(&name);
        let md = std::fs::symlink_metadata(entry.path()).map_err(io(&entry.path()))?;
        if md.is_dir() {
            walk(root, &child, visit)?;
        } else {
            visit(&child, &md)?;
        }
    }
    Ok(())
}

/// `to` becomes a hard link to `from` (a copy across filesystems; a link
/// stays a link).
fn link_or_copy(from: &Path, to: &Path, md: &std::fs::Metadata) -> Result<(), Error> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    let _ = std::fs::remove_file(to);
    if md.file_type().is_symlink() {
        let target = std::fs::read_link(from).map_err(io(from))?;
        return std::os::unix::fs::symlink(target, to).map_err(io(to));
    }
    match std::fs::hard_link(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            std::fs::copy(from, to).map(drop).map_err(io(to))
        }
        Err(e) => Err(io(to)(e)),
    }
}

/// `to` becomes a file of its own with `from`'s bytes and mode, its mtime
/// now (written beside it, then renamed over: a link to the user's file
/// is replaced, never written through).
fn replace_with_copy(from: &Path, to: &Path) -> Result<(), Error> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    let bytes = std::fs::read(from).map_err(io(from))?;
    let mode = std::fs::metadata(from).map_err(io(from))?.permissions();
    let part = to.with_extension("ndharness-part");
    std::fs::write(&part, bytes).map_err(io(&part))?;
    std::fs::set_permissions(&part, mode).map_err(io(&part))?;
    std::fs::rename(&part, to).map_err(io(to))
}

#[cfg(test)]
mod tests;
