//! Which guest a run boots: `--kernel`, `--modules`, `--ndctl`, `--image`
//! and `--kernel-tree` (built first) resolved to an image recipe plus the
//! user's own builds; `compare`'s `key=value` specs parsed.
//!
//! Names come from the recipes themselves (`provides:` in images/*.yaml),
//! so a new kernel or ndctl version is a new recipe, not new code.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::image::{ImageFiles, UserKernel};

mod versions;
use crate::kbuild::MockBuses;
use crate::suite::GuestNames;
use versions::{kernel_release, variants_of_version};

/// What the user asked for, before resolution.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// An image recipe by name (images/NAME.yaml).
    pub image: Option<String>,
    /// A kernel name (`debian-6.1`) or the path of a bzImage.
    pub kernel: Option<String>,
    /// `INSTALL_MOD_PATH` of the user's kernel.
    pub modules: Option<PathBuf>,
    /// An ndctl name (`76`, `bookworm`) or the DESTDIR of the user's build.
    pub ndctl: Option<String>,
    /// A kernel source tree to build (see [`crate::kbuild`]).
    pub kernel_tree: Option<PathBuf>,
    /// A full `.config` for the tree, instead of tinyconfig and the
    /// guests' fragment.
    pub kernel_config: Option<PathBuf>,
    /// `start=cold`: boot every guest instead of restoring a saved state.
    pub cold: bool,
}

/// A selection whose kernel tree, if it named one, is built and stands in
/// for `--kernel BZIMAGE --modules DIR`: what [`BuiltSelection::resolve`]
/// takes. Only [`Selection::build_tree`] makes one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuiltSelection {
    /// Its `kernel_tree` is always `None`.
    selection: Selection,
}

/// A selection resolved against images/.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub image: String,
    pub user_kernel: Option<UserKernel>,
    pub user_ndctl: Option<PathBuf>,
    /// Snapshot variants to read first, in order.
    pub variants: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("--kernel {0} is a path, so it is your own bzImage: give its modules with --modules DIR (the INSTALL_MOD_PATH of `make modules_install`)")]
    KernelWithoutModules(String),
    #[error("--modules goes with --kernel BZIMAGE (your own kernel); --kernel {0} names a packaged kernel, which brings its own")]
    ModulesWithoutKernelPath(String),
    #[error("--image {image} and --{flag} {value} both choose the image: give one (--image names a recipe; --kernel and --ndctl pick the recipe that provides them)")]
    Conflict {
        image: String,
        flag: &'static str,
        value: String,
    },
    #[error("no image provides kernel `{kernel}` with ndctl `{ndctl}`; images/ has: {available}")]
    NoImage {
        kernel: String,
        ndctl: String,
        available: Available,
    },
    #[error(
        "--kernel-tree builds the kernel; --kernel {0} would be a second one: give one of them"
    )]
    TreeAndKernel(String),
    #[error("bad guest `{spec}`: {reason} (forms: KERNEL, image=NAME, kernel=NAME|BZIMAGE, modules=DIR, tree=DIR, ndctl=NAME|DIR, start=cold|warm, joined by commas)")]
    BadSpec { spec: String, reason: String },
    #[error(transparent)]
    KernelTree(#[from] crate::kbuild::Error),
    /// The tree's overlay (what is built instead of the tree itself).
    #[error(transparent)]
    Overlay(#[from] crate::overlay::Error),
    #[error("{}: {error}", path.display())]
    ImagesDir {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{0}")]
    Recipe(crate::image::Error),
}

/// The (kernel, ndctl) pairs the recipes provide, for error messages.
#[derive(Debug, PartialEq, Eq)]
pub struct Available(pub Vec<(String, String, String)>);

impl fmt::Display for Available {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let items: Vec<String> = self
            .0
            .iter()
            .map(|(image, k, n)| format!("{image} (--kernel {k} --ndctl {n})"))
            .collect();
        f.write_str(&items.join(", "))
    }
}

/// The recipe `--kernel` and `--ndctl` fall back to.
pub const DEFAULT_IMAGE: &str = "default";

fn is_path(s: &str) -> bool {
    s.contains('/') || Path::new(s).exists()
}

impl Selection {
    /// Parses a guest as `compare` takes it: `debian-6.1` (a kernel or image
    /// name), or `key=value` pairs joined by commas
    /// (`kernel=debian-6.12,ndctl=76`, `kernel=PATH,modules=DIR`).
    pub fn parse(spec: &str) -> Result<Selection, Error> {
        let bad = |reason: String| Error::BadSpec {
            spec: spec.to_owned(),
            reason,
        };
        let mut sel = Selection::default();
        if !spec.contains('=') {
            if spec.is_empty() || spec.contains(',') {
                return Err(bad("empty, or a list without keys".into()));
            }
            sel.kernel = Some(spec.to_owned());
            return Ok(sel);
        }
        for part in spec.split(',') {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| bad(format!("`{part}` is not key=value")))?;
            if v.is_empty() {
                return Err(bad(format!("`{k}` has no value")));
            }
            let slot = match k {
                "image" => &mut sel.image,
                "kernel" => &mut sel.kernel,
                "ndctl" => &mut sel.ndctl,
                "modules" => {
                    sel.modules = Some(PathBuf::from(v));
                    continue;
                }
                "tree" => {
                    sel.kernel_tree = Some(PathBuf::from(v));
                    continue;
                }
                "config" => {
                    sel.kernel_config = Some(PathBuf::from(v));
                    continue;
                }
                "start" => {
                    sel.cold = match v {
                        "cold" => true,
                        "warm" => false,
                        _ => return Err(bad(format!("start is cold or warm, not `{v}`"))),
                    };
                    continue;
                }
                _ => return Err(bad(format!("unknown key `{k}`"))),
            };
            if slot.replace(v.to_owned()).is_some() {
                return Err(bad(format!("`{k}` given twice")));
            }
        }
        Ok(sel)
    }

    /// Builds `kernel_tree` (when given) and stands its kernel and modules
    /// in for `--kernel BZIMAGE --modules DIR`: the step before
    /// [`BuiltSelection::resolve`].
    pub fn build_tree(mut self, images_dir: &Path, cache: &Path) -> Result<BuiltSelection, Error> {
        let Some(tree) = self.kernel_tree.take() else {
            return Ok(BuiltSelection { selection: self });
        };
        if let Some(k) = &self.kernel {
            return Err(Error::TreeAndKernel(k.clone()));
        }
        let config = match self.kernel_config.take() {
            Some(full) => crate::kbuild::KernelConfig::Full(full),
            None => crate::kbuild::KernelConfig::Fragment(images_dir.join(crate::kbuild::FRAGMENT)),
        };
        // Built in its overlay: the mock buses' builds write into the
        // source tree, and the user's tree is never written.
        let mut overlay = crate::overlay::Overlay::for_tree(cache, &tree)?;
        overlay.sync()?;
        let built = crate::kbuild::build(&overlay.src(), &config, cache)?;
        eprintln!(
            "kernel tree {}: {} built in {:.0}s",
            tree.display(),
            built.release,
            built.seconds
        );
        self.kernel = Some(built.bzimage.display().to_string());
        self.modules = Some(built.modules);
        Ok(BuiltSelection { selection: self })
    }
}

