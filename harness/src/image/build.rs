//! Building an image from its lock, in stages: fetch what the store lacks,
//! stage the root (the packages, the user's ndctl, ndctl's tests), stage the
//! kernel and ship its modules, finish the root (strip, busybox applets,
//! ndharness's scripts), pack it as a newc initramfs beside the kernel, and
//! publish the result in the cache under its content key.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::cache::{content_key, find, image_dir, publish_image, Found, Image, Manifest};
use super::host::{copy, dpkg_extract, ensure_dir, merge_tree, scratch_dir};
use super::kernel::{self, StagedKernel};
use super::module_index;
use super::recipe::{ImageFiles, Lock, LockedPackage};
use super::source_kernel;
use super::store::{deb_path, fetch_missing, fetch_ndctl_source};
use super::{
    initramfs, ndctl_tests, ndctl_tree, nfit_test, BuildOptions, CacheLock, Error, Result,
};
use crate::proof;
use crate::space;
use crate::stages::Stage;

/// Builds the image, or finds it in the cache.
pub fn build(files: &ImageFiles, opts: &BuildOptions) -> Result<Image> {
    let started = Instant::now();
    let (lock, lock_text) = files.read_lock()?;
    let key = content_key(files, &lock_text, opts)?;
    let out = image_dir(&opts.cache, files, &key);
    if let Found::Whole(image) = find(&out) {
        return Ok(*image);
    }
    let what = format!("image {}", files.name);
    // A kernel built from source (minutes) holds only its own lock, so that
    // other builds and runs use the cache meanwhile; its source package is
    // fetched first, under the cache's.
    let built_kernel = match (&opts.user_kernel, &files.recipe.kernel.build) {
        (None, Some(spec)) => {
            let hold = CacheLock::acquire(&opts.cache)?;
            fetch_inputs(files, opts, &lock)?;
            drop(hold);
            let stage = Stage::start(&what, "kernel");
            let kernel = source_kernel::stage(files, spec, opts, &lock)?;
            stage.finish();
            Some(kernel)
        }
        _ => None,
    };
    let _hold = CacheLock::acquire(&opts.cache)?;
    // Another process may have built it (or healed it) while this one
    // waited; a damaged image is set aside only under the lock.
    match find(&out) {
        Found::Whole(image) => return Ok(*image),
        Found::Damaged(damage) => proof::discard(&out, "cached image", &damage),
        Found::Absent => {}
    }
    space::require(&opts.cache, space::IMAGE_BUILD, &format!("building {what}"))?;
    fetch_inputs(files, opts, &lock)?;
    let staging = scratch_dir(&opts.cache)?;
    let root = stage_root(opts, &lock, staging.path(), &what)?;
    let kernel = match built_kernel {
        Some(kernel) => kernel,
        None => {
            let stage = Stage::start(&what, "kernel");
            let kernel = kernel::stage(files, opts, &lock, staging.path())?;
            stage.finish();
            kernel
        }
    };
    let stage = Stage::start(&what, "modules");
    let modules = ship_modules(files, &kernel, &root)?;
    stage.finish();
    let stage = Stage::start(&what, "initramfs");
    finish_root(files, &root)?;
    let packed = pack(&root, &kernel, staging.path())?;
    stage.finish();
    let manifest = Manifest {
        image: files.name.clone(),
        key,
        kernel_release: kernel.release,
        kernel_source: kernel.source,
        ndctl_source: ndctl_source(opts, &lock),
        packages: lock.packages.iter().map(LockedPackage::spec).collect(),
        modules,
        initramfs_bytes: packed.initramfs_bytes,
        build_seconds: started.elapsed().as_secs_f64(),
        files: Default::default(),
    };
    publish_image(&packed.dir, &out, manifest)
}

/// Brings every package and source the build reads into the store.
/// The kernel source of a line built from Debian's source package
/// (`kernel: { package: linux-source-X, build: ... }`), unpacked and
/// patched as the line builds it into a new folder under `out`: a tree
/// for `validate`, `mutate` and `--kernel-tree`. Returns the tree.
pub fn unpack_source(
    files: &ImageFiles,
    opts: &BuildOptions,
    out: &std::path::Path,
) -> Result<std::path::PathBuf> {
    let Some(spec) = &files.recipe.kernel.build else {
        return Err(Error::Modules(format!(
            "image {}: its kernel is a binary package, not built from source \
             (pick a line built from source, e.g. --kernel debian-7.3-mock)",
            files.name
        )));
    };
    let (lock, _) = files.read_lock()?;
    {
        let _hold = CacheLock::acquire(&opts.cache)?;
        fetch_inputs(files, opts, &lock)?;
    }
    source_kernel::unpack_into(files, spec, opts, &lock, out)
}

