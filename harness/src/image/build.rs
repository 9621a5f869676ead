//! Locking a recipe and building an image from its lock.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::apt::{Archive, PrivateApt};
use super::recipe::{ImageFiles, Lock, LockedPackage, LockedSource, NdctlTestsLock};
use super::{
    initramfs, ndctl_tests, nfit_test, sha256_file, sha256_hex, CacheLock, Error, Result,
    BUILDER_VERSION,
};

/// A kernel the user built: `--kernel BZIMAGE --modules DIR`, where DIR is the
/// `INSTALL_MOD_PATH` given to `make modules_install`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserKernel {
    pub bzimage: PathBuf,
    pub modules: PathBuf,
}

#[derive(Clone, Debug, Default)]
pub struct BuildOptions {
    pub cache: PathBuf,
    pub mirror: Option<String>,
    pub user_kernel: Option<UserKernel>,
    /// An ndctl the user built: the `DESTDIR` of its `meson install`
    /// (`usr/bin/ndctl`, `usr/lib/.../libndctl.so.6`, ...), laid over the
    /// image's packages.
    pub user_ndctl: Option<PathBuf>,
}

/// What a build produced and from what.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Manifest {
    pub image: String,
    pub key: String,
    pub kernel_release: String,
    pub kernel_source: String,
    /// The ndctl package (`ndctl=81-1`) or `user: DIR`.
    #[serde(default)]
    pub ndctl_source: String,
    pub packages: Vec<String>,
    pub modules: Vec<String>,
    pub initramfs_bytes: u64,
    pub build_seconds: f64,
}

/// A built image in the cache.
#[derive(Clone, Debug)]
pub struct Image {
    pub dir: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub manifest: Manifest,
    /// Whether this call built it (false: found in the cache).
    pub built: bool,
}

const INIT: &str = include_str!("init.sh");
const STEP: &str = include_str!("step.sh");
const PCI_STATE: &str = include_str!("pci-state.sh");

/// Resolves the recipe's closure with a private apt, downloads every package
/// into the cache, and writes the lock beside the recipe.
pub fn lock(files: &ImageFiles, opts: &BuildOptions) -> Result<Lock> {
    let _hold = CacheLock::acquire(&opts.cache)?;
    let r = &files.recipe;
    let archive = Archive::discover(opts.mirror.as_deref())?;
    let apt = PrivateApt::new(&opts.cache, &archive, &r.suite, &r.components)?;
    apt.update()?;
    let kernel_suite = r.kernel.suite.clone().filter(|s| *s != r.suite);
    let kapt = match &kernel_suite {
        Some(suite) => {
            let k = PrivateApt::new(&opts.cache, &archive, suite, &r.components)?;
            k.update()?;
            Some(k)
        }
        None => None,
    };
    let kernel_from = kapt.as_ref().unwrap_or(&apt);
    let kernel_name = newest_match(
        kernel_from,
        &r.kernel.package,
        kernel_suite.as_deref().unwrap_or(&r.suite),
    )?;
    let mut resolved = apt.resolve(&r.packages, true)?;
    let kernel_resolved = kernel_from.resolve(std::slice::from_ref(&kernel_name), false)?;
    let dl = tempfile::tempdir_in(ensure_dir(&opts.cache.join("tmp"))?)
        .map_err(|e| Error::io(&opts.cache, e))?;
    // The nfit_test build packages at exactly the kernel's version.
    let build_names = if r.kernel.nfit_test {
        nfit_test::build_packages(&kernel_name)?
    } else {
        Vec::new()
    };
    let kernel_version = kernel_resolved
        .first()
        .map(|p| p.version.clone())
        .unwrap_or_default();
    let build_specs: Vec<String> = build_names
        .iter()
        .map(|n| format!("{n}={kernel_version}"))
        .collect();
    let build_resolved = if build_specs.is_empty() {
        Vec::new()
    } else {
        kernel_from.resolve(&build_specs, false).map_err(|e| {
            Error::Modules(format!(
                "nfit_test needs {} at the kernel's version {kernel_version} in {}: {e}",
                build_names.join(", "),
                kernel_suite.as_deref().unwrap_or(&r.suite)
            ))
        })?
    };
    let ndctl_tests = match &r.ndctl_tests {
        Some(t) => Some(lock_ndctl_tests(
            opts,
            &archive,
            r,
            &apt,
            &resolved,
            &t.build_root,
        )?),
        None => None,
    };
    apt.download(&specs_of(&resolved), dl.path(), "ndharness image lock")?;
    kernel_from.download(
        &specs_of(&kernel_resolved),
        dl.path(),
        "ndharness image lock",
    )?;
    kernel_from.download(
        &specs_of(&build_resolved),
        dl.path(),
        "ndharness image lock",
    )?;
    resolved.extend(kernel_resolved);
    resolved.extend(build_resolved);
    let mut kernel = None;
    let mut kernel_build = Vec::new();
    let mut packages = Vec::new();
    for p in resolved {
        let name = p.name.clone();
        let locked = pin(&opts.cache, dl.path(), p)?;
        if name == kernel_name {
            kernel = Some(locked);
        } else if build_names.contains(&name) {
            kernel_build.push(locked);
        } else {
            packages.push(locked);
        }
    }
    packages.sort();
    kernel_build.sort_by_key(|p| build_names.iter().position(|n| *n == p.name));
    let lock = Lock {
        recipe_sha256: files.recipe_sha256(),
        suite: r.suite.clone(),
        kernel: kernel.ok_or_else(|| Error::NoKernel {
            pattern: r.kernel.package.clone(),
            suite: kernel_suite.clone().unwrap_or_else(|| r.suite.clone()),
        })?,
        kernel_suite,
        kernel_build,
        packages,
        ndctl_tests,
    };
    if r.kernel.nfit_test {
        nfit_test::check_versions(&lock.kernel, &lock.kernel_build)?;
    }
    files.write_lock(&lock)?;
    Ok(lock)
}