impl BuiltSelection {
    /// Picks the recipe and the user's builds. A bare kernel name that is no
    /// recipe's kernel but is an image's name selects that image.
    pub fn resolve(&self, images_dir: &Path) -> Result<Resolved, Error> {
        let mut resolved = self.resolve_recipe(images_dir)?;
        // A kernel of the user's reads the snapshot variants of the named
        // line of its version (what that version changed, reviewed there).
        if let (Some(user), true) = (&resolved.user_kernel, resolved.variants.is_empty()) {
            if let Some(release) = kernel_release(&user.modules) {
                resolved.variants = variants_of_version(images_dir, &release);
            }
        }
        Ok(resolved)
    }

    fn resolve_recipe(&self, images_dir: &Path) -> Result<Resolved, Error> {
        let wanted = &self.selection;
        let recipes = provided(images_dir)?;
        let kernel_path = wanted.kernel.as_deref().filter(|k| is_path(k));
        let ndctl_path = wanted.ndctl.as_deref().filter(|n| is_path(n));
        let user_kernel = match (kernel_path, &wanted.modules) {
            (Some(k), Some(m)) => Some(UserKernel {
                bzimage: PathBuf::from(k),
                modules: m.clone(),
            }),
            (Some(k), None) => return Err(Error::KernelWithoutModules(k.to_owned())),
            (None, Some(_)) => {
                return Err(Error::ModulesWithoutKernelPath(
                    wanted.kernel.clone().unwrap_or_else(|| "(none)".into()),
                ))
            }
            (None, None) => None,
        };
        let kernel_name = wanted.kernel.as_deref().filter(|k| !is_path(k));
        let ndctl_name = wanted.ndctl.as_deref().filter(|n| !is_path(n));
        // A bare name that is an image and no kernel: the image.
        let mut image = wanted.image.clone();
        let mut kernel_name = kernel_name.map(str::to_owned);
        if let Some(k) = &kernel_name {
            if image.is_none()
                && ndctl_name.is_none()
                && !recipes.iter().any(|r| r.1.kernel == *k)
                && recipes.iter().any(|r| r.0 == *k)
            {
                image = kernel_name.take();
            }
        }
        let variants_of = |name: &str| {
            recipes
                .iter()
                .find(|r| r.0 == name)
                .map(|r| r.1.variants.clone())
                .unwrap_or_default()
        };
        if let Some(image) = image {
            for (flag, value) in [
                ("kernel", &kernel_name),
                ("ndctl", &ndctl_name.map(str::to_owned)),
            ] {
                if let Some(value) = value {
                    return Err(Error::Conflict {
                        image: image.clone(),
                        flag,
                        value: value.clone(),
                    });
                }
            }
            return Ok(Resolved {
                variants: variants_of(&image),
                image,
                user_kernel,
                user_ndctl: ndctl_path.map(PathBuf::from),
            });
        }
        let default = recipes.iter().find(|r| r.0 == DEFAULT_IMAGE);
        let want_kernel = kernel_name
            .or_else(|| default.map(|r| r.1.kernel.clone()))
            .unwrap_or_default();
        let want_ndctl = ndctl_name
            .map(str::to_owned)
            .or_else(|| default.map(|r| r.1.ndctl.clone()))
            .unwrap_or_default();
        let found = recipes.iter().find(|(_, p)| {
            p.kernel == want_kernel
                && (p.ndctl == want_ndctl || p.ndctl_aliases.contains(&want_ndctl))
        });
        match found {
            Some((name, p)) => Ok(Resolved {
                image: name.clone(),
                user_kernel,
                user_ndctl: ndctl_path.map(PathBuf::from),
                variants: p.variants.clone(),
            }),
            None => Err(Error::NoImage {
                kernel: want_kernel,
                ndctl: want_ndctl,
                available: Available(
                    recipes
                        .iter()
                        .map(|(n, p)| (n.clone(), p.kernel.clone(), p.ndctl.clone()))
                        .collect(),
                ),
            }),
        }
    }
}

