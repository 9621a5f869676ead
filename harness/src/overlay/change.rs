//! A change to a kernel tree: one or more unified diffs (`-p1`, as `git
//! format-patch`, `git diff` and `diff -u a/ b/` write them), applied in
//! order with GNU patch. Made from patch files (a series: files in the
//! order given, a folder's `*.patch`/`*.diff` by name), or from a git
//! revision of the user's tree (the diff from its working tree to that
//! revision), so that a baseline and a candidate are both changes over the
//! same overlay.

use std::path::{Path, PathBuf};

use super::{io, Error};
use crate::tool::{self, Tool};

/// One or more diffs, applied in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// How the change is named in reports (`fix.patch`, `v6.12..HEAD`).
    pub name: String,
    /// Each diff's name and text.
    pub diffs: Vec<(String, String)>,
}

impl Change {
    /// No change: the tree as it is.
    pub fn none(name: &str) -> Change {
        Change {
            name: name.to_owned(),
            diffs: Vec::new(),
        }
    }

    /// The diff in one text, named `name`.
    pub fn diff(name: &str, text: String) -> Change {
        Change {
            name: name.to_owned(),
            diffs: vec![(name.to_owned(), text)],
        }
    }

    /// Patch files in order; a folder stands for its `*.patch` and
    /// `*.diff` files sorted by name.
    pub fn from_files(files: &[PathBuf]) -> Result<Change, Error> {
        let mut diffs = Vec::new();
        for path in files {
            let mut series = Vec::new();
            if path.is_dir() {
                for entry in std::fs::read_dir(path).map_err(io(path))?.flatten() {
                    let p = entry.path();
                    if p.extension().is_some_and(|e| e == "patch" || e == "diff") {
                        series.push(p);
                    }
                }
                series.sort();
                if series.is_empty() {
                    return Err(Error::Change(format!(
                        "{}: no *.patch or *.diff file in the folder",
                        path.display()
                    )));
                }
            } else {
                series.push(path.clone());
            }
            for p in series {
                let text = std::fs::read_to_string(&p).map_err(io(&p))?;
                let change = Change::diff(&p.display().to_string(), text);
                if change.paths().is_empty() {
                    return Err(Error::Change(format!(
                        "{}: no unified diff in it (no `--- a/FILE` / `+++ b/FILE` lines)",
                        p.display()
                    )));
                }
                diffs.extend(change.diffs);
            }
        }
        let name = files
            .iter()
            .map(|f| {
                f.file_name()
                    .map_or_else(|| f.display().to_string(), |n| n.to_string_lossy().into())
            })
            .collect::<Vec<_>>()
            .join(" + ");
        Ok(Change { name, diffs })
    }

    /// What turns the working tree of git repository `tree` into revision
    /// `rev` (its tracked files; none when they are the same).
    pub fn to_revision(tree: &Path, rev: &str) -> Result<Change, Error> {
        let mut cmd = std::process::Command::new("git");
        cmd.arg("-C")
            .arg(tree)
            .args(["diff", "--no-color", "--no-ext-diff", "-R", rev, "--"]);
        let out = Tool::new(tool::GIT, &mut cmd).shown("git diff").run()?;
        Ok(Change::diff(rev, out.stdout_text()))
    }

    /// The paths (relative to the tree) the diffs touch, old and new names
    /// both, sorted, once each.
    pub fn paths(&self) -> Vec<String> {
        let mut paths: Vec<String> = self
            .diffs
            .iter()
            .flat_map(|(_, text)| diff_paths(text))
            .collect();
        paths.sort();
        paths.dedup();
        paths
    }

    /// Applies the diffs to `src`, in order; a diff that does not apply
    /// cleanly is an error with patch's own words.
    pub fn apply(&self, src: &Path) -> Result<(), Error> {
        for (name, text) in &self.diffs {
            let file = tempfile::NamedTempFile::new().map_err(io(src))?;
            std::fs::write(file.path(), text).map_err(io(file.path()))?;
            let mut cmd = std::process::Command::new("patch");
            cmd.args([
                "-p1",
                "--batch",
                "--forward",
                "--no-backup-if-mismatch",
                "--reject-file=-",
                "-d",
            ])
            .arg(src)
            .arg("-i")
            .arg(file.path());
            let done = Tool::new(tool::PATCH, &mut cmd).merged().output()?;
            if !done.status.success() {
                return Err(Error::DoesNotApply {
                    change: name.clone(),
                    tree: src.to_owned(),
                    output: done.tail.to_string(),
                });
            }
        }
        Ok(())
    }
}

/// The paths a unified diff names, its `a/` and `b/` prefixes taken off
/// (`/dev/null` left out).
pub fn diff_paths(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let path = line
            .strip_prefix("--- ")
            .or_else(|| line.strip_prefix("+++ "))
            .or_else(|| line.strip_prefix("rename from "))
            .or_else(|| line.strip_prefix("rename to "));
        let Some(path) = path else {
            continue;
        };
        // A tab ends the name (diff -u puts the date after it).
        let path = path.split('\t').next().unwrap_or_default().trim();
        if path == "/dev/null" || path.is_empty() {
            continue;
        }
        let rel = if line.starts_with("rename ") {
            path
        } else {
            match path.split_once('/') {
                Some((_, rest)) => rest,
                None => continue,
            }
        };
        if !rel.is_empty() && !rel.split('/').any(|c| c == "..") {
            out.push(rel.to_owned());
        }
    }
    out
}
