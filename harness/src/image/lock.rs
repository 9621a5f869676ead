//! Locking a recipe: its package closure resolved with a private apt (the
//! kernel from its own suite when the recipe names one, nfit_test's build
//! packages at exactly the kernel's version, ndctl's tests' source and build
//! root), every package downloaded into the store and pinned by version and
//! sha256 in the lock beside the recipe.

use std::path::Path;
use std::process::Command;

use crate::space;
use crate::stages::Stage;
use crate::tool::{self, Tool};

use super::apt::{kernel_parts, Archive, Dependencies, PrivateApt, Resolved};
use super::host::scratch_dir;
use super::recipe::{ImageFiles, Lock, LockedPackage, LockedSource, NdctlTestsLock, Recipe};
use super::store::{keep_ndctl_orig, store_deb};
use super::{ndctl_tests, nfit_test, sha256_file, BuildOptions, CacheLock, Error, Result};

/// The command an `Unavailable` error suggests while locking.
const RELOCK: &str = "ndharness image lock";

/// Resolves the recipe's closure with a private apt, downloads every package
/// into the cache, and writes the lock beside the recipe.
pub fn lock(files: &ImageFiles, opts: &BuildOptions) -> Result<Lock> {
    let _hold = CacheLock::acquire(&opts.cache)?;
    let recipe = &files.recipe;
    let what = format!("image {}", files.name);
    // The packages it downloads, and apt's lists.
    space::require(&opts.cache, space::IMAGE_BUILD, &format!("locking {what}"))?;
    let resolving = Stage::start(&what, "resolve: apt-get update, the package closure");
    let archive = Archive::discover(opts.mirror.as_deref())?;
    let apt = PrivateApt::new(&opts.cache, &archive, &recipe.suite, &recipe.components)?;
    apt.update()?;
    let kernel_suite = recipe.kernel.suite.clone().filter(|s| *s != recipe.suite);
    let kernel_apt = match &kernel_suite {
        Some(suite) => {
            let kernel_apt = PrivateApt::new(&opts.cache, &archive, suite, &recipe.components)?;
            kernel_apt.update()?;
            Some(kernel_apt)
        }
        None => None,
    };
    let kernel_from = kernel_apt.as_ref().unwrap_or(&apt);
    let kernel_suite_name = kernel_suite.as_deref().unwrap_or(&recipe.suite);
    let (kernel_name, kernel_version) =
        newest_match(kernel_from, &recipe.kernel.package, kernel_suite_name)?;
    let mut resolved = apt.resolve(&recipe.packages, Dependencies::Included)?;
    let part_names = kernel_parts(
        &kernel_from.depends(&kernel_name, &kernel_version)?,
        &kernel_version,
    );
    let kernel_names: Vec<String> = std::iter::once(kernel_name.clone())
        .chain(part_names.iter().cloned())
        .collect();
    let kernel_resolved = kernel_from.resolve(&kernel_names, Dependencies::Excluded)?;
    let downloads = scratch_dir(&opts.cache)?;
    let (build_names, build_resolved) = resolve_nfit_test_build(
        recipe,
        kernel_from,
        &kernel_name,
        &kernel_resolved,
        kernel_suite_name,
    )?;
    resolving.finish();
    let ndctl_tests = match &recipe.ndctl_tests {
        Some(tests) => Some(lock_ndctl_tests(
            opts,
            (&archive, &apt),
            recipe,
            &resolved,
            &tests.build_root,
            &what,
        )?),
        None => None,
    };
    let total = resolved.len() + kernel_resolved.len() + build_resolved.len();
    let mut fetching = Stage::counted(&what, &format!("download {total} packages"), total as u64);
    let dest = downloads.path();
    apt.download(&specs_of(&resolved), dest, RELOCK, &mut fetching)?;
    kernel_from.download(&specs_of(&kernel_resolved), dest, RELOCK, &mut fetching)?;
    kernel_from.download(&specs_of(&build_resolved), dest, RELOCK, &mut fetching)?;
    fetching.finish();
    resolved.extend(kernel_resolved);
    resolved.extend(build_resolved);
    let pinned = pin_all(
        &opts.cache,
        downloads.path(),
        resolved,
        (&kernel_name, &part_names),
        &build_names,
    )?;
    let lock = Lock {
        recipe_sha256: files.recipe_sha256(),
        suite: recipe.suite.clone(),
        kernel: pinned.kernel.ok_or_else(|| Error::NoKernel {
            pattern: recipe.kernel.package.clone(),
            suite: kernel_suite_name.to_owned(),
        })?,
        kernel_suite,
        kernel_parts: pinned.kernel_parts,
        kernel_build: pinned.kernel_build,
        packages: pinned.packages,
        ndctl_tests,
    };
    if recipe.kernel.nfit_test {
        nfit_test::check_versions(&lock.kernel, &lock.kernel_build)?;
    }
    files.write_lock(&lock)?;
    Ok(lock)
}

