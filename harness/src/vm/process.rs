//! The QEMU process. It dies with its case: Drop kills it (success,
//! failure, panic), and [`crate::supervisor`] (one registry with the host
//! tools, emptied by the Ctrl-C handler; PR_SET_PDEATHSIG should the
//! harness itself be killed) starts it as a group of its own.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use super::qemu::{Error, Result};
use crate::supervisor::Enrolled;

pub struct QemuProcess {
    child: tokio::process::Child,
    pid: u32,
    group: Option<Enrolled>,
}

impl QemuProcess {
    /// Starts `binary argv...` with its output going to `log`.
    pub fn spawn(binary: &Path, argv: &[String], log: &Path) -> Result<QemuProcess> {
        let spawn_err = |source| Error::Spawn {
            binary: binary.to_owned(),
            source,
        };
        let out = std::fs::File::create(log).map_err(spawn_err)?;
        let err = out.try_clone().map_err(spawn_err)?;
        let mut cmd = tokio::process::Command::new(binary);
        cmd.args(argv)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true);
        crate::supervisor::supervise(cmd.as_std_mut());
        let registry = crate::supervisor::spawning();
        let child = cmd.spawn().map_err(spawn_err)?;
        let pid = child.id().unwrap_or_default();
        let group = Some(registry.enroll(pid));
        Ok(QemuProcess { child, pid, group })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The exit status if QEMU has exited.
    pub fn try_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits up to `timeout` for QEMU to exit by itself.
    pub async fn wait(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .ok()
            .and_then(|r| r.ok())
    }

    /// Kills QEMU and reaps it.
    pub async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        self.forget();
    }

    /// Leaves the registry (QEMU reaped).
    fn forget(&mut self) {
        self.group = None;
    }
}

impl Drop for QemuProcess {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.start_kill();
            // Reap synchronously: a zombie QEMU would still hold its files.
            // SAFETY: waitpid on our own child.
            unsafe {
                let mut status = 0;
                libc::waitpid(self.pid as i32, &mut status, 0);
            }
        }
        self.forget();
    }
}

/// `binary` and `argv` as a shell command line, one option per line.
pub fn command_line_text(binary: &Path, argv: &[String]) -> String {
    let quote = crate::command_line::quote;
    let mut out = quote(&binary.display().to_string());
    for a in argv {
        out.push_str(if a.starts_with('-') { " \\\n  " } else { " " });
        out.push_str(&quote(a));
    }
    out.push('\n');
    out
}