fn fetch_inputs(files: &ImageFiles, opts: &BuildOptions, lock: &Lock) -> Result<()> {
    let mut wanted: Vec<&LockedPackage> = lock.packages.iter().collect();
    if opts.user_kernel.is_none() {
        wanted.push(&lock.kernel);
        wanted.extend(&lock.kernel_parts);
        if files.recipe.kernel.nfit_test {
            nfit_test::check_versions(&lock.kernel, &lock.kernel_build)?;
            wanted.extend(&lock.kernel_build);
        }
    }
    if files.recipe.ndctl_tests.is_some() {
        let tests = lock.ndctl_tests.as_ref().ok_or_else(|| Error::StaleLock {
            recipe: files.recipe_path.clone(),
            lock: files.lock_path.clone(),
            relock: format!("ndharness image lock {}", files.name),
        })?;
        wanted.extend(&tests.build_root);
        fetch_ndctl_source(files, opts, tests)?;
    }
    fetch_missing(files, opts, lock, &wanted)
}

/// The guest's root under `staging/root`: the lock's packages unpacked and
/// usr-merged, the user's ndctl laid over them, ndctl's tests installed.
fn stage_root(opts: &BuildOptions, lock: &Lock, staging: &Path, what: &str) -> Result<PathBuf> {
    let root = staging.join("root");
    ensure_dir(&root)?;
    let mut stage = Stage::counted(
        what,
        &format!("unpack {} packages", lock.packages.len()),
        lock.packages.len() as u64,
    );
    for package in &lock.packages {
        stage.item(&package.name);
        dpkg_extract(&deb_path(&opts.cache, &package.sha256), &root)?;
        stage.inc(1);
    }
    initramfs::merge_usr(&root)?;
    stage.finish();
    let deb = |p: &LockedPackage| deb_path(&opts.cache, &p.sha256);
    match (&opts.user_ndctl, &lock.ndctl_tests) {
        (Some(tree), Some(tests)) if ndctl_tree::is_tree(tree) => {
            let built = ndctl_tree::build(&opts.cache, tree, tests, &deb)?;
            overlay(&built.dest, &root)?;
            ndctl_tests::install(&built.tests, &root)?;
        }
        (Some(tree), None) if ndctl_tree::is_tree(tree) => {
            return Err(Error::NdctlTreeWithoutBuildRoot {
                tree: tree.clone(),
                image: what.trim_start_matches("image ").to_owned(),
            });
        }
        (user, tests) => {
            if let Some(dir) = user {
                overlay(dir, &root)?;
            }
            if let Some(tests) = tests {
                ndctl_tests::install(&ndctl_tests::build(&opts.cache, tests, &deb)?, &root)?;
            }
        }
    }
    Ok(root)
}

/// Copies the user's ndctl install over the unpacked packages; it must look
/// like a package's tree (`usr/bin/ndctl`).
fn overlay(dir: &Path, root: &Path) -> Result<()> {
    let ndctl = dir.join("usr/bin/ndctl");
    if !ndctl.is_file() {
        return Err(Error::io(
            &ndctl,
            std::io::Error::other(
                "--ndctl DIR takes an ndctl source tree or the DESTDIR of ndctl's `meson install` (with prefix /usr): DIR/usr/bin/ndctl is missing",
            ),
        ));
    }
    merge_tree(dir, root)
}

/// Ships the modules of the recipe's drivers (and what they depend on) from the kernel
/// into the root, with depmod over them (two indexes when mocks are among
/// them: [`module_index`]); returns what was shipped.
fn ship_modules(files: &ImageFiles, kernel: &StagedKernel, root: &Path) -> Result<Vec<String>> {
    let mut modules = initramfs::install_modules(
        &kernel.modules,
        root,
        &kernel.release,
        &files.recipe.drivers,
        &files.recipe.optional_drivers,
    )?;
    let mocks = module_index::ship(&kernel.modules, root, &kernel.release)?;
    if !mocks.is_empty() {
        modules.push(format!("mock-index({})", mocks.join(",")));
    }
    Ok(modules)
}

/// Removes what the recipe strips, then adds busybox's applets and
/// ndharness's own scripts.
fn finish_root(files: &ImageFiles, root: &Path) -> Result<()> {
    for stripped in &files.recipe.strip {
        let path = root.join(stripped);
        if path.is_dir() {
            std::fs::remove_dir_all(&path).map_err(|e| Error::io(&path, e))?;
        } else if path.exists() {
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        }
    }
    initramfs::install_busybox_applets(root)?;
    initramfs::install_scripts(root)
}

/// The folder to publish: the kernel and the root packed as an initramfs.
struct Packed {
    dir: PathBuf,
    initramfs_bytes: u64,
}

fn pack(root: &Path, kernel: &StagedKernel, staging: &Path) -> Result<Packed> {
    let dir = staging.join("out");
    ensure_dir(&dir)?;
    let initramfs_bytes = initramfs::write_newc(root, &dir.join("initramfs.cpio"))?;
    copy(&kernel.image, &dir.join("vmlinuz"))?;
    Ok(Packed {
        dir,
        initramfs_bytes,
    })
}

/// The ndctl package (`ndctl=81-1`), or `user: DIR`.
fn ndctl_source(opts: &BuildOptions, lock: &Lock) -> String {
    match &opts.user_ndctl {
        Some(dir) => format!("user: {}", dir.display()),
        None => lock
            .packages
            .iter()
            .find(|p| p.name == "ndctl")
            .map(LockedPackage::spec)
            .unwrap_or_default(),
    }
}
