//! What the tests that run the `ndharness` binary share: the binary, a
//! scratch repository with the real image recipe and one suite, a private
//! cache that borrows the user's built images and packages, and the QEMU
//! processes still running for a folder.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

pub fn ndharness(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ndharness"));
    // The tester's own ndharness.toml does not choose the tests' guests.
    c.args(args)
        .env_remove("NDHARNESS_ROOT")
        .env("XDG_CONFIG_HOME", "/nonexistent/ndharness-tests");
    c
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A scratch repository with the real image recipe and lock and one suite.
pub fn scratch(suite: &str, case: &str, yaml: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("images")).unwrap();
    for f in ["default.yaml", "default.lock"] {
        std::fs::copy(
            repo().join("images").join(f),
            dir.path().join("images").join(f),
        )
        .unwrap();
    }
    let s = dir.path().join("suites").join(suite);
    std::fs::create_dir_all(&s).unwrap();
    std::fs::write(s.join(format!("{case}.yaml")), yaml).unwrap();
    dir
}

/// A cache of its own whose built images and downloaded packages are the
/// user's (linked, not copied): its saved states are private.
pub fn private_cache(at: &Path) {
    let user = ndharness::image::cache_dir();
    std::fs::create_dir_all(&user).unwrap();
    for shared in ["images", "debs", "apt", "sources"] {
        let from = user.join(shared);
        std::fs::create_dir_all(&from).unwrap();
        std::os::unix::fs::symlink(&from, at.join(shared)).unwrap();
    }
}

/// Process ids of the QEMUs whose command line names `dir`.
pub fn qemu_pids_using(dir: &Path) -> Vec<u32> {
    pids_matching(|cmdline| {
        cmdline.contains("qemu-system") && cmdline.contains(&dir.display().to_string())
    })
}

/// Process ids whose command line (NUL-separated words joined by spaces)
/// satisfies `pred`.
pub fn pids_matching(pred: impl Fn(&str) -> bool) -> Vec<u32> {
    let me = std::process::id();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|b| pred(&String::from_utf8_lossy(&b).replace('\0', " ")))
                .unwrap_or(false)
        })
        .collect()
}