/// The image the trials that need a mock bus or ndctl's own tests run on
/// (`nfit_test`, `cxl_test` topologies, `ndctl::`), and the mock buses its
/// kernel has: the run's own image when its recipe builds them, else the
/// recipe that builds nfit_test for the same kernel and userland; for the
/// user's kernel, the recipe that ships the tests' userland (its kernel
/// replaced by the user's), when the user's modules hold a mock bus. None
/// when no image can run them (the user's own ndctl installed by hand:
/// the tests are built for the packaged one; an ndctl tree brings its
/// own, [`crate::image::ndctl_tree`]).
pub fn test_image(images_dir: &Path, resolved: &Resolved) -> Option<(String, MockBuses)> {
    let user_destdir = resolved
        .user_ndctl
        .as_deref()
        .is_some_and(|dir| !crate::image::ndctl_tree::is_tree(dir));
    if user_destdir {
        return None;
    }
    let recipe = |name: &str| ImageFiles::load(images_dir, name).ok().map(|f| f.recipe);
    if let Some(kernel) = &resolved.user_kernel {
        let mocks = user_mock_buses(&kernel.modules);
        if !(mocks.nfit_test || mocks.cxl_test) {
            return None;
        }
        let with_tests = recipe_names(images_dir).ok()?.into_iter().find(|n| {
            recipe(n).is_some_and(|r| r.kernel.build.is_some() && r.ndctl_tests.is_some())
        })?;
        return Some((with_tests, mocks));
    }
    let image = resolved.image.as_str();
    let own = recipe(image)?;
    if own.kernel.build.is_some() {
        let both = MockBuses {
            nfit_test: true,
            cxl_test: true,
        };
        return Some((image.to_owned(), both));
    }
    let nfit_only = MockBuses {
        nfit_test: true,
        cxl_test: false,
    };
    if own.kernel.nfit_test {
        return Some((image.to_owned(), nfit_only));
    }
    // The same kernel under the same userland (and so the same ndctl).
    let kernel_of = |r: &crate::image::Recipe| {
        (
            r.kernel.package.clone(),
            r.kernel.suite.clone().unwrap_or_else(|| r.suite.clone()),
            r.suite.clone(),
        )
    };
    recipe_names(images_dir)
        .ok()?
        .into_iter()
        .find(|n| recipe(n).is_some_and(|r| r.kernel.nfit_test && kernel_of(&r) == kernel_of(&own)))
        .map(|n| (n, nfit_only))
}

