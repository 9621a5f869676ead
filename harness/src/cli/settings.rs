//! `ndharness.toml`: the defaults people repeat, per repository
//! (`ROOT/ndharness.toml`) and per user
//! (`$XDG_CONFIG_HOME/ndharness/ndharness.toml`, else
//! `~/.config/ndharness/ndharness.toml`). The command line wins over both,
//! the repository's file over the user's. Every default taken from a file
//! is said once on stderr, and so is what `CI` changes.
//!
//! ```toml
//! kernel = "debian-7.3-mock"   # or kernel-tree = "~/src/linux"
//! ndctl = "~/src/ndctl"
//! jobs = 2
//! out = "target/ndharness/results"
//! ```

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

use super::args::{GuestArgs, RunArgs};

/// The file's name, in the repository and in the user's folder.
pub const FILE: &str = "ndharness.toml";

/// What a file may set.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    /// As `--kernel`.
    pub kernel: Option<String>,
    /// As `--kernel-tree`.
    pub kernel_tree: Option<PathBuf>,
    /// As `--ndctl`.
    pub ndctl: Option<String>,
    /// As `-j`.
    pub jobs: Option<usize>,
    /// As `run --out`.
    pub out: Option<PathBuf>,
}

/// The settings of one file, paths made absolute against its folder.
#[derive(Clone, Debug, Default)]
struct FromFile {
    file: Option<PathBuf>,
    settings: Settings,
}

/// The user's file.
fn user_file() -> Option<PathBuf> {
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(config.join("ndharness").join(FILE))
}

/// `~/` expanded, then a relative path taken against `base`.
fn absolute(path: &Path, base: &Path) -> PathBuf {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    match (path.strip_prefix("~"), home) {
        (Ok(rest), Some(home)) => home.join(rest),
        _ => base.join(path),
    }
}

/// A name, or a path when it looks like one (`/`, `./`, `~/`).
fn name_or_path(value: &str, base: &Path) -> String {
    if value.contains('/') {
        absolute(Path::new(value), base).display().to_string()
    } else {
        value.to_owned()
    }
}

fn read(file: &Path) -> anyhow::Result<FromFile> {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FromFile::default()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
    };
    // A file that says something wrong is a usage error (exit 64).
    let mut settings: Settings =
        toml::from_str(&text).map_err(|e| super::Usage(format!("{}: {e}", file.display())))?;
    if settings.kernel.is_some() && settings.kernel_tree.is_some() {
        return Err(super::Usage(format!(
            "{}: `kernel` and `kernel-tree` both choose the kernel: keep one",
            file.display()
        ))
        .into());
    }
    let base = file.parent().unwrap_or(Path::new("."));
    settings.kernel_tree = settings.kernel_tree.map(|p| absolute(&p, base));
    settings.out = settings.out.map(|p| absolute(&p, base));
    settings.kernel = settings.kernel.map(|k| name_or_path(&k, base));
    settings.ndctl = settings.ndctl.map(|n| name_or_path(&n, base));
    Ok(FromFile {
        file: Some(file.to_owned()),
        settings,
    })
}

/// The defaults in force: the repository's file over the user's, each
/// setting with the file it came from.
#[derive(Debug, Default)]
pub struct Defaults {
    repo: FromFile,
    user: FromFile,
}

impl Defaults {
    /// Reads both files (absent ones set nothing).
    pub fn load(root: &Path) -> anyhow::Result<Defaults> {
        Ok(Defaults {
            repo: read(&root.join(FILE))?,
            user: match user_file() {
                Some(file) => read(&file)?,
                None => FromFile::default(),
            },
        })
    }

    /// A setting and the file that set it, the repository's first.
    fn get<T: Clone>(&self, pick: impl Fn(&Settings) -> Option<T>) -> Option<(T, &Path)> {
        [&self.repo, &self.user].into_iter().find_map(|f| {
            let value = pick(&f.settings)?;
            Some((value, f.file.as_deref()?))
        })
    }

    /// Fills the guest flags the command line left out: the kernel (from
    /// `kernel` or `kernel-tree`) when no flag chose one, the ndctl when
    /// no flag chose it.
    pub fn apply_to_guest(&self, guest: &mut GuestArgs, said: &mut Vec<String>) {
        let select = &mut guest.select;
        let kernel_chosen = select.kernel.is_some()
            || select.kernel_tree.is_some()
            || select.modules.is_some()
            || guest.image.is_some();
        if !kernel_chosen {
            // The first file that chooses a kernel, whichever way.
            let kernel = self.get(|s| {
                s.kernel
                    .clone()
                    .map(KernelChoice::Name)
                    .or_else(|| s.kernel_tree.clone().map(KernelChoice::Tree))
            });
            match kernel {
                Some((KernelChoice::Name(name), file)) => {
                    said.push(format!("kernel = {name} (from {})", file.display()));
                    select.kernel = Some(name);
                }
                Some((KernelChoice::Tree(tree), file)) => {
                    said.push(format!(
                        "kernel-tree = {} (from {})",
                        tree.display(),
                        file.display()
                    ));
                    select.kernel_tree = Some(tree);
                }
                None => {}
            }
        }
        if select.ndctl.is_none() && guest.image.is_none() {
            if let Some((ndctl, file)) = self.get(|s| s.ndctl.clone()) {
                said.push(format!("ndctl = {ndctl} (from {})", file.display()));
                select.ndctl = Some(ndctl);
            }
        }
    }

