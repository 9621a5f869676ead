//! The QEMU process. Three owners make sure it dies with its case: Drop
//! (success, failure, panic), a process-wide registry the Ctrl-C handler
//! empties, and PR_SET_PDEATHSIG should the harness itself be killed.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use super::qemu::{Error, Result};

static LIVE: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

/// Kills every QEMU this process started; for the Ctrl-C handler.
pub fn kill_all() {
    let pids: Vec<u32> = LIVE
        .lock()
        .map(|s| s.iter().copied().collect())
        .unwrap_or_default();
    for pid in pids {
        // SAFETY: kill(2) on a pid we spawned and have not reaped.
        unsafe {
            libc::kill(pid as i32, libc::SIGKILL);
        }
    }
}

pub struct QemuProcess {
    child: tokio::process::Child,
    pid: u32,
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
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut guard = LIVE.lock().unwrap_or_else(|e| e.into_inner());
        let child = cmd.spawn().map_err(spawn_err)?;
        let pid = child.id().unwrap_or_default();
        guard.insert(pid);
        Ok(QemuProcess { child, pid })
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

    fn forget(&self) {
        if let Ok(mut s) = LIVE.lock() {
            s.remove(&self.pid);
        }
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
pub fn shell_words(binary: &Path, argv: &[String]) -> String {
    let quote = |s: &str| {
        if s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=,./:@+".contains(c))
        {
            s.to_owned()
        } else {
            format!("'{}'", s.replace('\'', r"'\''"))
        }
    };
    let mut out = quote(&binary.display().to_string());
    for a in argv {
        out.push_str(if a.starts_with('-') { " \\\n  " } else { " " });
        out.push_str(&quote(a));
    }
    out.push('\n');
    out
}
