//! The user's own ndctl source tree (`--ndctl TREE`), built with its tests
//! in the guest suite's build root (the one ndctl's packaged tests are
//! built in, [`super::ndctl_tests`]), so that the guest runs that ndctl and
//! `ndctl::` runs that tree's `test/`. Cached under `ndctl-tests/tree-KEY`
//! by the tree's sources (paths, sizes, mtimes; `.git` and meson build
//! folders left out), the meson options and the build root
//! ([`super::ndctl_tests::build_key`]): `dest/` is the install (prefix
//! `/usr`), `tests/` what [`super::ndctl_tests::install`] ships.

use std::path::{Path, PathBuf};

use super::host::{ensure_dir, scratch_dir};
use super::ndctl_tests::{build_key, compile, publish_build, stage_tests, Install};
use super::recipe::{LockedPackage, NdctlTestsLock};
use super::{sha256_hex, Error, Result};
use crate::proof;
use crate::space;
use crate::stages::Stage;

/// Bumped when the way a tree is built changes.
const RECIPE: &str = "ndctl tree 1";

/// Where the tree is copied in the build root (`/src/ndctl`).
const TOP: &str = "ndctl";

/// Whether `dir` is an ndctl source tree (its `meson.build` and `ndctl/`),
/// not the DESTDIR of an install.
pub fn is_tree(dir: &Path) -> bool {
    dir.join("meson.build").is_file() && dir.join("ndctl").is_dir()
}

/// A built tree: the install and the tests.
#[derive(Debug)]
pub struct BuiltTree {
    /// What `meson install` put under its DESTDIR (prefix `/usr`).
    pub dest: PathBuf,
    /// The tests, laid out as the packaged tests are.
    pub tests: PathBuf,
}

/// Builds `tree` (or finds it built) in the build root of `lock`.
pub fn build(
    cache: &Path,
    tree: &Path,
    lock: &NdctlTestsLock,
    deb: &dyn Fn(&LockedPackage) -> PathBuf,
) -> Result<BuiltTree> {
    let key = build_key(RECIPE, &fingerprint(tree)?, lock);
    let out = cache
        .join("ndctl-tests")
        .join(format!("tree-{}", &key[..12]));
    let built = BuiltTree {
        dest: out.join("dest"),
        tests: out.join("tests"),
    };
    if proof::found(&out, "done", "ndctl tree build") {
        return Ok(built);
    }
    space::require(cache, space::NDCTL_TESTS_BUILD, "building your ndctl tree")?;
    let started = std::time::Instant::now();
    let what = format!("ndctl tree {}", tree.display());
    let stage = Stage::start(
        &what,
        "build it and its tests in the guest suite's build root",
    );
    let work = scratch_dir(cache)?;
    let root = work.path().join("root");
    let packages: Vec<&LockedPackage> = lock.build_root.iter().collect();
    super::build_root::prepare(&root, &packages, deb)?;
    copy_sources(tree, &root.join("src").join(TOP))?;
    let version = project_version(tree).unwrap_or_else(|| "tree".to_owned());
    compile(&root, TOP, &version, Install::IntoDest)?;
    let staged = work.path().join("out");
    stage_tests(&root, TOP, &staged.join("tests"))?;
    let dest = root.join("dest");
    if !dest.join("usr/bin/ndctl").is_file() {
        return Err(Error::io(
            &dest,
            std::io::Error::other(format!("{what}: meson install gave no usr/bin/ndctl")),
        ));
    }
    std::fs::rename(&dest, staged.join("dest")).map_err(|e| Error::io(&dest, e))?;
    let about = format!(
        "{what} (version {version}) and its tests, built in {:.1} s\n",
        started.elapsed().as_secs_f64()
    );
    publish_build(&staged, &out, &about, "ndctl tree")?;
    stage.finish();
    Ok(built)
}

/// Whether an entry of the tree is left out of the copy and the
/// fingerprint: `.git`, and meson build folders (they hold
/// `meson-private`), which the guest's build does not use.
fn left_out(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n == ".git") || path.join("meson-private").is_dir()
}

