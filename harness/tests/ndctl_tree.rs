//! The user's own ndctl source tree (`--ndctl TREE`), end to end on the
//! mock line: ndctl 81's source (the tarball the mock line's packaged tests
//! are built from) unpacked as a user's tree with its version changed,
//! built by ndharness in the guest's userland; the guest runs that ndctl
//! (`ndctl --version` says the tree's version), `ndctl::create.sh` runs
//! and passes, and then, with the tree's `test/create.sh` made to fail,
//! the same trial fails: the tests that run are the tree's own.
//!
//! Ignored by default (it builds ndctl, and needs the mock line's image):
//! `cargo test --test ndctl_tree -- --ignored`, as `.ci/run` does.

mod scratch;

use std::path::{Path, PathBuf};

use scratch::{ndharness, repo, text};

const TRIAL: &str = "ndctl::create.sh::nfit-test-modules";
const KERNEL: &str = "debian-7.3-mock";
const VERSION: &str = "81.99";

/// The ndctl source tarball the mock line's lock pins, from the cache
/// (fetched when the line's image was built).
fn ndctl_tarball() -> PathBuf {
    let lock = std::fs::read_to_string(repo().join("images/mock-7.3.lock")).unwrap();
    let lock: serde_yaml_ng::Value = serde_yaml_ng::from_str(&lock).unwrap();
    let source = &lock["ndctl_tests"]["source"];
    let (sha, file) = (
        source["sha256"].as_str().unwrap(),
        source["file"].as_str().unwrap(),
    );
    let path = ndharness::image::cache_dir()
        .join("sources")
        .join(format!("{sha}-{file}"));
    assert!(
        path.is_file(),
        "{} is not in the cache: build the mock line first (ndharness image build --kernel {KERNEL})",
        path.display()
    );
    path
}

/// ndctl's source unpacked into `dir`, its project version set to
/// [`VERSION`]; returns the tree.
fn user_tree(dir: &Path) -> PathBuf {
    let status = std::process::Command::new("tar")
        .arg("-xf")
        .arg(ndctl_tarball())
        .arg("-C")
        .arg(dir)
        .status()
        .unwrap();
    assert!(status.success());
    let tree = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join("meson.build").is_file())
        .expect("an ndctl tree in the tarball");
    let meson = tree.join("meson.build");
    let text = std::fs::read_to_string(&meson).unwrap();
    let at = text.find("version").unwrap();
    let open = at + text[at..].find('\'').unwrap() + 1;
    let close = open + text[open..].find('\'').unwrap();
    std::fs::write(
        &meson,
        format!("{}{VERSION}{}", &text[..open], &text[close..]),
    )
    .unwrap();
    tree
}

fn run_trial(tree: &Path, out: &Path) -> std::process::Output {
    ndharness(&[
        "run",
        "--kernel",
        KERNEL,
        "--ndctl",
        tree.to_str().unwrap(),
        TRIAL,
        "--out",
        out.to_str().unwrap(),
    ])
    .output()
    .unwrap()
}

#[test]
#[ignore = "builds ndctl and needs the mock line's image; cargo test --test ndctl_tree -- --ignored"]
fn an_ndctl_tree_is_built_and_its_own_tests_run() {
    let work = tempfile::tempdir().unwrap();
    let tree = user_tree(work.path());

    let o = ndharness(&[
        "boot",
        "--kernel",
        KERNEL,
        "--ndctl",
        tree.to_str().unwrap(),
        "--topology",
        "nfit-1",
        "--",
        "ndctl",
        "--version",
    ])
    .output()
    .unwrap();
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), VERSION, "{t}");

    let o = run_trial(&tree, &work.path().join("passes"));
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(t.contains(TRIAL), "{t}");

    // The tree's own test, made to fail: the trial fails.
    let script = tree.join("test/create.sh");
    let body = std::fs::read_to_string(&script).unwrap();
    let failing = body.replacen('\n', "\necho 'this tree fails create.sh' >&2; exit 1\n", 1);
    std::fs::write(&script, failing).unwrap();
    let o = run_trial(&tree, &work.path().join("fails"));
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("this tree fails create.sh"), "{t}");
}
