//! ndctl's own test suite (`test/` of its source), built for the guest's
//! userland and shipped in the image under [`DIR`].
//!
//! The host is bookworm and the guest trixie, so the tests are not built
//! with the host's compiler and libraries: the build root is the closure of
//! the recipe's `ndctl_tests.build_root` packages from the guest's suite,
//! pinned in the lock and unpacked with dpkg-deb (no maintainer scripts run,
//! none are needed to compile), and meson runs in it under chroot. The
//! source is the upstream tarball of the image's own ndctl version.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::host::{ensure_dir, merge_tree, publish, run_tool, scratch_dir, write_file};
use super::recipe::{LockedPackage, NdctlTestsLock};
use super::{sha256_file, sha256_hex, Error, Result};
use crate::proof;
use crate::space;
use crate::stages::Stage;
use crate::tool;

/// Where the tests live in the guest.
pub const DIR: &str = "usr/lib/ndctl-tests";

/// Runs one upstream test as `meson test` would (installed as DIR/run).
pub const RUN: &str = include_str!("ndctl-test.sh");

/// `journalctl -k` for the tests' check_dmesg: the guest has no journal.
pub const JOURNALCTL: &str = include_str!("journalctl.sh");

/// `uuidgen` for track-uuid.sh, from the kernel's random UUIDs.
pub const UUIDGEN: &str = include_str!("uuidgen.sh");

/// `udevadm settle` for cxl-xor-region.sh: the guest has no udev.
pub const UDEVADM: &str = include_str!("udevadm.sh");

/// `cxl-test-region WAYS`, for cases on cxl_test: a labelled pmem region
/// of WAYS devices, as ndctl's own CXL tests make them.
pub const CXL_TEST_REGION: &str = include_str!("cxl-test-region.sh");

/// How ndctl is configured: its tests, the destructive ones too (the guest
/// is disposable), no documentation, no systemd units.
const MESON_OPTIONS: &[&str] = &[
    "-Dtest=enabled",
    "-Ddestructive=enabled",
    "-Dkeyutils=enabled",
    "-Ddocs=disabled",
    "-Dasciidoctor=disabled",
    "-Dsystemd=disabled",
];

/// Bumped when the way the tests are built changes.
const RECIPE: &str = "ndctl tests 1";

/// The ndctl source version of a binary package version: a binNMU
/// (`81-1+b1`) is built from source `81-1`.
pub fn source_version(binary: &str) -> String {
    match binary.rsplit_once("+b") {
        Some((base, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            base.to_owned()
        }
        _ => binary.to_owned(),
    }
}

/// Where a locked source tarball is kept.
pub fn source_path(cache: &Path, sha256: &str, file: &str) -> PathBuf {
    cache.join("sources").join(format!("{sha256}-{file}"))
}

/// The built tests: `build/` (test programs and the libraries they run
/// against) and `test/` (the scripts and their data), cached by inputs.
pub fn build(
    cache: &Path,
    lock: &NdctlTestsLock,
    deb: &dyn Fn(&LockedPackage) -> PathBuf,
) -> Result<PathBuf> {
    let key = build_key(RECIPE, &lock.source.sha256, lock);
    let out = cache
        .join("ndctl-tests")
        .join(format!("{}-{}", lock.source.version, &key[..12]));
    if proof::found(&out, "done", "ndctl tests build") {
        return Ok(out);
    }
    space::require(cache, space::NDCTL_TESTS_BUILD, "building ndctl's tests")?;
    let tarball = source_path(cache, &lock.source.sha256, &lock.source.file);
    let actual = sha256_file(&tarball)?;
    if actual != lock.source.sha256 {
        return Err(Error::Checksum {
            name: lock.source.file.clone(),
            version: lock.source.version.clone(),
            expected: lock.source.sha256.clone(),
            actual,
        });
    }
    let started = std::time::Instant::now();
    let stage = Stage::start(
        "ndctl tests",
        &format!("build {} in the guest suite's build root", lock.source.file),
    );
    let work = scratch_dir(cache)?;
    let root = work.path().join("root");
    let packages: Vec<&LockedPackage> = lock.build_root.iter().collect();
    super::build_root::prepare(&root, &packages, deb)?;
    let src_parent = ensure_dir(&root.join("src"))?.to_owned();
    run_tool(
        Command::new("tar")
            .arg("-xf")
            .arg(&tarball)
            .arg("-C")
            .arg(&src_parent),
        tool::TAR,
    )?;
    let top = single_dir(&src_parent)?;
    let version_tag = upstream_version(&lock.source.version);
    compile(&root, &top, version_tag, Install::No)?;
    let staged = work.path().join("out");
    stage_tests(&root, &top, &staged)?;
    let about = format!(
        "ndctl {} tests (test/ of {}), built in {:.1} s\n",
        lock.source.version,
        lock.source.file,
        started.elapsed().as_secs_f64()
    );
    publish_build(&staged, &out, &about, "tests")?;
    stage.finish();
    Ok(out)
}

/// The cache key of a build in `lock`'s build root: the builder's
/// `recipe`, the meson options, what identifies the `source`, and the
/// build root's packages.
pub(super) fn build_key(recipe: &str, source: &str, lock: &NdctlTestsLock) -> String {
    let mut material = format!("{recipe}\n{}\n{source}\n", MESON_OPTIONS.join(" "));
    for p in &lock.build_root {
        material.push_str(&format!("{}\n", p.sha256));
    }
    sha256_hex(material.as_bytes())
}

/// Writes `about` as the `done` mark of the build staged in `staged`,
/// seals it with its proof and moves it to `out` in the cache.
pub(super) fn publish_build(staged: &Path, out: &Path, about: &str, what: &str) -> Result<()> {
    std::fs::write(staged.join("done"), about).map_err(|e| Error::io(staged, e))?;
    proof::seal(staged)?;
    publish(staged, out, "done", what)
}

/// Whether [`compile`] also installs what it built (into `/dest` of the
/// build root, prefix `/usr`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Install {
    No,
    IntoDest,
}