/// Paths, sizes and mtimes of the tree's sources: an edit changes at
/// least one of them.
pub fn fingerprint(tree: &Path) -> Result<String> {
    let mut lines = Vec::new();
    visit(tree, tree, &mut |rel, md| {
        let mtime = md
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
        lines.push(format!("{} {} {:?}", rel.display(), md.len(), mtime));
        Ok(())
    })?;
    lines.sort();
    Ok(sha256_hex(lines.join("\n").as_bytes()))
}

/// Copies the tree's sources (symlinks as links) to `to`.
fn copy_sources(tree: &Path, to: &Path) -> Result<()> {
    ensure_dir(to)?;
    visit(tree, tree, &mut |rel, md| {
        let (from, dest) = (tree.join(rel), to.join(rel));
        if let Some(parent) = dest.parent() {
            ensure_dir(parent)?;
        }
        if md.file_type().is_symlink() {
            let target = std::fs::read_link(&from).map_err(|e| Error::io(&from, e))?;
            std::os::unix::fs::symlink(target, &dest).map_err(|e| Error::io(&dest, e))?;
        } else {
            std::fs::copy(&from, &dest).map_err(|e| Error::io(&from, e))?;
        }
        Ok(())
    })
}

/// Calls `each` with the path (relative to `tree`) and metadata of every
/// file and symlink under `dir`, but what [`left_out`] leaves out.
fn visit(
    tree: &Path,
    dir: &Path,
    each: &mut dyn FnMut(&Path, &std::fs::Metadata) -> Result<()>,
) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        if left_out(&path) {
            continue;
        }
        let md = std::fs::symlink_metadata(&path).map_err(|e| Error::io(&path, e))?;
        if md.is_dir() {
            visit(tree, &path, each)?;
        } else {
            each(path.strip_prefix(tree).expect("under the tree"), &md)?;
        }
    }
    Ok(())
}

/// The `version :` of the tree's `project(...)` in meson.build.
fn project_version(tree: &Path) -> Option<String> {
    let text = std::fs::read_to_string(tree.join("meson.build")).ok()?;
    let at = text.find("version")?;
    let rest = text[at + "version".len()..]
        .trim_start()
        .strip_prefix(':')?;
    let quoted = rest.trim_start().strip_prefix('\'')?;
    Some(quoted.split('\'').next()?.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(root: &Path) -> PathBuf {
        let t = root.join("ndctl");
        std::fs::create_dir_all(t.join("ndctl")).unwrap();
        std::fs::create_dir_all(t.join("test")).unwrap();
        std::fs::create_dir_all(t.join(".git")).unwrap();
        std::fs::create_dir_all(t.join("build/meson-private")).unwrap();
        std::fs::write(
            t.join("meson.build"),
            "project('ndctl', 'c',\n  version : '85',\n  license : [])\n",
        )
        .unwrap();
        std::fs::write(t.join("ndctl/ndctl.c"), "int main;\n").unwrap();
        std::fs::write(t.join(".git/HEAD"), "ref\n").unwrap();
        std::fs::write(t.join("build/build.ninja"), "x\n").unwrap();
        t
    }

    #[test]
    fn a_source_tree_is_told_from_a_destdir_and_its_version_read() {
        let tmp = tempfile::tempdir().unwrap();
        let t = tree(tmp.path());
        assert!(is_tree(&t));
        assert!(!is_tree(tmp.path()));
        assert_eq!(project_version(&t).as_deref(), Some("85"));
    }

    #[test]
    fn the_fingerprint_follows_sources_not_git_or_build_folders() {
        let tmp = tempfile::tempdir().unwrap();
        let t = tree(tmp.path());
        let before = fingerprint(&t).unwrap();
        std::fs::write(t.join(".git/HEAD"), "other ref\n").unwrap();
        std::fs::write(t.join("build/build.ninja"), "rebuilt\n").unwrap();
        assert_eq!(fingerprint(&t).unwrap(), before);
        std::fs::write(t.join("ndctl/ndctl.c"), "int main(void);\n").unwrap();
        assert_ne!(fingerprint(&t).unwrap(), before);
        let copy = tmp.path().join("copy");
        copy_sources(&t, &copy).unwrap();
        assert!(copy.join("ndctl/ndctl.c").is_file() && copy.join("meson.build").is_file());
        assert!(!copy.join(".git").exists() && !copy.join("build").exists());
    }
}
