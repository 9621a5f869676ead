//! Kernels built from source: `--kernel-tree DIR`, and the named kernels
//! whose recipe builds Debian's pinned source (`debian-6.12-mock`). Out of
//! tree and incrementally: the build folder lives in the cache, one per
//! source tree, so the tree stays clean of kernel objects and a second
//! build (another bisect step, a patch applied) recompiles only what
//! changed; `ccache` is used when installed.
//!
//! The config ([`configure`]) is tinyconfig with the guests' fragment
//! (`images/guest-kernel.config`) merged over it, or a full config of the
//! user's; the kernel's mock buses ([`mocks`]: nfit_test, cxl_test) are
//! built with it and installed beside its modules. Each make runs under its
//! deadline ([`crate::tool`]), shows its stage ([`crate::stages`]), and is
//! refused up front when the cache's filesystem lacks the space
//! ([`crate::space`]). What a build leaves is recorded by size ([`proof`]);
//! one found otherwise (a full disk, a partial cache restore) is made again.

mod configure;
mod make;
pub mod mocks;
mod proof;

use std::path::{Path, PathBuf};
use std::time::Instant;

use self::make::Make;
use crate::space;
use crate::stages::Stage;
use crate::tool;

pub use configure::{option, KernelConfig};
pub use mocks::MockBuses;

/// The guests' config fragment's file name in images/.
pub const FRAGMENT: &str = "guest-kernel.config";

/// A configured build folder's stamp: what its `.config` was made from.
const STAMP: &str = ".ndharness-config";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0} is not a kernel source tree (no Makefile and Kconfig at its top)")]
    NotATree(PathBuf),
    #[error("building a kernel needs {missing}; install with: apt-get install {packages}")]
    MissingTools { missing: String, packages: String },
    #[error("`{command}` failed (exit {code}); the last lines of {log}:\n{tail}")]
    Build {
        command: String,
        code: String,
        log: PathBuf,
        tail: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A make that did not finish within its deadline, or would not start.
    #[error("{0} (log: {1})")]
    Tool(tool::Error, PathBuf),
    #[error(transparent)]
    NoSpace(#[from] space::NoSpace),
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}

/// A built tree: the kernel and modules the image builder takes.
#[derive(Debug)]
pub struct Built {
    /// The bzImage QEMU boots.
    pub bzimage: PathBuf,
    /// The `INSTALL_MOD_PATH` its modules (and mocks) were installed into.
    pub modules: PathBuf,
    pub out: PathBuf,
    pub seconds: f64,
    pub release: String,
    /// The mock buses built with it and installed with its modules.
    pub mocks: MockBuses,
}

/// The tools a kernel build runs, with the Debian package of each.
const TOOLS: &[(&str, &str)] = &[
    ("make", "make"),
    ("gcc", "gcc"),
    ("flex", "flex"),
    ("bison", "bison"),
    ("bc", "bc"),
    ("perl", "perl"),
];

pub(crate) fn have(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(tool).is_file()))
}

fn check_tools() -> Result<(), Error> {
    let mut missing: Vec<(&str, &str)> = TOOLS.iter().copied().filter(|(t, _)| !have(t)).collect();
    // objtool and resolve_btfids link against libelf.
    if !Path::new("/usr/include/gelf.h").exists() {
        missing.push(("libelf headers", "libelf-dev"));
    }
    if !Path::new("/usr/include/openssl/ssl.h").exists() {
        missing.push(("OpenSSL headers", "libssl-dev"));
    }
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::MissingTools {
        missing: missing.iter().map(|m| m.0).collect::<Vec<_>>().join(", "),
        packages: missing.iter().map(|m| m.1).collect::<Vec<_>>().join(" "),
    })
}

/// Where a tree's objects go: one folder per canonical tree path.
pub fn out_dir(cache: &Path, tree: &Path) -> PathBuf {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(tree.to_string_lossy().as_bytes());
    let key: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    cache.join("kbuild").join(key)
}