/// Configures and builds the ndctl source at `/src/TOP` of the prepared
/// build root `root` into `/build`, tests enabled, under chroot; with
/// [`Install::IntoDest`], installs it into `/dest` as a package would.
pub(super) fn compile(root: &Path, top: &str, version_tag: &str, install: Install) -> Result<()> {
    let (prefix, install) = match install {
        Install::No => ("", ""),
        Install::IntoDest => (
            "--prefix=/usr --sysconfdir=/etc ",
            "; meson install -C /build --no-rebuild --destdir /dest >>/build.log 2>&1 \
             || { tail -40 /build.log; exit 1; }",
        ),
    };
    let script = format!(
        "set -e; cd /src/{top}; meson setup /build {prefix}{} \
         -Dversion-tag={version_tag} >/build.log 2>&1 || {{ cat /build.log; exit 1; }}; \
         ninja -C /build >>/build.log 2>&1 || {{ tail -40 /build.log; exit 1; }}{install}",
        MESON_OPTIONS.join(" "),
    );
    super::build_root::run(
        Some(root),
        &script,
        "meson in the ndctl build root",
        tool::NDCTL_TESTS_BUILD,
        &mut |_| {},
    )
}

/// Copies what the tests need from a compiled build root into `staged`:
/// `build/` (the test programs and the in-tree libraries their RUNPATH
/// names) and `test/` (the scripts and their data).
pub(super) fn stage_tests(root: &Path, top: &str, staged: &Path) -> Result<()> {
    let build = root.join("build");
    for sub in ["test", "ndctl/lib", "daxctl/lib", "cxl/lib"] {
        copy_files(&build.join(sub), &staged.join("build").join(sub), &|p| {
            is_executable(p) || p.to_string_lossy().contains(".so")
        })?;
    }
    let test_dir = staged.join("test");
    merge_tree(
        &root.join("src").join(top).join("test"),
        ensure_dir(&test_dir)?,
    )
}

/// `81-1` -> `81`: what ndctl reports as its version.
fn upstream_version(debian: &str) -> &str {
    let v = debian.rsplit_once('-').map_or(debian, |(u, _)| u);
    v.split_once(':').map_or(v, |(_, u)| u)
}

fn single_dir(dir: &Path) -> Result<String> {
    let dirs: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    match dirs.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(Error::Tool {
            tool: "tar".into(),
            message: format!(
                "expected one folder in the ndctl tarball, found {dirs:?} in {}",
                dir.display()
            ),
        }),
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Copies the files (not folders, symlinks kept as links) of `from` that
/// `keep` accepts.
fn copy_files(from: &Path, to: &Path, keep: &dyn Fn(&Path) -> bool) -> Result<()> {
    ensure_dir(to)?;
    for entry in std::fs::read_dir(from).map_err(|e| Error::io(from, e))? {
        let p = entry.map_err(|e| Error::io(from, e))?.path();
        let name = p.file_name().expect("entry");
        let meta = std::fs::symlink_metadata(&p).map_err(|e| Error::io(&p, e))?;
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&p).map_err(|e| Error::io(&p, e))?;
            std::os::unix::fs::symlink(&target, to.join(name)).map_err(|e| Error::io(to, e))?;
        } else if meta.is_file() && keep(&p) {
            std::fs::copy(&p, to.join(name)).map_err(|e| Error::io(&p, e))?;
        }
    }
    Ok(())
}

/// Places the built tests, the runner and the stand-ins for journalctl and
/// uuidgen in an image root.
pub fn install(built: &Path, root: &Path) -> Result<()> {
    let dest = root.join(DIR);
    merge_tree(built, ensure_dir(&dest)?)?;
    write_file(&dest.join("run"), RUN, 0o755)?;
    write_file(&root.join("usr/bin/journalctl"), JOURNALCTL, 0o755)?;
    write_file(&root.join("usr/bin/uuidgen"), UUIDGEN, 0o755)?;
    write_file(&root.join("usr/bin/udevadm"), UDEVADM, 0o755)?;
    write_file(
        &root.join("usr/libexec/ndharness/cxl-test-region"),
        CXL_TEST_REGION,
        0o755,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(source_version("81-1"), "81-1");
        assert_eq!(source_version("81-1+b2"), "81-1");
        assert_eq!(source_version("1.0+bar-1"), "1.0+bar-1");
        assert_eq!(upstream_version("81-1"), "81");
        assert_eq!(upstream_version("1:2.3-4"), "2.3");
    }
}
