//! An image's kernel and the modules it ships from: the user's build
//! (`--kernel BZIMAGE --modules DIR`), or the locked Debian kernel package
//! unpacked, with nfit_test's mock modules placed in its `updates/` when the
//! recipe builds them, and depmod run over it.

use std::path::{Path, PathBuf};

use super::host::{copy, depmod, dpkg_extract, ensure_dir, symlink};
use super::recipe::{ImageFiles, Lock, LockedPackage};
use super::store::deb_path;
use super::{nfit_test, BuildOptions, Error, Result, UserKernel};

/// A kernel ready to boot and the modules folder to take its modules from.
pub(super) struct StagedKernel {
    /// The bzImage QEMU boots.
    pub image: PathBuf,
    /// `lib/modules/RELEASE`, with modules.dep.
    pub modules: PathBuf,
    pub release: String,
    /// Where it came from, for the manifest.
    pub source: String,
}

/// The user's kernel, or the lock's unpacked under `staging/kernel`.
pub(super) fn stage(
    files: &ImageFiles,
    opts: &BuildOptions,
    lock: &Lock,
    staging: &Path,
) -> Result<StagedKernel> {
    match &opts.user_kernel {
        Some(kernel) => user_kernel(kernel),
        None => debian_kernel(files, opts, lock, &staging.join("kernel")),
    }
}

fn user_kernel(kernel: &UserKernel) -> Result<StagedKernel> {
    let (modules, release) = user_modules_dir(&kernel.modules)?;
    Ok(StagedKernel {
        image: kernel.bzimage.clone(),
        modules,
        release,
        source: format!("user: {}", kernel.bzimage.display()),
    })
}

/// Unpacks the locked kernel package into `kernel_root`, adds nfit_test's
/// modules when the recipe asks for them, and runs depmod over it.
fn debian_kernel(
    files: &ImageFiles,
    opts: &BuildOptions,
    lock: &Lock,
    kernel_root: &Path,
) -> Result<StagedKernel> {
    for package in std::iter::once(&lock.kernel).chain(&lock.kernel_parts) {
        dpkg_extract(&deb_path(&opts.cache, &package.sha256), kernel_root)?;
    }
    // trixie's kernels ship modules under usr/lib, bookworm's under
    // lib; depmod wants them under lib.
    if kernel_root.join("lib/modules").is_dir() {
        ensure_dir(&kernel_root.join("usr"))?;
        symlink("../lib", &kernel_root.join("usr/lib"))?;
    } else {
        symlink("usr/lib", &kernel_root.join("lib"))?;
    }
    let modules_root = kernel_root.join("usr/lib/modules");
    let release = single_release(&modules_root)?;
    if files.recipe.kernel.nfit_test {
        let built = nfit_test::modules(
            &opts.cache,
            &lock.kernel,
            &lock.kernel_build,
            nfit_test_build_root(lock)?,
            &|p| deb_path(&opts.cache, &p.sha256),
        )?;
        install_updates(&built, &modules_root.join(&release))?;
    }
    depmod(kernel_root, &release)?;
    Ok(StagedKernel {
        image: vmlinuz(kernel_root, &modules_root.join(&release), &release)?,
        modules: modules_root.join(&release),
        release,
        source: format!("{} {}", lock.kernel.name, lock.kernel.version),
    })
}

/// The kernel image: 6.x packages put it in `boot/vmlinuz-RELEASE`, 7.x's
/// `linux-binary-RELEASE` in the modules folder, as `vmlinuz`.
fn vmlinuz(kernel_root: &Path, release_dir: &Path, release: &str) -> Result<PathBuf> {
    [
        kernel_root.join(format!("boot/vmlinuz-{release}")),
        release_dir.join("vmlinuz"),
    ]
    .into_iter()
    .find(|p| p.is_file())
    .ok_or_else(|| {
        Error::Modules(format!(
            "the kernel packages hold no image: neither boot/vmlinuz-{release} nor \
             usr/lib/modules/{release}/vmlinuz"
        ))
    })
}

/// Where nfit_test builds: a kernel of the guest's release (its suite, or
/// that suite's backports: trixie-backports' 7.3 for a trixie guest) in the
/// guest suite's build root, whose libc its kbuild tools were linked
/// against; one of the host's release on the host (`None`).
fn nfit_test_build_root(lock: &Lock) -> Result<Option<&[LockedPackage]>> {
    let same_release = lock
        .kernel_suite
        .as_deref()
        .is_none_or(|suite| suite.split('-').next() == Some(lock.suite.as_str()));
    match (same_release, &lock.ndctl_tests) {
        (false, _) => Ok(None),
        (true, Some(tests)) => Ok(Some(tests.build_root.as_slice())),
        (true, None) => Err(Error::Modules(format!(
            "nfit_test: the kernel comes from {}, whose kbuild tools do not run on \
             the host; give the recipe a build root (`ndctl_tests.build_root`, with \
             make and libelf1t64) to build in",
            lock.suite
        ))),
    }
}

/// Places built modules in the kernel's `updates/`, which depmod prefers
/// over the modules of the same name under `kernel/`.
fn install_updates(built: &Path, release_dir: &Path) -> Result<()> {
    let updates = release_dir.join("updates");
    ensure_dir(&updates)?;
    for entry in std::fs::read_dir(built).map_err(|e| Error::io(built, e))? {
        let path = entry.map_err(|e| Error::io(built, e))?.path();
        if path.extension().is_some_and(|e| e == "ko") {
            copy(&path, &updates.join(path.file_name().expect("file")))?;
        }
    }
    Ok(())
}

/// The one release folder under `modules`.
pub(super) fn single_release(modules: &Path) -> Result<String> {
    let mut names: Vec<String> = std::fs::read_dir(modules)
        .map_err(|e| Error::io(modules, e))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    match names.len() {
        1 => Ok(names.remove(0)),
        _ => Err(Error::Modules(format!(
            "expected one kernel release in {}, found {names:?}",
            modules.display()
        ))),
    }
}

/// The modules folder and release of a user's `make modules_install`.
fn user_modules_dir(install_mod_path: &Path) -> Result<(PathBuf, String)> {
    let base = install_mod_path.join("lib/modules");
    let base = if base.exists() {
        base
    } else {
        install_mod_path.join("usr/lib/modules")
    };
    let release = single_release(&base)?;
    let dir = base.join(&release);
    if !dir.join("modules.dep").exists() {
        return Err(Error::Modules(format!(
            "{} has no modules.dep: pass the INSTALL_MOD_PATH given to `make modules_install`",
            dir.display()
        )));
    }
    Ok((dir, release))
}