/// Pins what ndctl's tests build from: the upstream tarball of the
/// image's ndctl version and the build root's package closure.
fn lock_ndctl_tests(
    opts: &BuildOptions,
    archive: &Archive,
    r: &super::recipe::Recipe,
    apt: &PrivateApt,
    resolved: &[super::apt::Resolved],
    build_root: &[String],
) -> Result<NdctlTestsLock> {
    let ndctl = resolved.iter().find(|p| p.name == "ndctl").ok_or_else(|| {
        Error::Modules("ndctl_tests: the image's packages must include ndctl".into())
    })?;
    let version = ndctl_tests::source_version(&ndctl.version);
    let (file, size, sha256) = keep_ndctl_orig(opts, archive, r, &version, &|e| e)?;
    let dl = tempfile::tempdir_in(ensure_dir(&opts.cache.join("tmp"))?)
        .map_err(|e| Error::io(&opts.cache, e))?;
    let closure = apt.resolve(build_root, true)?;
    apt.download(&specs_of(&closure), dl.path(), "ndharness image lock")?;
    let mut locked = closure
        .into_iter()
        .map(|p| pin(&opts.cache, dl.path(), p))
        .collect::<Result<Vec<_>>>()?;
    locked.sort();
    Ok(NdctlTestsLock {
        source: LockedSource {
            file,
            version,
            sha256,
            size,
        },
        build_root: locked,
    })
}

/// `name=version` of each resolved package, as apt downloads them.
fn specs_of(v: &[super::apt::Resolved]) -> Vec<String> {
    v.iter()
        .map(|p| format!("{}={}", p.name, p.version))
        .collect()
}

/// Hashes a package downloaded into `dir`, keeps it in the cache, and pins it.
fn pin(cache: &Path, dir: &Path, p: super::apt::Resolved) -> Result<LockedPackage> {
    let path = dir.join(&p.filename);
    let sha256 = sha256_file(&path)?;
    let size = std::fs::metadata(&path)
        .map_err(|e| Error::io(&path, e))?
        .len();
    store_deb(cache, &path, &sha256)?;
    Ok(LockedPackage {
        name: p.name,
        version: p.version,
        arch: p.arch,
        sha256,
        size,
    })
}

/// Fetches the ndctl source tarball the lock pins, when not in the cache.
fn fetch_ndctl_source(files: &ImageFiles, opts: &BuildOptions, t: &NdctlTestsLock) -> Result<()> {
    let kept = ndctl_tests::source_path(&opts.cache, &t.source.sha256, &t.source.file);
    if kept.exists() {
        return Ok(());
    }
    let archive = Archive::discover(opts.mirror.as_deref())?;
    let (file, _, sha256) =
        keep_ndctl_orig(opts, &archive, &files.recipe, &t.source.version, &|e| {
            Error::Unavailable {
                detail: format!("ndctl source {}: {e}", t.source.version),
                relock: format!("ndharness image lock {}", files.name),
            }
        })?;
    if sha256 != t.source.sha256 {
        return Err(Error::Checksum {
            name: file,
            version: t.source.version.clone(),
            expected: t.source.sha256.clone(),
            actual: sha256,
        });
    }
    Ok(())
}

