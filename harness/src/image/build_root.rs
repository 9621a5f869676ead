//! A build root: packages of the guest's Debian suite unpacked with
//! dpkg-deb (no maintainer scripts run; compiling needs none) and entered
//! with chroot, so that what is built for the guest is built with the
//! guest's compiler and libraries, not the host's (bookworm).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::host::{dpkg_extract, ensure_dir, run_tool, symlink};
use super::recipe::LockedPackage;
use super::{Error, Result};
use crate::tool::{self, Limit, Tool};

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
            tool::MKNOD,
        )?;
    }
    Ok(())
}

/// Mounts proc in the build root (`$1`) and runs the script (`$2`) there.
const IN_CHROOT_WITH_PROC: &str =
    r#"mkdir -p "$1/proc" && mount -t proc proc "$1/proc" && exec chroot "$1" /bin/sh -c "$2""#;

/// Runs a shell script in `root` under chroot, or on the host when `root`
/// is `None`, with a plain environment, within `limit`; `what` names it in
/// errors, which carry the script's last lines of output, and `on_line`
/// sees each line as it comes.
pub fn run(
    root: Option<&Path>,
    script: &str,
    what: &str,
    limit: Limit,
    on_line: &mut dyn FnMut(&str),
) -> Result<()> {
    let mut cmd = match root {
        Some(root) => {
            // With /proc, mounted in a mount namespace of its own so that
            // it goes with the script: 7.x's objtool reads
            // /proc/self/maps for its stack limit and fails without it.
            let mut chroot = Command::new("unshare");
            chroot
                .args(["--mount", "--propagation", "private", "sh", "-c"])
                .arg(IN_CHROOT_WITH_PROC)
                .arg("sh")
                .arg(root)
                .arg(script);
            chroot
        }
        None => {
            let mut sh = Command::new("sh");
            sh.args(["-c", script]);
            sh
        }
    };
    cmd.env_clear()
        .env("PATH", "/usr/bin:/usr/sbin:/bin:/sbin")
        .env("HOME", "/tmp")
        .env("LC_ALL", "C.UTF-8");
    match Tool::new(limit, &mut cmd)
        .shown(what)
        .on_line(on_line)
        .run()
    {
        Ok(_) => Ok(()),
        Err(tool::Error::Spawn { source, .. }) => Err(Error::Tool {
            tool: if root.is_some() { "chroot" } else { "sh" }.into(),
            message: format!("{source}; {what} needs make, gcc and chroot: run ci/setup-host"),
        }),
        Err(tool::Error::Failed { status, tail, .. }) => {
            let hint =
                if root.is_some() && tail.0.iter().any(|l| l.contains("Operation not permitted")) {
                    " (chroot needs root)"
                } else {
                    ""
                };
            Err(Error::Tool {
                tool: what.to_owned(),
                message: format!("{status}{hint}{tail}"),
            })
        }
        Err(other) => Err(other.into()),
    }
}
