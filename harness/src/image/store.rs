//! The cache's store of what a lock pins: `.deb` files kept under their
//! sha256 (`debs/`), and ndctl's upstream source tarball (`sources/`).
//! A build fetches what is missing through a private apt and checks every
//! file against the lock before keeping it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::apt::{parse_deb_filename, Archive, PrivateApt};
use super::host::{copy_whole, ensure_dir, scratch_dir};
use super::recipe::{ImageFiles, Lock, LockedPackage, NdctlTestsLock, Recipe};
use super::{ndctl_tests, sha256_file, BuildOptions, Error, Result};
use crate::stages::Stage;

/// Where the package with `sha256` is kept.
pub(super) fn deb_path(cache: &Path, sha256: &str) -> PathBuf {
    cache.join("debs").join(format!("{sha256}.deb"))
}

/// Keeps a downloaded package (already hashed to `sha256`) in the store.
pub(super) fn store_deb(cache: &Path, path: &Path, sha256: &str) -> Result<()> {
    let dest = deb_path(cache, sha256);
    ensure_dir(dest.parent().expect("debs folder"))?;
    if std::fs::rename(path, &dest).is_err() {
        copy_whole(path, &dest)?;
    }
    Ok(())
}

/// Downloads the `wanted` packages the store lacks, from the suites the
/// lock names, and keeps each whose sha256 matches the lock.
pub(super) fn fetch_missing(
    files: &ImageFiles,
    opts: &BuildOptions,
    lock: &Lock,
    wanted: &[&LockedPackage],
) -> Result<()> {
    let missing: Vec<&LockedPackage> = wanted
        .iter()
        .copied()
        .filter(|p| !deb_path(&opts.cache, &p.sha256).exists())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let archive = Archive::discover(opts.mirror.as_deref())?;
    let downloads = scratch_dir(&opts.cache)?;
    let mut stage = Stage::counted(
        &format!("image {}", files.name),
        &format!("download {} packages", missing.len()),
        missing.len() as u64,
    );
    download(
        files,
        opts,
        (&archive, lock),
        &missing,
        downloads.path(),
        &mut stage,
    )?;
    stage.finish();
    keep_matching(&opts.cache, &missing, downloads.path())?;
    if let Some(package) = missing
        .iter()
        .find(|p| !deb_path(&opts.cache, &p.sha256).exists())
    {
        return Err(Error::Unavailable {
            detail: format!("{} was not downloaded", package.spec()),
            relock: format!("ndharness image lock {}", files.name),
        });
    }
    Ok(())
}

/// Downloads `missing` into `dest`: the kernel's packages from the kernel's
/// suite when it has one of its own, the rest from the image's.
fn download(
    files: &ImageFiles,
    opts: &BuildOptions,
    (archive, lock): (&Archive, &Lock),
    missing: &[&LockedPackage],
    dest: &Path,
    stage: &mut Stage,
) -> Result<()> {
    let relock = format!("ndharness image lock {}", files.name);
    let (kernel, rest): (Vec<&LockedPackage>, Vec<&LockedPackage>) =
        missing.iter().partition(|p| {
            lock.kernel_suite.is_some()
                && (p.sha256 == lock.kernel.sha256
                    || lock.kernel_parts.iter().any(|b| b.sha256 == p.sha256)
                    || lock.kernel_build.iter().any(|b| b.sha256 == p.sha256))
        });
    for (suite, batch) in [
        (lock.suite.as_str(), rest),
        (lock.kernel_suite.as_deref().unwrap_or(&lock.suite), kernel),
    ] {
        if batch.is_empty() {
            continue;
        }
        let apt = PrivateApt::new(&opts.cache, archive, suite, &files.recipe.components)?;
        apt.update()?;
        let specs: Vec<String> = batch.iter().map(|p| p.spec()).collect();
        apt.download(&specs, dest, &relock, stage)?;
    }
    Ok(())
}

/// Keeps each package downloaded into `dir` that is one of `missing`,
/// refusing one whose bytes differ from the lock's.
fn keep_matching(cache: &Path, missing: &[&LockedPackage], dir: &Path) -> Result<()> {
    let by_name: BTreeMap<&str, &LockedPackage> =
        missing.iter().map(|p| (p.name.as_str(), *p)).collect();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        let file_name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let Some((name, ..)) = parse_deb_filename(&file_name) else {
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
        store_deb(cache, &path, &actual)?;
    }
    Ok(())
}

/// Fetches the ndctl source tarball the lock pins, when not in the cache.
pub(super) fn fetch_ndctl_source(
    files: &ImageFiles,
    opts: &BuildOptions,
    tests: &NdctlTestsLock,
) -> Result<()> {
    let source = &tests.source;
    let kept = ndctl_tests::source_path(&opts.cache, &source.sha256, &source.file);
    if kept.exists() {
        return Ok(());
    }
    let archive = Archive::discover(opts.mirror.as_deref())?;
    let (file, _, sha256) =
        keep_ndctl_orig(opts, &archive, &files.recipe, &source.version, &|e| {
            Error::Unavailable {
                detail: format!("ndctl source {}: {e}", source.version),
                relock: format!("ndharness image lock {}", files.name),
            }
        })?;
    if sha256 != source.sha256 {
        return Err(Error::Checksum {
            name: file,
            version: source.version.clone(),
            expected: source.sha256.clone(),
            actual: sha256,
        });
    }
    Ok(())
}

/// Fetches ndctl's upstream tarball at source `version` through the guest
/// suite's deb-src index and keeps it in the cache under its sha256:
/// (file name, size, sha256). `on_fetch` maps a failed fetch.
pub(super) fn keep_ndctl_orig(
    opts: &BuildOptions,
    archive: &Archive,
    recipe: &Recipe,
    version: &str,
    on_fetch: &dyn Fn(Error) -> Error,
) -> Result<(String, u64, String)> {
    let downloads = scratch_dir(&opts.cache)?;
    let sources = PrivateApt::sources(&opts.cache, archive, &recipe.suite, &recipe.components)?;
    sources.update()?;
    let (file, size, sha256) = sources
        .fetch_orig("ndctl", version, downloads.path())
        .map_err(on_fetch)?;
    let kept = ndctl_tests::source_path(&opts.cache, &sha256, &file);
    ensure_dir(kept.parent().expect("folder"))?;
    copy_whole(&downloads.path().join(&file), &kept)?;
    Ok((file, size, sha256))
}
