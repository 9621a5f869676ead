//! Image recipes (`images/NAME.yaml`) and their locks (`images/NAME.lock`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Error, Result};
use crate::drivers::Function;

/// What a guest image is made of, as a person writes it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// Debian suite the guest's packages come from (for example `trixie`).
    pub suite: String,
    #[serde(default = "default_components")]
    pub components: Vec<String>,
    pub kernel: KernelSpec,
    /// Packages whose dependency closure goes into the initramfs.
    pub packages: Vec<String>,
    /// What the guests need from the kernel, by function
    /// ([`crate::drivers::Function`]): each function's modules are shipped
    /// with their dependencies; a required one the kernel has neither as a
    /// module nor built in fails the build, naming it.
    pub drivers: Vec<Function>,
    /// Functions shipped when the kernel has them, left out without an
    /// error when it does not: what only an optional feature needs (9p for
    /// `--share`), so that a user's kernel built without it still boots.
    #[serde(default)]
    pub optional_drivers: Vec<Function>,
    /// A line that follows the newest kernel its package pattern matches:
    /// `ndharness image refresh` (the nightly's first step) re-locks it.
    #[serde(default)]
    pub follows_newest: bool,
    /// Paths left out of the initramfs.
    #[serde(default)]
    pub strip: Vec<String>,
    /// The names `--kernel` and `--ndctl` select this image by.
    #[serde(default)]
    pub provides: Option<Provides>,
    /// Ship ndctl's own test suite, built from the source of the image's
    /// ndctl package in a build root of the guest's suite.
    #[serde(default)]
    pub ndctl_tests: Option<NdctlTestsSpec>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NdctlTestsSpec {
    /// Packages of the build root (with their dependencies): the compiler,
    /// meson and ndctl's build dependencies, from the guest's suite.
    pub build_root: Vec<String>,
}

/// What an image stands for on the command line: `--kernel debian-6.1`
/// picks the recipe whose `provides.kernel` is `debian-6.1` (and whose
/// ndctl is the default one), `--ndctl 76` the one with `provides.ndctl: "76"`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Provides {
    pub kernel: String,
    pub ndctl: String,
    /// Other names of the same ndctl (the Debian suite it comes from).
    #[serde(default)]
    pub ndctl_aliases: Vec<String>,
    /// Snapshot variants this image's trials read first, in order (README,
    /// "Snapshot variants"); the shared snapshots are the fallback.
    #[serde(default)]
    pub variants: Vec<String>,
}

fn default_components() -> Vec<String> {
    vec!["main".into()]
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KernelSpec {
    /// A glob (`*` only) over package names; the lock picks the newest match.
    pub package: String,
    /// The suite the kernel comes from, when not the guest's (for example
    /// bookworm's 6.1 under trixie's userland).
    #[serde(default)]
    pub suite: Option<String>,
    /// Build the kernel's mock NVDIMM bus (tools/testing/nvdimm) from the
    /// kernel's own headers and source, pinned beside it in the lock, and
    /// ship nfit_test with the modules.
    #[serde(default)]
    pub nfit_test: bool,
    /// Build the kernel from `package`, which is then a Debian source
    /// package (`linux-source-6.12`), with this configuration; its mock
    /// buses (nfit_test, cxl_test) are built with it.
    #[serde(default)]
    pub build: Option<KernelBuildSpec>,
}

/// A kernel built from Debian's source package.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KernelBuildSpec {
    /// The config fragment in images/, merged over tinyconfig.
    pub config: String,
    /// Patches in images/ applied to the unpacked source, in order, before
    /// the build (`patch -p1`): the smallest fix for a source that does not
    /// build as shipped, each with a header saying why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patches: Vec<String>,
}

/// Every package an image is built from, pinned by version and sha256.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    /// sha256 of what the lock was made from in the recipe (its suite,
    /// components, kernel, packages and ndctl tests: [`ImageFiles::recipe_sha256`]);
    /// the rest of a recipe (drivers, strip) changes the image, not the lock.
    pub recipe_sha256: String,
    pub suite: String,
    /// Where the kernel came from, when not `suite`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_suite: Option<String>,
    pub kernel: LockedPackage,
    /// What a 7.x kernel metapackage is made of (`linux-binary-VER`,
    /// `linux-modules-VER`, `linux-base-VER`); none for a 6.x kernel package.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kernel_parts: Vec<LockedPackage>,
    /// What the nfit_test modules are built from: the kernel's headers,
    /// kbuild tools and source, at the kernel's exact version.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kernel_build: Vec<LockedPackage>,
    pub packages: Vec<LockedPackage>,
    /// What ndctl's tests are built from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ndctl_tests: Option<NdctlTestsLock>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NdctlTestsLock {
    pub source: LockedSource,
    pub build_root: Vec<LockedPackage>,
}

