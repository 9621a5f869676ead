//! `--kernel-tree DIR`: a kernel built from a source tree, out of tree and
//! incrementally, with the config fragment kept in `images/`.
//!
//! The build folder lives in the cache, one per source tree, so the tree
//! stays clean and a second build (another bisect step, a patch applied)
//! recompiles only what changed; `ccache` is used when installed. The
//! config is the tree's x86_64 defconfig with `images/kernel-tree.config`
//! merged over it (kconfig's own merge_config.sh), remade only when the
//! fragment changes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::image::UserKernel;

/// The fragment's file name in images/.
pub const FRAGMENT: &str = "kernel-tree.config";

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
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}

/// A built tree: the kernel and modules the image builder takes.
#[derive(Debug)]
pub struct Built {
    pub kernel: UserKernel,
    pub out: PathBuf,
    pub seconds: f64,
    pub release: String,
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

fn have(tool: &str) -> bool {
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
    let key = crate::image::sha256_hex(tree.to_string_lossy().as_bytes());
    cache.join("kbuild").join(&key[..16])
}

/// Configures (when needed) and builds `tree`, then installs its modules
/// into the build folder. Output goes to `build.log` there; `progress`
/// gets one line per phase.
pub fn build(
    tree: &Path,
    fragment: &Path,
    cache: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<Built, Error> {
    let start = Instant::now();
    if !tree.join("Makefile").is_file() || !tree.join("Kconfig").is_file() {
        return Err(Error::NotATree(tree.to_owned()));
    }
    check_tools()?;
    let tree = tree.canonicalize().map_err(io(tree))?;
    let out = out_dir(cache, &tree);
    std::fs::create_dir_all(&out).map_err(io(&out))?;
    let log = out.join("build.log");
    let frag_text = std::fs::read_to_string(fragment).map_err(io(fragment))?;
    let stamp = out.join(".ndharness-fragment");
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    let make = |args: &[String]| -> Result<(), Error> {
        let mut cmd = Command::new("make");
        cmd.arg("-C").arg(&tree).arg(format!("O={}", out.display()));
        if have("ccache") {
            cmd.arg("CC=ccache gcc");
        }
        cmd.args(args);
        run_logged(cmd, &log)
    };
    let configured = out.join(".config").exists()
        && std::fs::read_to_string(&stamp).ok().as_deref() == Some(frag_text.as_str());
    if !configured {
        progress("configure: x86_64 defconfig");
        make(&["defconfig".into()])?;
        progress(&format!("configure: merge {}", fragment.display()));
        let mut merge = Command::new(tree.join("scripts/kconfig/merge_config.sh"));
        merge
            .current_dir(&tree)
            .arg("-m")
            .arg("-O")
            .arg(&out)
            .arg(out.join(".config"))
            .arg(fragment);
        run_logged(merge, &log)?;
        progress("configure: olddefconfig");
        make(&["olddefconfig".into()])?;
        std::fs::write(&stamp, &frag_text).map_err(io(&stamp))?;
    }
    progress(&format!(
        "build: bzImage modules, {jobs} jobs (log: {})",
        log.display()
    ));
    make(&[format!("-j{jobs}"), "bzImage".into(), "modules".into()])?;
    let mods = out.join("modules-install");
    if mods.exists() {
        std::fs::remove_dir_all(&mods).map_err(io(&mods))?;
    }
    progress("install modules");
    make(&[
        "modules_install".into(),
        format!("INSTALL_MOD_PATH={}", mods.display()),
        "INSTALL_MOD_STRIP=1".into(),
    ])?;
    let release = std::fs::read_to_string(out.join("include/config/kernel.release"))
        .map_err(io(&out))?
        .trim()
        .to_owned();
    Ok(Built {
        kernel: UserKernel {
            bzimage: out.join("arch/x86/boot/bzImage"),
            modules: mods,
        },
        out,
        seconds: start.elapsed().as_secs_f64(),
        release,
    })
}

/// Runs `cmd` with stdout and stderr appended to `log`.
fn run_logged(mut cmd: Command, log: &Path) -> Result<(), Error> {
    let shown = format!(
        "{} {}",
        cmd.get_program().to_string_lossy(),
        cmd.get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(io(log))?;
    let err = file.try_clone().map_err(io(log))?;
    let status = cmd
        .stdout(file)
        .stderr(err)
        .status()
        .map_err(io(Path::new(&shown)))?;
    if status.success() {
        return Ok(());
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(25)..].join("\n");
    Err(Error::Build {
        command: shown,
        code: status.code().map_or("by signal".into(), |c| c.to_string()),
        log: log.to_owned(),
        tail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_without_kconfig_is_refused_before_anything_runs() {
        let dir = tempfile::tempdir().unwrap();
        let e = build(
            dir.path(),
            Path::new("/nonexistent"),
            dir.path(),
            &mut |_| {},
        )
        .unwrap_err();
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
