//! What every image builder does on the host: folders, copies, links,
//! scripts, file trees, a scratch folder in the cache, moving a finished
//! build into the cache, and running the host's tools (dpkg-deb, depmod,
//! tar, strip, ...) through [`crate::tool`], under their deadlines. Each
//! error names the path or the tool involved.
//!
//! This module uses nothing else of `image/` but its `Error`, so that the
//! builders (`build`, `kernel`, `initramfs`, `nfit_test`, `ndctl_tests`,
//! `build_root`) can all use it without importing each other.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use super::{Error, Result};
use crate::tool::{self, Limit, Tool};

/// Creates `p` and its parents; returns it for chaining.
pub(super) fn ensure_dir(p: &Path) -> Result<&Path> {
    std::fs::create_dir_all(p).map_err(|e| Error::io(p, e))?;
    Ok(p)
}

pub(super) fn copy(from: &Path, to: &Path) -> Result<()> {
    std::fs::copy(from, to)
        .map(drop)
        .map_err(|e| Error::io(from, e))
}

/// Copies `from` to `to` under a temporary name first: a copy cut short
/// (a full disk) leaves no file at `to` that looks whole.
pub(super) fn copy_whole(from: &Path, to: &Path) -> Result<()> {
    let part = to.with_extension(format!("part-{}", std::process::id()));
    let copied = std::fs::copy(from, &part)
        .map_err(|e| Error::io(&part, e))
        .and_then(|_| std::fs::rename(&part, to).map_err(|e| Error::io(to, e)));
    if copied.is_err() {
        let _ = std::fs::remove_file(&part);
    }
    copied
}

pub(super) fn symlink(target: &str, link: &Path) -> Result<()> {
    std::os::unix::fs::symlink(target, link).map_err(|e| Error::io(link, e))
}

/// Writes `text` to `path` (creating its folder) with permissions `mode`.
pub(super) fn write_file(path: &Path, text: impl AsRef<[u8]>, mode: u32) -> Result<()> {
    ensure_dir(path.parent().expect("file has a folder"))?;
    std::fs::write(path, text).map_err(|e| Error::io(path, e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io(path, e))
}

/// A private folder under the cache's `tmp/`, removed on drop.
pub(super) fn scratch_dir(cache: &Path) -> Result<tempfile::TempDir> {
    tempfile::tempdir_in(ensure_dir(&cache.join("tmp"))?).map_err(|e| Error::io(cache, e))
}

/// Copies `src` into `dest`, merging folders; a folder of `dest` that is a
/// link (`lib` -> `usr/lib` in the usr-merged root) is followed, not replaced.
pub(super) fn merge_tree(src: &Path, dest: &Path) -> Result<()> {
    for entry in std::fs::read_dir(src).map_err(|e| Error::io(src, e))? {
        let entry = entry.map_err(|e| Error::io(src, e))?;
        let from = entry.path();
        let to = dest.join(entry.file_name());
        let md = std::fs::symlink_metadata(&from).map_err(|e| Error::io(&from, e))?;
        if md.is_dir() {
            if !to.is_dir() {
                let _ = std::fs::remove_file(&to);
                ensure_dir(&to)?;
            }
            merge_tree(&from, &to)?;
            continue;
        }
        if std::fs::symlink_metadata(&to).is_ok() {
            std::fs::remove_file(&to).map_err(|e| Error::io(&to, e))?;
        }
        if md.file_type().is_symlink() {
            let target = std::fs::read_link(&from).map_err(|e| Error::io(&from, e))?;
            std::os::unix::fs::symlink(&target, &to).map_err(|e| Error::io(&to, e))?;
        } else {
            std::fs::copy(&from, &to).map_err(|e| Error::io(&from, e))?;
        }
    }
    Ok(())
}

/// Calls `visit` with every file and link under `dir` (folders are entered,
/// not visited).
pub(super) fn walk(dir: &Path, visit: &mut dyn FnMut(&Path, &std::fs::Metadata)) -> Result<()> {
    Ok(crate::proof::walk(dir, visit)?)
}

/// Moves a finished build from its staging folder to `out` in the cache.
/// Another process may have finished the same build first (its `marker`
/// file is there); either copy is good.
pub(super) fn publish(staged: &Path, out: &Path, marker: &str, what: &str) -> Result<()> {
    ensure_dir(out.parent().expect("cache folder"))?;
    match std::fs::rename(staged, out) {
        Err(e) if !out.join(marker).exists() => Err(Error::io(
            out,
            std::io::Error::new(
                e.kind(),
                format!("could not move the built {what} into the cache: {e}"),
            ),
        )),
        _ => Ok(()),
    }
}

/// Runs a host tool to completion under its deadline; a failure carries
/// its exit status and last lines of output.
pub(super) fn run_tool(cmd: &mut Command, limit: Limit) -> Result<()> {
    Tool::new(limit, cmd).merged().run()?;
    Ok(())
}

/// Unpacks a .deb's files (no maintainer scripts) into `dest`.
pub(super) fn dpkg_extract(deb: &Path, dest: &Path) -> Result<()> {
    run_tool(
        Command::new("dpkg-deb").arg("-x").arg(deb).arg(dest),
        tool::DPKG_DEB,
    )
}

/// The host's depmod over the modules of `release` under `root`.
pub(super) fn depmod(root: &Path, release: &str) -> Result<()> {
    let depmod = ["/usr/sbin/depmod", "/sbin/depmod"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("depmod");
    run_tool(
        Command::new(depmod).arg("-b").arg(root).arg(release),
        tool::DEPMOD,
    )
}