/// An upstream tarball of a Debian source package.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LockedSource {
    pub file: String,
    /// The Debian source version it belongs to.
    pub version: String,
    pub sha256: String,
    pub size: u64,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(deny_unknown_fields)]
pub struct LockedPackage {
    pub name: String,
    pub version: String,
    pub arch: String,
    pub sha256: String,
    pub size: u64,
}

impl LockedPackage {
    pub fn spec(&self) -> String {
        format!("{}={}", self.name, self.version)
    }
}

/// A recipe on disk, with the paths of its files.
#[derive(Clone, Debug)]
pub struct ImageFiles {
    pub name: String,
    pub recipe_path: PathBuf,
    pub lock_path: PathBuf,
    pub recipe_text: String,
    pub recipe: Recipe,
}

impl ImageFiles {
    /// Loads `images/NAME.yaml` from `images_dir`.
    pub fn load(images_dir: &Path, name: &str) -> Result<ImageFiles> {
        let recipe_path = images_dir.join(format!("{name}.yaml"));
        if !recipe_path.exists() {
            return Err(Error::NoRecipe {
                name: name.to_owned(),
                path: recipe_path,
            });
        }
        let recipe_text =
            std::fs::read_to_string(&recipe_path).map_err(|e| Error::io(&recipe_path, e))?;
        let recipe = crate::yaml::parse(&recipe_path.display().to_string(), &recipe_text)?;
        Ok(ImageFiles {
            name: name.to_owned(),
            lock_path: images_dir.join(format!("{name}.lock")),
            recipe_path,
            recipe_text,
            recipe,
        })
    }

    /// sha256 of the recipe's inputs to the lock, in a canonical form.
    pub fn recipe_sha256(&self) -> String {
        #[derive(Serialize)]
        struct LockInputs<'a> {
            suite: &'a str,
            components: &'a [String],
            kernel: &'a KernelSpec,
            packages: &'a [String],
            ndctl_tests: &'a Option<NdctlTestsSpec>,
        }
        let recipe = &self.recipe;
        let inputs = LockInputs {
            suite: &recipe.suite,
            components: &recipe.components,
            kernel: &recipe.kernel,
            packages: &recipe.packages,
            ndctl_tests: &recipe.ndctl_tests,
        };
        let text = serde_yaml_ng::to_string(&inputs).expect("lock inputs serialize");
        super::sha256_hex(text.as_bytes())
    }

    /// Reads the lock, refusing one made from another version of the recipe.
    pub fn read_lock(&self) -> Result<(Lock, String)> {
        let relock = format!("ndharness image lock {}", self.name);
        let text = std::fs::read_to_string(&self.lock_path).map_err(|_| Error::NoLock {
            path: self.lock_path.clone(),
            relock: relock.clone(),
        })?;
        let lock: Lock = crate::yaml::parse(&self.lock_path.display().to_string(), &text)?;
        if lock.recipe_sha256 != self.recipe_sha256() {
            return Err(Error::StaleLock {
                recipe: self.recipe_path.clone(),
                lock: self.lock_path.clone(),
                relock,
            });
        }
        Ok((lock, text))
    }

    pub fn write_lock(&self, lock: &Lock) -> Result<()> {
        let body = serde_yaml_ng::to_string(lock).expect("a lock always serializes");
        let text = format!(
            "# Written by `ndharness image lock {}` from {}; do not edit by hand.\n{body}",
            self.name,
            self.recipe_path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
        );
        std::fs::write(&self.lock_path, text).map_err(|e| Error::io(&self.lock_path, e))
    }
}

/// `*` glob match, enough for package names.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || !name.ends_with(last) || name.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob() {
        let p = "linux-image-6.12.*+deb13-amd64-unsigned";
        assert!(glob_match(p, "linux-image-6.12.117+deb13-amd64-unsigned"));
        assert!(!glob_match(
            p,
            "linux-image-6.12.117+deb13-cloud-amd64-unsigned"
        ));
        assert!(!glob_match(p, "linux-image-6.1.0-37-amd64-unsigned"));
        assert!(glob_match("ndctl", "ndctl"));
    }

    #[test]
    fn shipped_recipe_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../images");
        let files = ImageFiles::load(&dir, "default").unwrap();
        assert_eq!(files.recipe.suite, "trixie");
        assert!(files.recipe.packages.iter().any(|p| p == "ndctl"));
    }
}
