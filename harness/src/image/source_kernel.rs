//! A kernel an image builds from Debian's pinned source package
//! (`kernel: { package: linux-source-6.12, build: { config: FRAGMENT } }`):
//! the source unpacked and patched (`patches:`) in the cache, configured
//! with the fragment over tinyconfig and built with its mock buses
//! ([`crate::kbuild`]), then its bzImage and modules kept under
//! `CACHE/kernels/KEY` (the source package's checksum, the fragment and
//! the patches make the key), and the source and objects removed. Built on first use, found after that.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::host::{dpkg_extract, ensure_dir, run_tool};
use super::kernel::{single_release, StagedKernel};
use super::recipe::{ImageFiles, KernelBuildSpec, Lock};
use super::store::deb_path;
use super::{sha256_hex, BuildOptions, Error, Result};
use crate::kbuild::{self, KernelConfig};
use crate::proof;
use crate::space;
use crate::stages::Stage;
use crate::tool;

/// Bumped when the way the kernel is built changes.
const RECIPE: &str = "source kernel 1";

/// What unpacking the source and building it take at most (1.4 GB of
/// source, objects of a small configuration, modules: 2.2 GB measured
/// for linux-source-7.3).
const SOURCE_BUILD: u64 = 3 << 30;

/// What an unpacked source tree takes (1.8 GB measured for
/// linux-source-7.3, with its package while it is unpacked).
const SOURCE_UNPACKED: u64 = 2 << 30;

/// Days the work folder of a build cut short is kept for a build of the
/// same kernel to go on from.
const KEEP_CUT_SHORT_DAYS: u64 = 2;

/// The fragment a recipe's kernel is built with.
pub(super) fn fragment(files: &ImageFiles, spec: &KernelBuildSpec) -> PathBuf {
    files
        .recipe_path
        .parent()
        .unwrap_or(Path::new("."))
        .join(&spec.config)
}

/// The patches a recipe's kernel source takes, in order.
fn patches(files: &ImageFiles, spec: &KernelBuildSpec) -> Vec<PathBuf> {
    let dir = files.recipe_path.parent().unwrap_or(Path::new("."));
    spec.patches.iter().map(|p| dir.join(p)).collect()
}

/// What the recipe gives the kernel's build besides its source: the
/// fragment's text and each patch's, as one text for the keys that depend
/// on them (the built kernel's here, the image's in the cache).
pub(super) fn build_inputs(files: &ImageFiles, spec: &KernelBuildSpec) -> Result<String> {
    let fragment = fragment(files, spec);
    let mut text = std::fs::read_to_string(&fragment).map_err(|e| Error::io(&fragment, e))?;
    for patch in patches(files, spec) {
        let patch_text = std::fs::read_to_string(&patch).map_err(|e| Error::io(&patch, e))?;
        text.push_str(&format!("\n--patch\n{patch_text}"));
    }
    Ok(text)
}

/// The key of the kernel built from `lock`'s source with the recipe's
/// [`build_inputs`].
fn key(lock: &Lock, build_inputs: &str) -> String {
    let material = format!("{RECIPE}\n{}\n{build_inputs}", lock.kernel.sha256);
    sha256_hex(material.as_bytes())[..16].to_owned()
}

/// The kernel of `files`'s recipe, built now or found in the cache.
pub(super) fn stage(
    files: &ImageFiles,
    spec: &KernelBuildSpec,
    opts: &BuildOptions,
    lock: &Lock,
) -> Result<StagedKernel> {
    let fragment = fragment(files, spec);
    let patches = patches(files, spec);
    let key = key(lock, &build_inputs(files, spec)?);
    let kernels = opts.cache.join("kernels");
    let dir = kernels.join(&key);
    let source = format!(
        "{} {} built with {}",
        lock.kernel.name, lock.kernel.version, spec.config
    );
    if proof::found(&dir, "bzImage", "built kernel") {
        return staged(&dir, source);
    }
    // This kernel's own lock: one build of it at a time; other builds go on.
    ensure_dir(&kernels)?;
    let what = format!("kernel {}", lock.kernel.name);
    let _hold = super::exclusive(&kernels.join(format!(".lock-{key}")), &what)?;
    if proof::found(&dir, "bzImage", "built kernel") {
        return staged(&dir, source);
    }
    remove_cut_short(&kernels, &key);
    space::require(&opts.cache, SOURCE_BUILD, &format!("building {what}"))?;
    let work = kernels.join(format!(".work-{key}"));
    if work.exists() {
        // A build that was cut short: its objects are as good as make
        // left them, the stage folder is not.
        let _ = std::fs::remove_dir_all(work.join("stage"));
    }
    let tree = unpack(&opts.cache, lock, &work, &what, &patches)?;
    let config = KernelConfig::Fragment(fragment);
    let built = kbuild::build_in(&tree, &config, &work.join("build"), &what)?;
    if !(built.mocks.nfit_test && built.mocks.cxl_test) {
        return Err(Error::Modules(format!(
            "{what}: {} did not give both mock buses (nfit_test {}, cxl_test {}); see the warnings above",
            spec.config, built.mocks.nfit_test, built.mocks.cxl_test
        )));
    }
    let stage = work.join("stage");
    ensure_dir(&stage)?;
    std::fs::copy(&built.bzimage, stage.join("bzImage")).map_err(|e| Error::io(&stage, e))?;
    std::fs::rename(&built.modules, stage.join("modules")).map_err(|e| Error::io(&stage, e))?;
    proof::seal(&stage)?;
    std::fs::rename(&stage, &dir).map_err(|e| Error::io(&dir, e))?;
    crate::stages::say(&format!(
        "{what}: {} built in {:.0} s, kept in {}",
        built.release,
        built.seconds,
        dir.display()
    ));
    // The source and the objects are 2-3 GB; the kernel is kept.
    let _ = std::fs::remove_dir_all(&work);
    staged(&dir, source)
}

