//! The kernel's mock NVDIMM bus (`tools/testing/nvdimm`: nfit_test and the
//! libnvdimm, nfit, pmem and dax modules it wraps), built out of tree against
//! a Debian kernel's own headers and source, so interleaved NFIT regions exist
//! on a stock kernel.
//!
//! The four build packages are pinned beside the kernel in the lock and must
//! carry the kernel's exact Debian version: modules built from other sources
//! would load (the version magic matches within an ABI) and behave unlike the
//! kernel they are meant to test.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::host::{copy, dpkg_extract, ensure_dir, publish, run_tool, scratch_dir, walk};
use super::recipe::LockedPackage;
use super::{sha256_hex, Error, Result};
use crate::proof;
use crate::space;
use crate::stages::Stage;
use crate::tool;

/// Bumped when the way the modules are built changes.
const RECIPE: &str = "nfit_test 1";

/// Parts of the source tree the mock modules are built from.
const SOURCE_PARTS: &[&str] = &[
    "tools/testing/nvdimm",
    "drivers/nvdimm",
    "drivers/acpi/nfit",
    "drivers/dax",
];

/// `linux-image-6.12.95+deb12-amd64-unsigned` -> (`6.12.95+deb12`, `amd64`).
fn abi_and_flavour(kernel_package: &str) -> Option<(String, String)> {
    let rest = kernel_package.strip_prefix("linux-image-")?;
    let rest = rest.strip_suffix("-unsigned").unwrap_or(rest);
    let (abi, flavour) = rest.rsplit_once('-')?;
    // The ABI starts with the upstream version: MAJOR.MINOR...
    let mut nums = abi.split('.');
    let major = nums.next()?;
    let minor = nums.next()?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let minor_digits: String = minor.chars().take_while(char::is_ascii_digit).collect();
    if !digits(major) || minor_digits.is_empty() {
        return None;
    }
    Some((abi.to_owned(), flavour.to_owned()))
}

/// The packages the mock modules build from, for a kernel package: its
/// headers (flavour and common), kbuild tools and the source.
pub fn build_packages(kernel_package: &str) -> Result<Vec<String>> {
    let (abi, flavour) = abi_and_flavour(kernel_package).ok_or_else(|| {
        Error::Modules(format!(
            "nfit_test: `{kernel_package}` is not a Debian kernel image package \
             (linux-image-VERSION-FLAVOUR[-unsigned]); its headers and source cannot be named"
        ))
    })?;
    let series: String = abi.split('.').take(2).collect::<Vec<_>>().join(".");
    let series: String = series
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    // Kernels named by version (6.12.95+deb12) have kbuild tools of their
    // own; those named by ABI (6.1.0-50) share one per series.
    let kbuild = if abi.contains('+') {
        format!("linux-kbuild-{abi}")
    } else {
        format!("linux-kbuild-{series}")
    };
    Ok(vec![
        format!("linux-headers-{abi}-{flavour}"),
        format!("linux-headers-{abi}-common"),
        kbuild,
        format!("linux-source-{series}"),
    ])
}