/// The mock buses among the user's modules (`INSTALL_MOD_PATH`): their
/// modules, installed by `--kernel-tree` or by hand.
fn user_mock_buses(install_mod_path: &Path) -> MockBuses {
    let mut found = MockBuses::default();
    let mut stack = vec![install_mod_path.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() && !path.is_symlink() {
                stack.push(path);
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            found.nfit_test |= name.starts_with("nfit_test.ko");
            found.cxl_test |= name.starts_with("cxl_test.ko");
        }
    }
    found
}

/// The names of the guest a resolved selection boots, as `ignored:`
/// entries name it: the recipe's `provides` (or, for a recipe without one,
/// those of a recipe with the same kernel and userland), `own` for the
/// user's builds.
pub fn guest_names(images_dir: &Path, resolved: &Resolved) -> GuestNames {
    let recipe = |name: &str| ImageFiles::load(images_dir, name).ok().map(|f| f.recipe);
    let provides = recipe(&resolved.image).and_then(|own| {
        own.provides.clone().or_else(|| {
            let same = |r: &crate::image::Recipe| {
                r.kernel.package == own.kernel.package && r.suite == own.suite
            };
            recipe_names(images_dir)
                .ok()?
                .into_iter()
                .filter_map(|n| recipe(&n))
                .find(|r| r.provides.is_some() && same(r))
                .and_then(|r| r.provides)
        })
    });
    let kernel = match (&resolved.user_kernel, &provides) {
        (Some(_), _) => GuestNames::OWN.to_owned(),
        (None, Some(p)) => p.kernel.clone(),
        (None, None) => resolved.image.clone(),
    };
    let ndctl = match (&resolved.user_ndctl, &provides) {
        (Some(_), _) => vec![GuestNames::OWN.to_owned()],
        (None, Some(p)) => std::iter::once(p.ndctl.clone())
            .chain(p.ndctl_aliases.iter().cloned())
            .collect(),
        (None, None) => Vec::new(),
    };
    GuestNames { kernel, ndctl }
}

/// The recipes in images/, by name, sorted.
fn recipe_names(images_dir: &Path) -> std::io::Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(images_dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".yaml").map(str::to_owned)
        })
        .collect();
    names.sort();
    Ok(names)
}