    /// Fills `run`'s flags the command line left out.
    pub fn apply_to_run(&self, run: &mut RunArgs, said: &mut Vec<String>) {
        self.apply_to_guest(&mut run.guest, said);
        if run.test_threads.is_none() {
            if let Some((jobs, file)) = self.get(|s| s.jobs) {
                said.push(format!("jobs = {jobs} (from {})", file.display()));
                run.test_threads = Some(jobs);
            }
        }
        if run.results.is_none() {
            if let Some((out, file)) = self.get(|s| s.out.clone()) {
                said.push(format!("out = {} (from {})", out.display(), file.display()));
                run.results = Some(out);
            }
        }
    }
}

/// The defaults of the repository `common` finds (none when it finds
/// none: the command says why itself).
fn defaults_for(common: &super::args::Common) -> anyhow::Result<Defaults> {
    match super::config::find_root(common.root.as_deref()) {
        Ok(root) => Defaults::load(&root),
        Err(_) => Ok(Defaults::default()),
    }
}

/// `run`'s flags with the files' defaults filled in, said once.
pub fn for_run(args: &mut RunArgs) -> anyhow::Result<()> {
    let mut said = Vec::new();
    defaults_for(&args.guest.common)?.apply_to_run(args, &mut said);
    say(&said);
    Ok(())
}

/// A guest command's flags (`boot`, `explore`) with the files' defaults
/// filled in, said once.
pub fn for_guest(guest: &mut GuestArgs) -> anyhow::Result<()> {
    let mut said = Vec::new();
    defaults_for(&guest.common)?.apply_to_guest(guest, &mut said);
    say(&said);
    Ok(())
}

#[derive(Clone)]
enum KernelChoice {
    Name(String),
    Tree(PathBuf),
}

/// What `CI` (set and not `false` or `0`) changes, said once by the
/// commands that run guests.
pub const CI_CHANGES: &str = "CI is set: progress is printed as plain lines (no live bars), \
and a snapshot that differs writes no .snap.new to review (insta's CI behaviour); results, \
verdicts and exit codes are the same";

/// Says, once on stderr, the defaults taken from files and what `CI`
/// changes.
pub fn say(said: &[String]) {
    for line in said {
        eprintln!("ndharness.toml: {line}");
    }
    if ndharness::stages::ci() {
        eprintln!("note: {CI_CHANGES}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn a_file_fills_what_the_command_line_left_out_and_says_so() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = file(
            tmp.path(),
            "repo.toml",
            "kernel-tree = \"linux\"\njobs = 1\nout = \"res\"\n",
        );
        let user = file(tmp.path(), "user.toml", "ndctl = \"85\"\njobs = 2\n");
        let defaults = Defaults {
            repo: read(&repo).unwrap(),
            user: read(&user).unwrap(),
        };
        let mut run = RunArgs::default();
        let mut said = Vec::new();
        defaults.apply_to_run(&mut run, &mut said);
        let select = &run.guest.select;
        assert_eq!(
            select.kernel_tree.as_deref(),
            Some(tmp.path().join("linux").as_path())
        );
        assert_eq!(select.ndctl.as_deref(), Some("85"));
        assert_eq!(run.test_threads, Some(1), "the repository's file wins");
        assert_eq!(
            run.results.as_deref(),
            Some(tmp.path().join("res").as_path())
        );
        assert_eq!(said.len(), 4, "{said:?}");
        assert!(said[0].starts_with("kernel-tree = ") && said[0].contains("repo.toml"));

        // The command line wins: a kernel given keeps the file's tree out.
        let mut run = RunArgs::default();
        run.guest.select.kernel = Some("debian-7.3".into());
        run.test_threads = Some(4);
        let mut said = Vec::new();
        defaults.apply_to_run(&mut run, &mut said);
        assert_eq!(run.guest.select.kernel_tree, None);
        assert_eq!(run.test_threads, Some(4));
        assert_eq!(said.len(), 2, "{said:?}");
    }

    #[test]
    fn a_bad_file_is_an_error_naming_it_and_where() {
        let tmp = tempfile::tempdir().unwrap();
        let typo = file(tmp.path(), "a.toml", "kernel = \"x\"\njbos = 2\n");
        let e = read(&typo).unwrap_err().to_string();
        assert!(
            e.contains("a.toml") && e.contains("jbos") && e.contains("line 2"),
            "{e}"
        );
        let both = file(
            tmp.path(),
            "b.toml",
            "kernel = \"x\"\nkernel-tree = \"y\"\n",
        );
        let e = read(&both).unwrap_err().to_string();
        assert!(e.contains("keep one"), "{e}");
        assert!(read(&tmp.path().join("absent.toml"))
            .unwrap()
            .file
            .is_none());
    }
}
