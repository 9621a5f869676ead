//! Snapshot comparison through insta: expected output lives in
//! `suites/SUITE/snapshots/`, a mismatch prints insta's diff and leaves a
//! `.snap.new` for `cargo insta review`; nothing is overwritten unreviewed.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// insta reports a mismatch by panicking after printing its diff; the
/// panic's own message and backtrace add nothing, so they are not printed.
pub fn quiet_snapshot_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = info
                .payload()
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| info.payload().downcast_ref::<&str>().copied())
                .unwrap_or_default();
            if !msg.starts_with("snapshot assertion for") {
                default(info);
            }
        }));
    });
}

/// A snapshot that did not match (insta has printed the diff; the
/// message carries it too, for the failure list and report.html).
#[derive(Debug, thiserror::Error)]
#[error("snapshot `{name}` does not match {}; review with `cargo insta review`{}", .file.display(), .diff.as_deref().map(|d| format!("\n{d}")).unwrap_or_default())]
pub struct Mismatch {
    pub name: String,
    pub file: PathBuf,
    /// The stored snapshot against this run (none when there is no stored one).
    pub diff: Option<String>,
}

/// Compares `content` with snapshot `name`.
pub fn compare(
    dir: &Path,
    case_file: &Path,
    name: &str,
    description: &str,
    content: &str,
) -> Result<(), Mismatch> {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(dir);
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.set_input_file(case_file);
    settings.set_description(description);
    let res = catch_unwind(AssertUnwindSafe(|| {
        settings.bind(|| insta::assert_snapshot!(name, content));
    }));
    res.map_err(|_| Mismatch {
        name: name.to_owned(),
        file: dir.join(format!("{name}.snap")),
        diff: stored_body(dir, name).and_then(|old| unified(name, &old, content)),
    })
}

/// Where snapshot `name` is read from: the first variant folder
/// (`snapshots/VARIANT/`) that has it, else the shared folder. With
/// `new_variant`, a snapshot the shared folder does not match goes to the
/// first variant instead, so `cargo insta review` offers it there.
pub fn locate(
    shared: &Path,
    variants: &[String],
    new_variant: bool,
    name: &str,
    content: &str,
) -> PathBuf {
    let file = format!("{name}.snap");
    if let Some(v) = variants
        .iter()
        .find(|v| shared.join(v).join(&file).exists())
    {
        return shared.join(v);
    }
    match variants.first() {
        Some(v)
            if new_variant && stored_body(shared, name).as_deref() != Some(content.trim_end()) =>
        {
            shared.join(v)
        }
        _ => shared.to_owned(),
    }
}

/// The body of a stored snapshot, without insta's header, trailing space cut.
pub fn stored_body(dir: &Path, name: &str) -> Option<String> {
    let stored = std::fs::read_to_string(dir.join(format!("{name}.snap"))).ok()?;
    Some(strip_header(&stored).trim_end().to_owned())
}

/// The unified diff of `content` against the stored snapshot `name`, for a
/// trial that stopped at a failing step: no pending snapshot is written (the
/// run is incomplete), but the diff shows where it left the stored course.
pub fn diff_stored(dir: &Path, name: &str, content: &str) -> Option<String> {
    let stored = std::fs::read_to_string(dir.join(format!("{name}.snap"))).ok()?;
    // As many steps of the stored course as this run got to.
    let steps = blocks(content).len();
    let body: String = blocks(strip_header(&stored))
        .into_iter()
        .take(steps)
        .collect();
    unified(name, &body, content)
}

/// `content` against the stored body `old` of snapshot `name`, as a
/// unified diff; none when they are the same.
fn unified(name: &str, old: &str, content: &str) -> Option<String> {
    let (old, new) = (
        format!("{}\n", old.trim_end()),
        format!("{}\n", content.trim_end()),
    );
    let diff = similar::TextDiff::from_lines(&old, &new);
    if diff.ratio() >= 1.0 {
        return None;
    }
    Some(
        diff.unified_diff()
            .context_radius(3)
            .header(&format!("{name}.snap"), "this run")
            .to_string(),
    )
}

/// A transcript cut into its steps (each starts with `$ ` or `== `).
fn blocks(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in text.split_inclusive('\n') {
        if line.starts_with("$ ") || line.starts_with("== ") || out.is_empty() {
            out.push(String::new());
        }
        if let Some(last) = out.last_mut() {
            last.push_str(line);
        }
    }
    out
}

/// An insta file's body: what follows its `---` front matter.
fn strip_header(file: &str) -> &str {
    let Some(rest) = file.strip_prefix("---\n") else {
        return file;
    };
    match rest.find("\n---\n") {
        Some(i) => &rest[i + 5..],
        None => file,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_of_a_stopped_run_against_the_stored_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("c@t.transcript.snap"),
            "---\nsource: x\n---\n$ a\nexit: 0\n\n$ b\nexit: 0\n",
        )
        .unwrap();
        let d = diff_stored(
            dir.path(),
            "c@t.transcript",
            "$ a\nexit: 0\n\n$ w\nexit: 1\n",
        )
        .unwrap();
        assert!(
            d.contains("-$ b") && d.contains("+$ w") && d.contains("+exit: 1"),
            "{d}"
        );
        assert!(
            diff_stored(dir.path(), "c@t.transcript", "$ a\nexit: 0\n\n$ b\nexit: 0").is_none()
        );
        assert!(diff_stored(dir.path(), "missing", "x").is_none());
    }

    #[test]
    fn variants_are_read_first_and_written_only_when_the_shared_one_differs() {
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path();
        std::fs::write(
            shared.join("c@t.layout.snap"),
            "---\nsource: x\n---\nsame\n",
        )
        .unwrap();
        std::fs::write(
            shared.join("c@u.layout.snap"),
            "---\nsource: x\n---\nshared\n",
        )
        .unwrap();
        std::fs::create_dir(shared.join("kernel-6.1")).unwrap();
        std::fs::write(
            shared.join("kernel-6.1/c@u.layout.snap"),
            "---\n---\nother\n",
        )
        .unwrap();
        let v = vec!["bookworm".to_owned(), "kernel-6.1".to_owned()];
        // A variant that has the snapshot wins, whatever the content.
        assert_eq!(
            locate(shared, &v, false, "c@u.layout", "x"),
            shared.join("kernel-6.1")
        );
        // None has it: the shared one, unless a new variant is being made
        // and the shared one does not match.
        assert_eq!(locate(shared, &v, false, "c@t.layout", "new"), shared);
        assert_eq!(locate(shared, &v, true, "c@t.layout", "same\n"), shared);
        assert_eq!(
            locate(shared, &v, true, "c@t.layout", "new"),
            shared.join("bookworm")
        );
        // The default image has no variants.
        assert_eq!(locate(shared, &[], true, "c@t.layout", "new"), shared);
    }
}