/// Every recipe in `images_dir` that says what it provides, by name.
fn provided(images_dir: &Path) -> Result<Vec<(String, crate::image::Provides)>, Error> {
    let names = recipe_names(images_dir).map_err(|error| Error::ImagesDir {
        path: images_dir.to_owned(),
        error,
    })?;
    let mut out = Vec::new();
    for name in names {
        let files = ImageFiles::load(images_dir, &name).map_err(Error::Recipe)?;
        if let Some(p) = files.recipe.provides {
            out.push((name, p));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn images() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../images")
    }

    /// Builds the selection's kernel tree, if any (no test gives one that
    /// would build, so the cache is never read), and resolves it.
    fn resolve(sel: Selection) -> Result<Resolved, Error> {
        sel.build_tree(&images(), Path::new("/nonexistent-cache"))?
            .resolve(&images())
    }

    fn pick(sel: Selection) -> Result<String, Error> {
        resolve(sel).map(|r| r.image)
    }

    #[test]
    fn names_pick_the_shipped_images() {
        let k = |s: &str| Selection {
            kernel: Some(s.into()),
            ..Default::default()
        };
        assert_eq!(pick(Selection::default()).unwrap(), "default");
        // nfit_test trials: the image that builds nfit_test for the run's
        // kernel and userland, none for a kernel or ndctl of the user's.
        let on = |image: &str| Resolved {
            image: image.into(),
            user_kernel: None,
            user_ndctl: None,
            variants: Vec::new(),
        };
        let test_image = |r: &Resolved| test_image(&images(), r).map(|(name, _)| name);
        assert_eq!(test_image(&on("default")).as_deref(), Some("nfit-test"));
        assert_eq!(test_image(&on("nfit-test")).as_deref(), Some("nfit-test"));
        assert_eq!(
            test_image(&on("debian-6.1")).as_deref(),
            Some("nfit-test-6.1")
        );
        assert_eq!(test_image(&on("mock")).as_deref(), Some("mock"));
        let mocks = super::test_image(&images(), &on("mock")).unwrap().1;
        assert!(mocks.nfit_test && mocks.cxl_test);
        let stock = super::test_image(&images(), &on("default")).unwrap().1;
        assert!(stock.nfit_test && !stock.cxl_test);
        assert_eq!(test_image(&on("ndctl-76")), None);
        let own_kernel = Resolved {
            user_kernel: Some(UserKernel {
                bzimage: "/k/bzImage".into(),
                modules: "/k/mods".into(),
            }),
            ..on("default")
        };
        assert_eq!(test_image(&own_kernel), None);
        let own_ndctl = Resolved {
            user_ndctl: Some("/ndctl/destdir".into()),
            ..on("default")
        };
        assert_eq!(test_image(&own_ndctl), None);
        assert_eq!(pick(k("debian-6.12")).unwrap(), "default");
        assert_eq!(pick(k("debian-6.1")).unwrap(), "debian-6.1");
        // An image name where a kernel name goes.
        assert_eq!(pick(k("ndctl-76")).unwrap(), "ndctl-76");
        let n = |s: &str| Selection {
            ndctl: Some(s.into()),
            ..Default::default()
        };
        assert_eq!(pick(n("76")).unwrap(), "ndctl-76");
        assert_eq!(pick(n("bookworm")).unwrap(), "ndctl-76");
        assert_eq!(pick(n("trixie")).unwrap(), "default");
        let cold = Selection::parse("start=cold").unwrap();
        assert!(cold.cold);
        assert_eq!(pick(cold).unwrap(), "default");
        let both = Selection::parse("kernel=debian-6.1,ndctl=76").unwrap();
        assert_eq!(pick(both).unwrap(), "bookworm");
    }

    #[test]
    fn the_default_image_has_no_variant_and_others_do() {
        let r = resolve(Selection::default()).unwrap();
        assert!(r.variants.is_empty());
        let r = resolve(Selection::parse("debian-6.1").unwrap()).unwrap();
        assert_eq!(r.variants, ["kernel-6.1"]);
    }

    #[test]
    fn unknown_names_list_what_exists() {
        let e = pick(Selection::parse("debian-5.10").unwrap()).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("no image provides kernel `debian-5.10` with ndctl `81`"),
            "{msg}"
        );
        assert!(
            msg.contains("debian-6.1 (--kernel debian-6.1 --ndctl 81)"),
            "{msg}"
        );
    }

    #[test]
    fn user_builds_need_their_partners() {
        let e = pick(Selection::parse("kernel=/tmp/bzImage").unwrap()).unwrap_err();
        assert!(matches!(e, Error::KernelWithoutModules(_)), "{e}");
        let e = pick(Selection::parse("kernel=debian-6.1,modules=/tmp/m").unwrap()).unwrap_err();
        assert!(matches!(e, Error::ModulesWithoutKernelPath(_)), "{e}");
        let r = resolve(
            Selection::parse("kernel=/tmp/bzImage,modules=/tmp/m,ndctl=/tmp/destdir").unwrap(),
        )
        .unwrap();
        assert_eq!(r.image, "default");
        assert_eq!(r.user_kernel.unwrap().bzimage, Path::new("/tmp/bzImage"));
        assert_eq!(r.user_ndctl.unwrap(), Path::new("/tmp/destdir"));
        let e = pick(Selection::parse("image=default,kernel=debian-6.1").unwrap()).unwrap_err();
        assert!(matches!(e, Error::Conflict { .. }), "{e}");
    }

    #[test]
    fn a_kernel_tree_is_built_before_anything_else_is_asked() {
        let tree_and_kernel = Selection::parse("tree=/tmp,kernel=debian-6.1").unwrap();
        let e = resolve(tree_and_kernel).unwrap_err();
        assert!(matches!(e, Error::TreeAndKernel(_)), "{e}");
        let not_a_tree = Selection::parse("tree=/nonexistent-tree").unwrap();
        let e = resolve(not_a_tree).unwrap_err();
        assert!(
            matches!(e, Error::Overlay(crate::overlay::Error::NotATree(_))),
            "{e}"
        );
    }

    #[test]
    fn malformed_specs_say_why() {
        for (spec, why) in [
            ("kernel=", "has no value"),
            ("colour=blue", "unknown key"),
            ("kernel=a,kernel=b", "given twice"),
            ("a,b", "without keys"),
            ("kernel=a,b", "not key=value"),
            ("start=tepid", "cold or warm"),
        ] {
            let e = Selection::parse(spec).unwrap_err().to_string();
            assert!(e.contains(why), "{spec}: {e}");
        }
    }
}