/// Refuses build packages that are not exactly the kernel's version.
pub fn check_versions(kernel: &LockedPackage, build: &[LockedPackage]) -> Result<()> {
    let wanted = build_packages(&kernel.name)?;
    for name in &wanted {
        match build.iter().find(|p| &p.name == name) {
            None => {
                return Err(Error::Modules(format!(
                    "nfit_test: the lock has no {name}; run `ndharness image lock` again"
                )))
            }
            Some(p) if p.version != kernel.version => {
                return Err(Error::Modules(format!(
                    "nfit_test: {} is version {}, the kernel {} is {}: the mock modules \
                     must be built from the kernel's own headers and source",
                    p.name, p.version, kernel.name, kernel.version
                )))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// The mock modules for `kernel`, built once per kernel version and kept in
/// the cache: a folder of `.ko` files (debug info stripped) to place in the
/// kernel's `updates/`, where depmod prefers them over the real ones.
///
/// With `root` (the guest suite's build root, for a kernel of that suite)
/// the build runs there under chroot, with the compiler the kernel was
/// built with and kbuild tools linked against that suite's libc; without,
/// on the host (a kernel of the host's own release).
pub fn modules(
    cache: &Path,
    kernel: &LockedPackage,
    build: &[LockedPackage],
    root: Option<&[LockedPackage]>,
    deb: &dyn Fn(&LockedPackage) -> PathBuf,
) -> Result<PathBuf> {
    check_versions(kernel, build)?;
    let mut material = format!("{RECIPE}\n{}\n", kernel.sha256);
    for package in build.iter().chain(root.unwrap_or_default()) {
        material.push_str(&format!("{}\n", package.sha256));
    }
    let key = sha256_hex(material.as_bytes());
    let out = cache
        .join("nfit_test")
        .join(format!("{}-{}", kernel.version, &key[..12]));
    if proof::found(&out, "done", "nfit_test build") {
        return Ok(out);
    }
    let what = format!("building nfit_test against {}", kernel.name);
    space::require(cache, space::NFIT_TEST_BUILD, &what)?;
    let mut stage = Stage::start("nfit_test", &format!("build against {}", kernel.name));
    let work = scratch_dir(cache)?;
    let flavour_headers = &build_packages(&kernel.name)?[0];
    let started = std::time::Instant::now();
    let tree = Tree::prepare(work.path(), root, build, deb, flavour_headers)?;
    let src = unpack_source(&tree.path, ensure_dir(&tree.path.join("src"))?)?;
    make(&tree, &src, flavour_headers, &what, &mut stage)?;
    let built = work.path().join("out");
    let names = keep_modules(&src.join("tools/testing/nvdimm"), &built)?;
    let about = format!(
        "tools/testing/nvdimm of {} {}, built in {:.1} s\n{}\n",
        kernel.name,
        kernel.version,
        started.elapsed().as_secs_f64(),
        names.join("\n")
    );
    std::fs::write(built.join("done"), about).map_err(|e| Error::io(&built, e))?;
    proof::seal(&built)?;
    publish(&built, &out, "done", "modules")?;
    stage.finish();
    Ok(out)
}

/// Where the build runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Site {
    /// In a build root of the guest's suite, under chroot.
    Chroot,
    /// On the host, against headers unpacked in a folder.
    Host,
}

/// The folder the build happens in.
struct Tree {
    path: PathBuf,
    site: Site,
}

impl Tree {
    /// A build root of `root`'s packages and the `build` packages, or (no
    /// `root`) the `build` packages unpacked for the host.
    fn prepare(
        work: &Path,
        root: Option<&[LockedPackage]>,
        build: &[LockedPackage],
        deb: &dyn Fn(&LockedPackage) -> PathBuf,
        flavour_headers: &str,
    ) -> Result<Tree> {
        match root {
            Some(packages) => {
                let path = work.join("root");
                let all: Vec<&LockedPackage> = packages.iter().chain(build).collect();
                super::build_root::prepare(&path, &all, deb)?;
                Ok(Tree {
                    path,
                    site: Site::Chroot,
                })
            }
            None => {
                let path = work.join("tree");
                for package in build {
                    dpkg_extract(&deb(package), &path)?;
                }
                fix_headers(&path, flavour_headers)?;
                Ok(Tree {
                    path,
                    site: Site::Host,
                })
            }
        }
    }

    /// A path as the build sees it.
    fn seen(&self, path: &Path) -> String {
        match self.site {
            Site::Chroot => format!(
                "/{}",
                path.strip_prefix(&self.path).unwrap_or(path).display()
            ),
            Site::Host => path.display().to_string(),
        }
    }
}

/// Runs kbuild over `src`'s tools/testing/nvdimm against the flavour's
/// headers.
fn make(
    tree: &Tree,
    src: &Path,
    flavour_headers: &str,
    what: &str,
    stage: &mut Stage,
) -> Result<()> {
    let quote = crate::command_line::quote;
    let headers = tree.seen(&tree.path.join("usr/src").join(flavour_headers));
    let include = |part: &str| format!("-I{}", tree.seen(&src.join(part)));
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    // No BTF for the mock modules: it needs pahole, and nothing reads it.
    let kcflags = format!(
        "{} {} {}",
        include("drivers/nvdimm"),
        include("drivers/acpi/nfit"),
        include("drivers/dax")
    );
    let script = format!(
        "make -C {} M={} KCFLAGS={} CONFIG_DEBUG_INFO_BTF_MODULES= -j{jobs} modules",
        quote(&headers),
        quote(&tree.seen(&src.join("tools/testing/nvdimm"))),
        quote(&kcflags)
    );
    super::build_root::run(
        (tree.site == Site::Chroot).then_some(tree.path.as_path()),
        &script,
        what,
        tool::NFIT_TEST_MAKE,
        &mut |line| stage.item(line),
    )
    .map_err(|e| Error::Modules(format!("nfit_test: {e}")))
}

/// Copies the `.ko` files built under `module_dir` into `built`, debug info
/// stripped; their names, sorted. A build without nfit_test.ko failed.
fn keep_modules(module_dir: &Path, built: &Path) -> Result<Vec<String>> {
    ensure_dir(built)?;
    let mut modules = Vec::new();
    walk(module_dir, &mut |p, _| {
        if p.extension().is_some_and(|e| e == "ko") {
            modules.push(p.to_owned());
        }
    })?;
    let mut names = Vec::new();
    for path in modules {
        let name = path.file_name().expect("file").to_owned();
        let to = built.join(&name);
        copy(&path, &to)?;
        run_tool(
            Command::new("strip").arg("--strip-debug").arg(&to),
            tool::STRIP,
        )?;
        names.push(name.to_string_lossy().into_owned());
    }
    if !names.iter().any(|n| n == "nfit_test.ko") {
        return Err(Error::Modules(format!(
            "nfit_test: the build of {} made no nfit_test.ko (made: {names:?})",
            module_dir.display()
        )));
    }
    names.sort();
    Ok(names)
}

/// Points the flavour headers' Makefile, which includes the common headers'
/// Makefile by its installed absolute path, at the extracted copy.
fn fix_headers(tree: &Path, flavour_pkg: &str) -> Result<()> {
    let makefile = tree.join("usr/src").join(flavour_pkg).join("Makefile");
    let text = std::fs::read_to_string(&makefile).map_err(|e| Error::io(&makefile, e))?;
    let fixed: String = text
        .lines()
        .map(|l| match l.strip_prefix("include /usr/src/") {
            Some(rest) => format!("include {}/usr/src/{rest}", tree.display()),
            None => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&makefile, fixed + "\n").map_err(|e| Error::io(&makefile, e))
}

/// Unpacks the parts of `linux-source-X.Y.tar.xz` the build reads.
fn unpack_source(tree: &Path, work: &Path) -> Result<PathBuf> {
    let usr_src = tree.join("usr/src");
    let tarball = std::fs::read_dir(&usr_src)
        .map_err(|e| Error::io(&usr_src, e))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            name.starts_with("linux-source-") && name.ends_with(".tar.xz")
        })
        .ok_or_else(|| {
            Error::Modules(format!(
                "nfit_test: no linux-source-*.tar.xz in {}",
                usr_src.display()
            ))
        })?;
    let top = tarball
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .trim_end_matches(".tar.xz")
        .to_owned();
    let mut tar = Command::new("tar");
    tar.arg("-xJf").arg(&tarball).arg("-C").arg(work);
    for part in SOURCE_PARTS {
        tar.arg(format!("{top}/{part}"));
    }
    run_tool(&mut tar, tool::TAR)?;
    Ok(work.join(top))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(name: &str, version: &str) -> LockedPackage {
        LockedPackage {
            name: name.into(),
            version: version.into(),
            arch: "amd64".into(),
            sha256: "0".repeat(64),
            size: 1,
        }
    }

    #[test]
    fn names_follow_the_kernel_package() {
        assert_eq!(
            build_packages("linux-image-6.12.95+deb12-amd64-unsigned").unwrap(),
            [
                "linux-headers-6.12.95+deb12-amd64",
                "linux-headers-6.12.95+deb12-common",
                "linux-kbuild-6.12.95+deb12",
                "linux-source-6.12",
            ]
        );
        assert_eq!(
            build_packages("linux-image-6.1.0-50-amd64-unsigned").unwrap(),
            [
                "linux-headers-6.1.0-50-amd64",
                "linux-headers-6.1.0-50-common",
                "linux-kbuild-6.1",
                "linux-source-6.1",
            ]
        );
        assert!(build_packages("busybox-static").is_err());
    }

    #[test]
    fn a_version_mismatch_is_refused() {
        let v = "6.12.95-1~bpo12+1";
        let kernel = pkg("linux-image-6.12.95+deb12-amd64-unsigned", v);
        let mut build: Vec<LockedPackage> = build_packages(&kernel.name)
            .unwrap()
            .iter()
            .map(|n| pkg(n, v))
            .collect();
        check_versions(&kernel, &build).unwrap();
        build[3].version = "6.12.117-1~deb12u1".into();
        let e = check_versions(&kernel, &build).unwrap_err().to_string();
        assert!(
            e.contains("linux-source-6.12 is version 6.12.117-1~deb12u1"),
            "{e}"
        );
        build.pop();
        assert!(check_versions(&kernel, &build).is_err());
    }
}
