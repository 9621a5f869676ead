//! A build root: packages of the guest's Debian suite unpacked with
//! dpkg-deb (no maintainer scripts run; compiling needs none) and entered
//! with chroot, so that what is built for the guest is built with the
//! guest's compiler and libraries, not the host's (bookworm).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::host::{dpkg_extract, ensure_dir, run_tool, symlink};
use super::recipe::LockedPackage;
use super::{Error, Result};

/// Unpacks `packages` into `root` and gives it a /dev/null.
pub fn prepare(
    root: &Path,
    packages: &[&LockedPackage],
    deb: &dyn Fn(&LockedPackage) -> PathBuf,
) -> Result<()> {
    for package in packages {
        dpkg_extract(&deb(package), root)?;
    }
    // The awk link mawk's postinst would make (update-alternatives);
    // kbuild calls awk.
    let awk = root.join("usr/bin/awk");
    if awk.symlink_metadata().is_err() {
        if let Some(implementation) = ["mawk", "gawk"]
            .iter()
            .find(|name| root.join("usr/bin").join(name).exists())
        {
            symlink(implementation, &awk)?;
        }
    }
    let null = root.join("dev/null");
    if !null.exists() {
        ensure_dir(&root.join("dev"))?;
        run_tool(
            Command::new("mknod")
                .args(["-m", "666"])
                .arg(&null)
                .args(["c", "1", "3"]),
            "mknod",
        )?;
    }
    Ok(())
}

/// Runs a shell script in `root` under chroot, or on the host when `root`
/// is `None`, with a plain environment; `what` names it in errors, which
/// carry the script's output.
pub fn run(root: Option<&Path>, script: &str, what: &str) -> Result<()> {
    let mut cmd = match root {
        Some(root) => {
            let mut chroot = Command::new("chroot");
            chroot.arg(root).args(["/bin/sh", "-c", script]);
            chroot
        }
        None => {
            let mut sh = Command::new("sh");
            sh.args(["-c", script]);
            sh
        }
    };
    let out = cmd
        .env_clear()
        .env("PATH", "/usr/bin:/usr/sbin:/bin:/sbin")
        .env("HOME", "/tmp")
        .env("LC_ALL", "C.UTF-8")
        .output()
        .map_err(|e| Error::Tool {
            tool: if root.is_some() { "chroot" } else { "sh" }.into(),
            message: format!("{e}; {what} needs make, gcc and chroot: run ci/setup-host"),
        })?;
    if out.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    let hint = if root.is_some() && text.contains("Operation not permitted") {
        " (chroot needs root)"
    } else {
        ""
    };
    let tail: Vec<&str> = text.lines().rev().take(30).collect();
    Err(Error::Tool {
        tool: what.to_owned(),
        message: format!(
            "{}{hint}:\n{}",
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ),
    })
}