/// Fetches ndctl's upstream tarball at source `version` through the guest
/// suite's deb-src index and keeps it in the cache under its sha256:
/// (file name, size, sha256). `on_fetch` maps a failed fetch.
fn keep_ndctl_orig(
    opts: &BuildOptions,
    archive: &Archive,
    r: &super::recipe::Recipe,
    version: &str,
    on_fetch: &dyn Fn(Error) -> Error,
) -> Result<(String, u64, String)> {
    let dl = tempfile::tempdir_in(ensure_dir(&opts.cache.join("tmp"))?)
        .map_err(|e| Error::io(&opts.cache, e))?;
    let src = PrivateApt::sources(&opts.cache, archive, &r.suite, &r.components)?;
    src.update()?;
    let (file, size, sha256) = src
        .fetch_orig("ndctl", version, dl.path())
        .map_err(on_fetch)?;
    let kept = ndctl_tests::source_path(&opts.cache, &sha256, &file);
    ensure_dir(kept.parent().expect("folder"))?;
    copy(&dl.path().join(&file), &kept)?;
    Ok((file, size, sha256))
}

fn newest_match(apt: &PrivateApt, glob: &str, suite: &str) -> Result<String> {
    let mut best: Option<(String, String)> = None;
    for name in apt.names_matching(glob)? {
        let version = apt.candidate(&name)?;
        let newer = match &best {
            None => true,
            Some((_, v)) => dpkg_version_gt(&version, v)?,
        };
        if newer {
            best = Some((name, version));
        }
    }
    best.map(|(n, _)| n).ok_or_else(|| Error::NoKernel {
        pattern: glob.to_owned(),
        suite: suite.to_owned(),
    })
}

fn dpkg_version_gt(a: &str, b: &str) -> Result<bool> {
    let status = Command::new("dpkg")
        .args(["--compare-versions", a, "gt", b])
        .status()
        .map_err(|e| tool_error("dpkg", e))?;
    Ok(status.success())
}

