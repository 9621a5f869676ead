//! One supervisor for every process the harness starts: QEMU
//! ([`crate::vm::QemuProcess`]) and the host tools ([`crate::tool`]). Each
//! is the leader of a process group of its own, dies with the harness
//! (PR_SET_PDEATHSIG; for a tool that drops privileges, which clears it,
//! a [`Watcher`] in its group), and is in one registry from before it can
//! be interrupted until it is reaped, so that the Ctrl-C handler
//! ([`kill_all`]) ends every group, with their children (make's compilers,
//! QEMU's helpers).
//!
//! Chosen over `process-wrap` (the successor of `command-group`): what it
//! adds is the group spawn and `killpg`, one call each in std; a registry a
//! signal handler can empty, the parent-death signal and the watcher are
//! ours either way.

use std::collections::BTreeSet;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};

/// The process groups alive now (their leaders spawned, not yet reaped).
static LIVE: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

fn live() -> MutexGuard<'static, BTreeSet<i32>> {
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Kills every process group the harness started (SIGKILL): for the
/// Ctrl-C handler. It waits for a spawn under way, which registers first.
pub fn kill_all() {
    for pgid in live().iter() {
        kill_group(*pgid);
    }
}

/// Whether group `pgid` is in the registry.
pub fn is_enrolled(pgid: i32) -> bool {
    live().contains(&pgid)
}

/// Kills one supervised group.
pub fn kill_group(pgid: i32) {
    // SAFETY: killpg(2) on a group whose leader this process spawned and
    // has not reaped, so the id cannot name anyone else's group.
    unsafe {
        libc::killpg(pgid, libc::SIGKILL);
    }
}

/// Makes `cmd` start as the leader of a group of its own that dies with
/// the harness. (A `tokio::process::Command` gives its std one with
/// `as_std_mut`.)
pub fn supervise(cmd: &mut Command) {
    cmd.process_group(0);
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork
    // and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// The registry held while a process is spawned, so that Ctrl-C cannot
/// fall between its start and its registration.
pub struct Spawning(MutexGuard<'static, BTreeSet<i32>>);

/// Takes the registry for one spawn: `let s = spawning(); let child =
/// cmd.spawn()?; s.enroll(child.id())`.
pub fn spawning() -> Spawning {
    Spawning(live())
}

impl Spawning {
    /// Registers the spawned group `pgid` (its leader's pid).
    pub fn enroll(mut self, pgid: u32) -> Enrolled {
        let pgid = pgid as i32;
        self.0.insert(pgid);
        Enrolled(pgid)
    }
}

/// A group in the registry; leaves it when dropped (after its leader is
/// reaped, or when it is known dead).
#[derive(Debug)]
pub struct Enrolled(i32);

impl Enrolled {
    pub fn pgid(&self) -> i32 {
        self.0
    }

    /// Kills the whole group.
    pub fn kill(&self) {
        kill_group(self.0);
    }
}

impl Drop for Enrolled {
    fn drop(&mut self) {
        live().remove(&self.0);
    }
}

/// A watcher in a group that kills the group should the harness die: its
/// stdin is a pipe only the harness holds open, and when the harness is
/// gone, however it went, the pipe ends and the watcher kills its own
/// group. PR_SET_PDEATHSIG alone is not enough: the kernel clears it when
/// a process changes its credentials (apt-get drops privileges for its
/// downloads), and such a tool outlived a SIGKILLed harness. The watcher
/// dies with its group when the harness kills it.
pub struct Watcher {
    child: std::process::Child,
    /// The pipe's writing end: held, never written.
    _held: File,
}

impl Watcher {
    pub fn start(pgid: i32) -> std::io::Result<Watcher> {
        let (read, write) = pipe()?;
        let child = Command::new("sh")
            .args(["-c", "read _; kill -KILL 0"])
            .stdin(Stdio::from(read))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(pgid)
            .spawn()?;
        Ok(Watcher {
            child,
            _held: write,
        })
    }

    /// Waits for the watcher, killed with its group.
    pub fn reap(mut self) {
        let _ = self.child.wait();
    }
}

/// A pipe whose ends no child inherits by accident (close on exec; a
/// command's stdio dups the end it is given).
pub fn pipe() -> std::io::Result<(std::process::ChildStdout, File)> {
    use std::os::fd::{FromRawFd, OwnedFd};
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two descriptors it is given; each is owned
    // once, by the value made from it.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
    Ok((std::process::ChildStdout::from(read), write))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_is_registered_until_dropped_and_killed_whole() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "sleep 30 & wait"]);
        supervise(&mut cmd);
        let registry = spawning();
        let mut child = cmd.spawn().unwrap();
        let enrolled = registry.enroll(child.id());
        assert!(live().contains(&enrolled.pgid()));
        enrolled.kill();
        let status = child.wait().unwrap();
        assert!(!status.success());
        drop(enrolled);
        assert!(!live().contains(&(child.id() as i32)));
    }
}