/// The packages nfit_test builds from (their names, and each resolved at
/// exactly the kernel's version); none when the recipe does not build it.
fn resolve_nfit_test_build(
    recipe: &Recipe,
    kernel_from: &PrivateApt,
    kernel_name: &str,
    kernel_resolved: &[Resolved],
    kernel_suite: &str,
) -> Result<(Vec<String>, Vec<Resolved>)> {
    if !recipe.kernel.nfit_test {
        return Ok((Vec::new(), Vec::new()));
    }
    let build_names = nfit_test::build_packages(kernel_name)?;
    let kernel_version = kernel_resolved
        .first()
        .map(|p| p.version.clone())
        .unwrap_or_default();
    let build_specs: Vec<String> = build_names
        .iter()
        .map(|name| format!("{name}={kernel_version}"))
        .collect();
    let build_resolved = if build_specs.is_empty() {
        Vec::new()
    } else {
        kernel_from
            .resolve(&build_specs, Dependencies::Excluded)
            .map_err(|e| {
                Error::Modules(format!(
                    "nfit_test needs {} at the kernel's version {kernel_version} in {kernel_suite}: {e}",
                    build_names.join(", "),
                ))
            })?
    };
    Ok((build_names, build_resolved))
}

/// The lock's packages, pinned and sorted into the kernel, the parts a 7.x
/// kernel metapackage is made of, nfit_test's build packages (in
/// [`nfit_test::build_packages`] order) and the rest (by name).
struct Pinned {
    kernel: Option<LockedPackage>,
    kernel_parts: Vec<LockedPackage>,
    kernel_build: Vec<LockedPackage>,
    packages: Vec<LockedPackage>,
}

fn pin_all(
    cache: &Path,
    downloads: &Path,
    resolved: Vec<Resolved>,
    (kernel_name, part_names): (&str, &[String]),
    build_names: &[String],
) -> Result<Pinned> {
    let mut pinned = Pinned {
        kernel: None,
        kernel_parts: Vec::new(),
        kernel_build: Vec::new(),
        packages: Vec::new(),
    };
    for package in resolved {
        let name = package.name.clone();
        let locked = pin(cache, downloads, package)?;
        if name == kernel_name {
            pinned.kernel = Some(locked);
        } else if part_names.contains(&name) {
            pinned.kernel_parts.push(locked);
        } else if build_names.contains(&name) {
            pinned.kernel_build.push(locked);
        } else {
            pinned.packages.push(locked);
        }
    }
    pinned.packages.sort();
    pinned.kernel_parts.sort();
    pinned
        .kernel_build
        .sort_by_key(|p| build_names.iter().position(|name| *name == p.name));
    Ok(pinned)
}

/// Pins what ndctl's tests build from: the upstream tarball of the
/// image's ndctl version and the build root's package closure.
fn lock_ndctl_tests(
    opts: &BuildOptions,
    (archive, apt): (&Archive, &PrivateApt),
    recipe: &Recipe,
    resolved: &[Resolved],
    build_root: &[String],
    what: &str,
) -> Result<NdctlTestsLock> {
    let ndctl = resolved.iter().find(|p| p.name == "ndctl").ok_or_else(|| {
        Error::Modules("ndctl_tests: the image's packages must include ndctl".into())
    })?;
    let version = ndctl_tests::source_version(&ndctl.version);
    let (file, size, sha256) = keep_ndctl_orig(opts, archive, recipe, &version, &|e| e)?;
    let downloads = scratch_dir(&opts.cache)?;
    let closure = apt.resolve(build_root, Dependencies::Included)?;
    let mut fetching = Stage::counted(
        what,
        &format!("download {} build root packages", closure.len()),
        closure.len() as u64,
    );
    apt.download(&specs_of(&closure), downloads.path(), RELOCK, &mut fetching)?;
    fetching.finish();
    let mut locked = closure
        .into_iter()
        .map(|p| pin(&opts.cache, downloads.path(), p))
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
fn specs_of(resolved: &[Resolved]) -> Vec<String> {
    resolved
        .iter()
        .map(|p| format!("{}={}", p.name, p.version))
        .collect()
}

/// Hashes a package downloaded into `dir`, keeps it in the cache, and pins it.
fn pin(cache: &Path, dir: &Path, package: Resolved) -> Result<LockedPackage> {
    let path = dir.join(&package.filename);
    let sha256 = sha256_file(&path)?;
    let size = std::fs::metadata(&path)
        .map_err(|e| Error::io(&path, e))?
        .len();
    store_deb(cache, &path, &sha256)?;
    Ok(LockedPackage {
        name: package.name,
        version: package.version,
        arch: package.arch,
        sha256,
        size,
    })
}

/// The newest package in the suite whose name matches `glob`, and its version.
fn newest_match(apt: &PrivateApt, glob: &str, suite: &str) -> Result<(String, String)> {
    let mut best: Option<(String, String)> = None;
    for name in apt.names_matching(glob)? {
        let version = apt.candidate(&name)?;
        let newer = match &best {
            None => true,
            Some((_, best_version)) => dpkg_version_gt(&version, best_version)?,
        };
        if newer {
            best = Some((name, version));
        }
    }
    best.ok_or_else(|| Error::NoKernel {
        pattern: glob.to_owned(),
        suite: suite.to_owned(),
    })
}

fn dpkg_version_gt(a: &str, b: &str) -> Result<bool> {
    let done = Tool::new(
        tool::DPKG_COMPARE,
        Command::new("dpkg").args(["--compare-versions", a, "gt", b]),
    )
    .output()?;
    Ok(done.status.success())
}