/// Builds the image, or finds it in the cache.
pub fn build(files: &ImageFiles, opts: &BuildOptions) -> Result<Image> {
    let start = Instant::now();
    let (lock, lock_text) = files.read_lock()?;
    let key = content_key(files, &lock_text, opts)?;
    let out = opts
        .cache
        .join("images")
        .join(format!("{}-{}", files.name, &key[..16]));
    if let Some(image) = load_built(&out)? {
        return Ok(image);
    }
    let _hold = CacheLock::acquire(&opts.cache)?;
    // Another process may have built it while this one waited.
    if let Some(image) = load_built(&out)? {
        return Ok(image);
    }
    let mut wanted: Vec<&LockedPackage> = lock.packages.iter().collect();
    if opts.user_kernel.is_none() {
        wanted.push(&lock.kernel);
        if files.recipe.kernel.nfit_test {
            nfit_test::check_versions(&lock.kernel, &lock.kernel_build)?;
            wanted.extend(&lock.kernel_build);
        }
    }
    if files.recipe.ndctl_tests.is_some() {
        let t = lock.ndctl_tests.as_ref().ok_or_else(|| Error::StaleLock {
            recipe: files.recipe_path.clone(),
            lock: files.lock_path.clone(),
            relock: format!("ndharness image lock {}", files.name),
        })?;
        wanted.extend(&t.build_root);
        fetch_ndctl_source(files, opts, t)?;
    }
    fetch_missing(files, opts, &lock, &wanted)?;

    let staging = tempfile::tempdir_in(ensure_dir(&opts.cache.join("tmp"))?)
        .map_err(|e| Error::io(&opts.cache, e))?;
    let root = staging.path().join("root");
    ensure_dir(&root)?;
    for p in &lock.packages {
        dpkg_extract(&deb_path(&opts.cache, &p.sha256), &root)?;
    }
    initramfs::merge_usr(&root)?;
    if let Some(dir) = &opts.user_ndctl {
        overlay(dir, &root)?;
    }
    if let Some(t) = &lock.ndctl_tests {
        let built = ndctl_tests::build(&opts.cache, t, &|p| deb_path(&opts.cache, &p.sha256))?;
        ndctl_tests::install(&built, &root)?;
    }

    let (kernel_image, modules_src, release, kernel_source) = match &opts.user_kernel {
        Some(k) => {
            let (dir, release) = user_modules_dir(&k.modules)?;
            (
                k.bzimage.clone(),
                dir,
                release,
                format!("user: {}", k.bzimage.display()),
            )
        }
        None => {
            let kroot = staging.path().join("kernel");
            dpkg_extract(&deb_path(&opts.cache, &lock.kernel.sha256), &kroot)?;
            // trixie's kernels ship modules under usr/lib, bookworm's under
            // lib; depmod wants them under lib.
            if kroot.join("lib/modules").is_dir() {
                ensure_dir(&kroot.join("usr"))?;
                symlink("../lib", &kroot.join("usr/lib"))?;
            } else {
                symlink("usr/lib", &kroot.join("lib"))?;
            }
            let release = single_release(&kroot.join("usr/lib/modules"))?;
            if files.recipe.kernel.nfit_test {
                // A kernel of the guest's suite builds in the guest suite's
                // build root; one of the host's release on the host.
                let root = match (&lock.kernel_suite, &lock.ndctl_tests) {
                    (Some(_), _) => None,
                    (None, Some(t)) => Some(t.build_root.as_slice()),
                    (None, None) => {
                        return Err(Error::Modules(format!(
                            "nfit_test: the kernel comes from {}, whose kbuild tools do not run on \
                             the host; give the recipe a build root (`ndctl_tests.build_root`, with \
                             make and libelf1t64) to build in",
                            lock.suite
                        )))
                    }
                };
                let built = nfit_test::modules(
                    &opts.cache,
                    &lock.kernel,
                    &lock.kernel_build,
                    root,
                    &|p| deb_path(&opts.cache, &p.sha256),
                )?;
                install_updates(&built, &kroot.join("usr/lib/modules").join(&release))?;
            }
            depmod(&kroot, &release)?;
            let image = kroot.join(format!("boot/vmlinuz-{release}"));
            let src = format!("{} {}", lock.kernel.name, lock.kernel.version);
            (
                image,
                kroot.join("usr/lib/modules").join(&release),
                release,
                src,
            )
        }
    };
    let modules = initramfs::install_modules(&modules_src, &root, &release, &files.recipe.modules)?;
    depmod(&root, &release)?;
    for s in &files.recipe.strip {
        let p = root.join(s);
        if p.is_dir() {
            std::fs::remove_dir_all(&p).map_err(|e| Error::io(&p, e))?;
        } else if p.exists() {
            std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
        }
    }
    initramfs::install_busybox_applets(&root)?;
    initramfs::write_file(&root.join("init"), INIT, 0o755)?;
    initramfs::write_file(&root.join("usr/libexec/ndharness/step"), STEP, 0o755)?;
    initramfs::write_file(
        &root.join("usr/libexec/ndharness/pci-state"),
        PCI_STATE,
        0o755,
    )?;

    let tmp_out = staging.path().join("out");
    ensure_dir(&tmp_out)?;
    let initrd = tmp_out.join("initramfs.cpio");
    let initramfs_bytes = initramfs::write_newc(&root, &initrd)?;
    copy(&kernel_image, &tmp_out.join("vmlinuz"))?;
    let manifest = Manifest {
        image: files.name.clone(),
        key: key.clone(),
        kernel_release: release,
        kernel_source,
        ndctl_source: match &opts.user_ndctl {
            Some(dir) => format!("user: {}", dir.display()),
            None => lock
                .packages
                .iter()
                .find(|p| p.name == "ndctl")
                .map(LockedPackage::spec)
                .unwrap_or_default(),
        },
        packages: lock.packages.iter().map(LockedPackage::spec).collect(),
        modules,
        initramfs_bytes,
        build_seconds: start.elapsed().as_secs_f64(),
    };
    let mpath = tmp_out.join("manifest.json");
    let json = serde_json::to_string_pretty(&manifest).expect("manifest serializes");
    std::fs::write(&mpath, json).map_err(|e| Error::io(&mpath, e))?;
    publish(&tmp_out, &out, "manifest.json", "image")?;
    let mut image = load_built(&out)?.expect("image was just written");
    image.built = true;
    Ok(image)
}

