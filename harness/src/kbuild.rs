//! `--kernel-tree DIR`: a kernel built from a source tree, out of tree and
//! incrementally, with the config fragment kept in `images/`.
//!
//! The build folder lives in the cache, one per source tree, so the tree
//! stays clean and a second build (another bisect step, a patch applied)
//! recompiles only what changed; `ccache` is used when installed. The
//! config is the tree's x86_64 defconfig with `images/kernel-tree.config`
//! merged over it (kconfig's own merge_config.sh), remade only when the
//! fragment changes. Each make runs under its deadline ([`crate::tool`]),
//! shows its stage ([`crate::progress`]), and is refused up front when the
//! cache's filesystem lacks the space ([`crate::space`]). What a build
//! leaves (`.config`, `bzImage`) is recorded by size; one found otherwise
//! (a full disk, a partial cache restore) is made again, with a warning.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::image::UserKernel;
use crate::progress::Stage;
use crate::space;
use crate::tool::{self, Limit, Tool};

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
    /// A make that did not finish within its deadline, or would not start.
    #[error("{0} (log: {1})")]
    Tool(tool::Error, PathBuf),
    #[error(transparent)]
    NoSpace(#[from] space::NoSpace),
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
/// into the build folder. Output goes to `build.log` there; each phase is
/// a progress stage.
pub fn build(tree: &Path, fragment: &Path, cache: &Path) -> Result<Built, Error> {
    let start = Instant::now();
    if !tree.join("Makefile").is_file() || !tree.join("Kconfig").is_file() {
        return Err(Error::NotATree(tree.to_owned()));
    }
    check_tools()?;
    let tree = tree.canonicalize().map_err(io(tree))?;
    let out = out_dir(cache, &tree);
    let what = format!("kernel tree {}", tree.display());
    let needs = space::KERNEL_BUILD
        .saturating_sub(disk_usage(&out))
        .max(KERNEL_BUILD_FLOOR);
    space::require(cache, needs, &format!("building {what}"))?;
    std::fs::create_dir_all(&out).map_err(io(&out))?;
    heal(&out);
    let make = Make::new(&tree, &out);
    let frag_text = std::fs::read_to_string(fragment).map_err(io(fragment))?;
    let stamp = out.join(".ndharness-fragment");
    let configured = out.join(".config").exists()
        && std::fs::read_to_string(&stamp).ok().as_deref() == Some(frag_text.as_str());
    if !configured {
        let mut stage = Stage::start(&what, "configure");
        stage.item("x86_64 defconfig");
        make.run(&["defconfig".into()], tool::KERNEL_CONFIG, &mut stage)?;
        stage.item(&format!("merge {}", fragment.display()));
        let mut merge = Command::new(tree.join("scripts/kconfig/merge_config.sh"));
        merge
            .current_dir(&tree)
            .arg("-m")
            .arg("-O")
            .arg(&out)
            .arg(out.join(".config"))
            .arg(fragment);
        make.logged(&mut merge, tool::KERNEL_CONFIG, &mut stage)?;
        stage.item("olddefconfig");
        make.run(&["olddefconfig".into()], tool::KERNEL_CONFIG, &mut stage)?;
        std::fs::write(&stamp, &frag_text).map_err(io(&stamp))?;
        stage.finish();
    }
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut stage = Stage::start(
        &what,
        &format!(
            "make bzImage modules, {jobs} jobs (log: {})",
            make.log.display()
        ),
    );
    let targets = [format!("-j{jobs}"), "bzImage".into(), "modules".into()];
    make.run(&targets, tool::KERNEL_MAKE, &mut stage)?;
    stage.finish();
    let mods = out.join("modules-install");
    if mods.exists() {
        std::fs::remove_dir_all(&mods).map_err(io(&mods))?;
    }
    let mut stage = Stage::start(&what, "modules_install");
    let install = [
        "modules_install".into(),
        format!("INSTALL_MOD_PATH={}", mods.display()),
        "INSTALL_MOD_STRIP=1".into(),
    ];
    make.run(&install, tool::KERNEL_MODULES_INSTALL, &mut stage)?;
    stage.finish();
    record(&out);
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

/// What a finished build left, by size: a later build checks them first.
const PROOF: &str = ".ndharness-proof";
const PROVEN: [&str; 2] = [".config", "arch/x86/boot/bzImage"];

/// Records the sizes of what the build in `out` left.
fn record(out: &Path) {
    let lines: Vec<String> = PROVEN
        .iter()
        .map(|name| {
            let size = std::fs::metadata(out.join(name)).map_or(0, |m| m.len());
            format!("{size} {name}")
        })
        .collect();
    let _ = std::fs::write(out.join(PROOF), lines.join("\n") + "\n");
}

/// Removes what a finished build left that is no longer as it was left (a
/// `.config` or `bzImage` cut short), so that this build makes it again.
fn heal(out: &Path) {
    let Ok(text) = std::fs::read_to_string(out.join(PROOF)) else {
        return;
    };
    for line in text.lines() {
        let Some((size, name)) = line.split_once(' ') else {
            continue;
        };
        let path = out.join(name);
        let actual = std::fs::metadata(&path).map_or(0, |m| m.len());
        if size.parse() == Ok(actual) {
            continue;
        }
        crate::progress::say(&format!(
            "warning: kernel build {}: {name} is {actual} bytes, {size} when it was built; it is made again",
            out.display()
        ));
        let _ = std::fs::remove_file(&path);
        if name == ".config" {
            let _ = std::fs::remove_file(out.join(".ndharness-fragment"));
        }
    }
    let _ = std::fs::remove_file(out.join(PROOF));
}

/// make over a tree, out of tree into `out`, logged to `out/build.log`.
struct Make {
    tree: PathBuf,
    out: PathBuf,
    log: PathBuf,
    ccache: bool,
}

impl Make {
    fn new(tree: &Path, out: &Path) -> Make {
        Make {
            tree: tree.to_owned(),
            out: out.to_owned(),
            log: out.join("build.log"),
            ccache: have("ccache"),
        }
    }

    fn run(&self, args: &[String], limit: Limit, stage: &mut Stage) -> Result<(), Error> {
        let mut cmd = Command::new("make");
        cmd.arg("-C")
            .arg(&self.tree)
            .arg(format!("O={}", self.out.display()));
        if self.ccache {
            cmd.arg("CC=ccache gcc");
        }
        cmd.args(args);
        self.logged(&mut cmd, limit, stage)
    }

    /// Runs `cmd` with stdout and stderr appended to the log; its lines are
    /// the stage's items.
    fn logged(&self, cmd: &mut Command, limit: Limit, stage: &mut Stage) -> Result<(), Error> {
        let shown = format!(
            "{} {}",
            cmd.get_program().to_string_lossy(),
            cmd.get_args()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        );
        let mut on_line = |line: &str| stage.item(line);
        let ran = Tool::new(limit, cmd)
            .shown(format!("`{shown}`"))
            .log(&self.log)
            .on_line(&mut on_line)
            .run();
        match ran {
            Ok(_) => Ok(()),
            Err(tool::Error::Failed { status, tail, .. }) => Err(Error::Build {
                command: shown,
                code: status.code().map_or("by signal".into(), |c| c.to_string()),
                log: self.log.clone(),
                tail: tail.0.join("\n"),
            }),
            Err(other) => Err(Error::Tool(other, self.log.clone())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_without_kconfig_is_refused_before_anything_runs() {
        let dir = tempfile::tempdir().unwrap();
        let e = build(dir.path(), Path::new("/nonexistent"), dir.path()).unwrap_err();
        assert!(matches!(e, Error::NotATree(_)), "{e}");
    }

    #[test]
    fn a_cut_bzimage_is_made_again_and_a_cut_config_remade() {
        let out = tempfile::tempdir().unwrap();
        let out = out.path();
        let bzimage = out.join("arch/x86/boot/bzImage");
        std::fs::create_dir_all(bzimage.parent().unwrap()).unwrap();
        std::fs::write(&bzimage, vec![1u8; 4096]).unwrap();
        std::fs::write(out.join(".config"), "CONFIG_X=y\n").unwrap();
        std::fs::write(out.join(".ndharness-fragment"), "frag").unwrap();
        record(out);
        heal(out);
        assert!(bzimage.exists() && out.join(".ndharness-fragment").exists());
        record(out);
        std::fs::write(&bzimage, vec![1u8; 100]).unwrap();
        std::fs::write(out.join(".config"), "").unwrap();
        heal(out);
        assert!(!bzimage.exists(), "a cut bzImage is left to make");
        assert!(!out.join(".config").exists());
        assert!(
            !out.join(".ndharness-fragment").exists(),
            "the config is remade"
        );
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