/// Removes the work folders of other kernels' builds cut short more than
/// [`KEEP_CUT_SHORT_DAYS`] ago (2-3 GB each) that no build holds now.
fn remove_cut_short(kernels: &Path, building: &str) {
    use std::os::fd::AsRawFd;
    let keep = std::time::Duration::from_secs(KEEP_CUT_SHORT_DAYS * 86400);
    for entry in std::fs::read_dir(kernels).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(key) = name.strip_prefix(".work-") else {
            continue;
        };
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > keep);
        if key == building || !old {
            continue;
        }
        let Ok(lock) = std::fs::File::create(kernels.join(format!(".lock-{key}"))) else {
            continue;
        };
        // SAFETY: flock on a descriptor this function owns; the lock goes
        // with the file at the end of the iteration.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The source of `spec`'s kernel unpacked and patched into `out`.
pub(super) fn unpack_into(
    files: &ImageFiles,
    spec: &KernelBuildSpec,
    opts: &BuildOptions,
    lock: &Lock,
    out: &Path,
) -> Result<PathBuf> {
    let what = format!("kernel source {}", lock.kernel.name);
    if find_tree(out).is_none() {
        space::require(out, SOURCE_UNPACKED, &format!("unpacking {what}"))?;
    }
    unpack(&opts.cache, lock, out, &what, &patches(files, spec))
}

/// Unpacks the source package's tarball into `work/`; returns the tree.
fn unpack(
    cache: &Path,
    lock: &Lock,
    work: &Path,
    what: &str,
    patches: &[PathBuf],
) -> Result<PathBuf> {
    let mut stage = Stage::start(what, "unpack the source");
    let package = work.join("package");
    if let Some(tree) = find_tree(work) {
        stage.finish();
        return Ok(tree);
    }
    ensure_dir(work)?;
    dpkg_extract(&deb_path(cache, &lock.kernel.sha256), &package)?;
    let tarball = std::fs::read_dir(package.join("usr/src"))
        .map_err(|e| Error::io(&package, e))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().contains(".tar"))
        .ok_or_else(|| {
            Error::Modules(format!(
                "{} has no source tarball in usr/src",
                lock.kernel.name
            ))
        })?;
    stage.item(&tarball.display().to_string());
    run_tool(
        Command::new("tar")
            .arg("-xf")
            .arg(&tarball)
            .arg("-C")
            .arg(work),
        tool::TAR,
    )?;
    let _ = std::fs::remove_dir_all(&package);
    stage.finish();
    let tree = find_tree(work).ok_or_else(|| {
        Error::Modules(format!(
            "{}: no kernel tree in {}",
            lock.kernel.name,
            work.display()
        ))
    })?;
    for patch in patches {
        let stage = Stage::start(what, &format!("patch {}", patch.display()));
        run_tool(
            Command::new("patch")
                .args(["-p1", "--forward", "--batch", "-i"])
                .arg(patch)
                .current_dir(&tree),
            tool::PATCH,
        )?;
        stage.finish();
    }
    Ok(tree)
}

/// The unpacked tree under `work` (`linux-source-6.12/`).
fn find_tree(work: &Path) -> Option<PathBuf> {
    std::fs::read_dir(work)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join("Kconfig").is_file() && p.join("Makefile").is_file())
}

/// A built kernel in the cache as the image builder takes it.
fn staged(dir: &Path, source: String) -> Result<StagedKernel> {
    let modules_root = dir.join("modules/lib/modules");
    let release = single_release(&modules_root)?;
    Ok(StagedKernel {
        image: dir.join("bzImage"),
        modules: modules_root.join(&release),
        release,
        source,
    })
}