fn load_built(out: &Path) -> Result<Option<Image>> {
    let mpath = out.join("manifest.json");
    let Ok(text) = std::fs::read_to_string(&mpath) else {
        return Ok(None);
    };
    let manifest: Manifest = serde_json::from_str(&text).map_err(|e| {
        Error::io(
            &mpath,
            std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        )
    })?;
    Ok(Some(Image {
        dir: out.to_owned(),
        kernel: out.join("vmlinuz"),
        initrd: out.join("initramfs.cpio"),
        manifest,
        built: false,
    }))
}

fn content_key(files: &ImageFiles, lock_text: &str, opts: &BuildOptions) -> Result<String> {
    let mut material = format!(
        "builder {BUILDER_VERSION}\n--recipe\n{}\n--lock\n{lock_text}\n--init\n{INIT}\n--step\n{STEP}\n--pci-state\n{PCI_STATE}\n",
        files.recipe_text
    );
    if files.recipe.ndctl_tests.is_some() {
        material.push_str(&format!(
            "--tests\n{}\n{}\n{}\n",
            ndctl_tests::RUN,
            ndctl_tests::JOURNALCTL,
            ndctl_tests::UUIDGEN
        ));
    }
    if let Some(k) = &opts.user_kernel {
        material.push_str(&format!("--kernel\n{}\n", sha256_file(&k.bzimage)?));
        material.push_str(&format!("--modules\n{}\n", tree_fingerprint(&k.modules)?));
    }
    if let Some(dir) = &opts.user_ndctl {
        material.push_str(&format!("--ndctl\n{}\n", tree_fingerprint(dir)?));
    }
    Ok(sha256_hex(material.as_bytes()))
}

/// Copies the user's ndctl install over the unpacked packages; it must look
/// like a package's tree (`usr/bin/ndctl`).
fn overlay(dir: &Path, root: &Path) -> Result<()> {
    let ndctl = dir.join("usr/bin/ndctl");
    if !ndctl.is_file() {
        return Err(Error::io(
            &ndctl,
            std::io::Error::other(
                "--ndctl DIR takes the DESTDIR of ndctl's `meson install` (with prefix /usr): DIR/usr/bin/ndctl is missing",
            ),
        ));
    }
    merge_tree(dir, root)
}