/// Configures (when needed) and builds `tree` in its build folder in the
/// cache ([`out_dir`]).
pub fn build(tree: &Path, config: &KernelConfig, cache: &Path) -> Result<Built, Error> {
    if !tree.join("Makefile").is_file() || !tree.join("Kconfig").is_file() {
        return Err(Error::NotATree(tree.to_owned()));
    }
    let tree = tree.canonicalize().map_err(io(tree))?;
    let out = out_dir(cache, &tree);
    let what = format!("kernel tree {}", tree.display());
    let needs = space::KERNEL_BUILD
        .saturating_sub(disk_usage(&out))
        .max(KERNEL_BUILD_FLOOR);
    space::require(cache, needs, &format!("building {what}"))?;
    build_in(&tree, config, &out, &what)
}

/// Configures (when needed) and builds `tree` (canonical) in `out`, builds
/// its mock buses, and installs the modules into `out/modules-install`.
/// Output goes to `build.log` there; each phase is a progress stage.
pub fn build_in(
    tree: &Path,
    config: &KernelConfig,
    out: &Path,
    what: &str,
) -> Result<Built, Error> {
    let start = Instant::now();
    check_tools()?;
    std::fs::create_dir_all(out).map_err(io(out))?;
    proof::heal(out);
    let make = Make::new(tree, out);
    configure::configure(&make, config, out, what)?;
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut stage = Stage::start(
        what,
        &format!(
            "make bzImage modules, {jobs} jobs (log: {})",
            make.log.display()
        ),
    );
    let targets = [format!("-j{jobs}"), "bzImage".into(), "modules".into()];
    make.run(&targets, tool::KERNEL_MAKE, &mut stage)?;
    stage.finish();
    let mocks = mocks::build(&make, tree, out, what)?;
    let mods = out.join("modules-install");
    if mods.exists() {
        std::fs::remove_dir_all(&mods).map_err(io(&mods))?;
    }
    let mut stage = Stage::start(what, "modules_install");
    let install = [
        "modules_install".into(),
        format!("INSTALL_MOD_PATH={}", mods.display()),
        "INSTALL_MOD_STRIP=1".into(),
    ];
    make.run(&install, tool::KERNEL_MODULES_INSTALL, &mut stage)?;
    stage.finish();
    mocks::install(&make, tree, &mods, mocks, what)?;
    proof::record(out);
    let release = std::fs::read_to_string(out.join("include/config/kernel.release"))
        .map_err(io(out))?
        .trim()
        .to_owned();
    Ok(Built {
        bzimage: out.join("arch/x86/boot/bzImage"),
        modules: mods,
        out: out.to_owned(),
        seconds: start.elapsed().as_secs_f64(),
        release,
        mocks,
    })
}

/// The least free space a build asks for, however much of it is built.
const KERNEL_BUILD_FLOOR: u64 = 512 << 20;

/// Bytes the files under `dir` take (0 when it does not exist).
fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(md) if md.is_dir() => disk_usage(&e.path()),
            Ok(md) => md.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_without_kconfig_is_refused_before_anything_runs() {
        let dir = tempfile::tempdir().unwrap();
        let config = KernelConfig::Fragment("/nonexistent".into());
        let e = build(dir.path(), &config, dir.path()).unwrap_err();
        assert!(matches!(e, Error::NotATree(_)), "{e}");
    }

    #[test]
    fn each_tree_gets_its_own_build_folder() {
        let c = Path::new("/cache");
        assert_ne!(
            out_dir(c, Path::new("/a/linux")),
            out_dir(c, Path::new("/b/linux"))
        );
        assert_eq!(
            out_dir(c, Path::new("/a/linux")),
            out_dir(c, Path::new("/a/linux"))
        );
    }

    #[test]
    fn the_shipped_fragment_names_the_pmem_stack() {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../images")
                .join(FRAGMENT),
        )
        .unwrap();
        for opt in [
            "CONFIG_LIBNVDIMM=m",
            "CONFIG_ACPI_NFIT=m",
            "CONFIG_DEV_DAX_PMEM=m",
            "CONFIG_CXL_REGION=y",
            "CONFIG_VIRTIO_CONSOLE=y",
        ] {
            assert!(text.lines().any(|l| l == opt), "{opt} missing");
        }
    }
}