/// Copies `src` into `dest`, merging folders; a folder of `dest` that is a
/// link (`lib` -> `usr/lib` in the usr-merged root) is followed, not replaced.
pub(super) fn merge_tree(src: &Path, dest: &Path) -> Result<()> {
    for e in std::fs::read_dir(src).map_err(|e| Error::io(src, e))? {
        let e = e.map_err(|e| Error::io(src, e))?;
        let from = e.path();
        let to = dest.join(e.file_name());
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

/// Paths, sizes and mtimes under `dir`: a user's `make modules_install`
/// changes at least one of them.
fn tree_fingerprint(dir: &Path) -> Result<String> {
    let mut lines = Vec::new();
    walk(dir, &mut |p, md| {
        let mtime = md
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
        lines.push(format!("{} {} {:?}", p.display(), md.len(), mtime));
    })?;
    lines.sort();
    Ok(sha256_hex(lines.join("\n").as_bytes()))
}

pub(super) fn walk(dir: &Path, f: &mut dyn FnMut(&Path, &std::fs::Metadata)) -> Result<()> {
    for e in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let e = e.map_err(|e| Error::io(dir, e))?;
        let p = e.path();
        let md = std::fs::symlink_metadata(&p).map_err(|e| Error::io(&p, e))?;
        if md.is_dir() {
            walk(&p, f)?;
        } else {
            f(&p, &md);
        }
    }
    Ok(())
}

fn fetch_missing(
    files: &ImageFiles,
    opts: &BuildOptions,
    lock: &Lock,
    wanted: &[&LockedPackage],
) -> Result<()> {
    let missing: Vec<&&LockedPackage> = wanted
        .iter()
        .filter(|p| !deb_path(&opts.cache, &p.sha256).exists())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let r = &files.recipe;
    let archive = Archive::discover(opts.mirror.as_deref())?;
    let dl = tempfile::tempdir_in(ensure_dir(&opts.cache.join("tmp"))?)
        .map_err(|e| Error::io(&opts.cache, e))?;
    let relock = format!("ndharness image lock {}", files.name);
    // The kernel may come from a suite of its own.
    let (kernel, rest): (Vec<&&LockedPackage>, Vec<&&LockedPackage>) =
        missing.iter().partition(|p| {
            lock.kernel_suite.is_some()
                && (p.sha256 == lock.kernel.sha256
                    || lock.kernel_build.iter().any(|b| b.sha256 == p.sha256))
        });
    for (suite, batch) in [
        (lock.suite.as_str(), rest),
        (lock.kernel_suite.as_deref().unwrap_or(&lock.suite), kernel),
    ] {
        if batch.is_empty() {
            continue;
        }
        let apt = PrivateApt::new(&opts.cache, &archive, suite, &r.components)?;
        apt.update()?;
        let specs: Vec<String> = batch.iter().map(|p| p.spec()).collect();
        apt.download(&specs, dl.path(), &relock)?;
    }
    let by_name: BTreeMap<&str, &LockedPackage> =
        missing.iter().map(|p| (p.name.as_str(), **p)).collect();
    for entry in std::fs::read_dir(dl.path()).map_err(|e| Error::io(dl.path(), e))? {
        let path = entry.map_err(|e| Error::io(dl.path(), e))?.path();
        let fname = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let Some((name, ..)) = super::apt::parse_deb_filename(&fname) else {
            continue;
        };
        let Some(locked) = by_name.get(name.as_str()) else {
            continue;
        };
        let actual = sha256_file(&path)?;
        if actual != locked.sha256 {
            return Err(Error::Checksum {
                name,
                version: locked.version.clone(),
                expected: locked.sha256.clone(),
                actual,
            });
        }
        store_deb(&opts.cache, &path, &actual)?;
    }
    if let Some(p) = missing
        .iter()
        .find(|p| !deb_path(&opts.cache, &p.sha256).exists())
    {
        return Err(Error::Unavailable {
            detail: format!("{} was not downloaded", p.spec()),
            relock: format!("ndharness image lock {}", files.name),
        });
    }
    Ok(())
}

/// Moves a finished build from its staging folder to `out` in the cache.
/// Another process may have finished the same build first (its `marker`
/// file is there); either copy is good.
pub(super) fn publish(staged: &Path, out: &Path, marker: &str, what: &str) -> Result<()> {
    ensure_dir(out.parent().expect("cache folder"))?;
    if std::fs::rename(staged, out).is_err() && !out.join(marker).exists() {
        return Err(Error::io(
            out,
            std::io::Error::other(format!("could not move the built {what} into the cache")),
        ));
    }
    Ok(())
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

fn deb_path(cache: &Path, sha256: &str) -> PathBuf {
    cache.join("debs").join(format!("{sha256}.deb"))
}

fn store_deb(cache: &Path, path: &Path, sha256: &str) -> Result<()> {
    let dest = deb_path(cache, sha256);
    ensure_dir(dest.parent().expect("debs folder"))?;
    if std::fs::rename(path, &dest).is_err() {
        copy(path, &dest)?;
    }
    Ok(())
}

pub(super) fn dpkg_extract(deb: &Path, dest: &Path) -> Result<()> {
    run_tool(
        Command::new("dpkg-deb").arg("-x").arg(deb).arg(dest),
        "dpkg-deb",
    )
}

fn depmod(root: &Path, release: &str) -> Result<()> {
    let depmod = ["/usr/sbin/depmod", "/sbin/depmod"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("depmod");
    run_tool(
        Command::new(depmod).arg("-b").arg(root).arg(release),
        "depmod",
    )
}

pub(super) fn run_tool(cmd: &mut Command, tool: &str) -> Result<()> {
    let out = cmd.output().map_err(|e| tool_error(tool, e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Tool {
            tool: tool.to_owned(),
            message: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })
    }
}

fn tool_error(tool: &str, e: std::io::Error) -> Error {
    Error::Tool {
        tool: tool.to_owned(),
        message: format!("{e}; run ci/setup-host to install the host tools"),
    }
}

fn single_release(modules: &Path) -> Result<String> {
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

pub(super) fn ensure_dir(p: &Path) -> Result<&Path> {
    std::fs::create_dir_all(p).map_err(|e| Error::io(p, e))?;
    Ok(p)
}

pub(super) fn copy(from: &Path, to: &Path) -> Result<()> {
    std::fs::copy(from, to)
        .map(drop)
        .map_err(|e| Error::io(from, e))
}

pub(super) fn symlink(target: &str, link: &Path) -> Result<()> {
    std::os::unix::fs::symlink(target, link).map_err(|e| Error::io(link, e))
}
