//! `ndharness boot --topology nfit-1`'s shell, driven through a real
//! terminal: tmux (a server of the test's own) runs the command, keys go in
//! with send-keys and the screen is read with capture-pane. The shell must
//! answer (prompt, the terminal's size, `ndctl list -R`, Ctrl-C to its
//! foreground job, a resize), `exit` and Ctrl-a x must end the command with
//! the terminal out of raw mode, and no QEMU of its run folder may be left.
//! Boots real guests (warm starts once the state exists), one at a time.

mod scratch;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use scratch::{pids_matching, qemu_pids_using, repo};

/// A tmux server of this test's own, with one session; killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// Runs `command` (a shell line) in a detached 120x40 session; the line
    /// is followed by the exit code and the terminal's modes, then a pause
    /// that keeps the pane readable.
    fn start(command: &str) -> Tmux {
        static SERVERS: AtomicUsize = AtomicUsize::new(0);
        let n = SERVERS.fetch_add(1, Ordering::Relaxed);
        let socket = format!("ndharness-shell-test-{}-{n}", std::process::id());
        let t = Tmux { socket };
        let line = format!(
            "{command}; echo \"ndharness exited with $?\"; \
             echo \"modes: $(stty -a | tr ' ;' '\\n\\n' | grep -x -e icanon -e -icanon -e echo -e -echo | tr '\\n' ' ')\"; \
             sleep 3600"
        );
        t.tmux(&[
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            "120",
            "-y",
            "40",
            &line,
        ]);
        t
    }

    fn tmux(&self, args: &[&str]) -> String {
        let o = Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .output()
            .expect("tmux runs (apt-get install tmux; ci/setup-host installs it)");
        assert!(
            o.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// The pane's whole text, its history included, lines joined.
    fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-J", "-S", "-", "-t", "t"])
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "t"];
        args.extend(keys);
        self.tmux(&args);
    }

    /// Types `line` and Enter.
    fn line(&self, line: &str) {
        self.keys(&["-l", line]);
        self.keys(&["Enter"]);
    }

    /// Waits until the screen holds `needle` `times` times at least.
    fn wait_for(&self, needle: &str, times: usize, limit: Duration) -> String {
        let t0 = Instant::now();
        loop {
            let screen = self.screen();
            if screen.matches(needle).count() >= times {
                return screen;
            }
            assert!(
                t0.elapsed() < limit,
                "no {needle:?} (x{times}) on the terminal within {limit:?}; it shows:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

const PROMPT: &str = "[nfit-1] ~ # ";

/// `ndharness boot` of nfit-1 in `runs`, at its prompt.
fn boot_shell(runs: &Path) -> Tmux {
    let command = format!(
        "{} boot --topology nfit-1 --root {} --runs-dir {}",
        env!("CARGO_BIN_EXE_ndharness"),
        repo().display(),
        runs.display()
    );
    let t = Tmux::start(&command);
    // A first run may build the image and save the warm-start state.
    t.wait_for(PROMPT, 1, Duration::from_secs(300));
    t
}

/// The command ended with `code` and the terminal's modes back, and no
/// QEMU or harness of `runs` is left.
fn assert_ended(t: &Tmux, runs: &Path, code: i32) {
    let screen = t.wait_for("modes: ", 1, Duration::from_secs(60));
    assert!(
        screen.contains(&format!("ndharness exited with {code}\n")),
        "{screen}"
    );
    assert!(
        screen.contains("modes: icanon echo"),
        "raw mode left on:\n{screen}"
    );
    let qemu = qemu_pids_using(runs);
    assert!(
        qemu.is_empty(),
        "QEMU outlived the shell: pids {qemu:?}\n{screen}"
    );
    let harness = pids_matching(|c| {
        c.starts_with(env!("CARGO_BIN_EXE_ndharness")) && c.contains(&runs.display().to_string())
    });
    assert!(harness.is_empty(), "ndharness still runs: {harness:?}");
}

#[test]
fn the_shell_answers_through_a_terminal_and_exit_stops_the_guest() {
    let runs = tempfile::tempdir().unwrap();
    let t = boot_shell(runs.path());
    assert_eq!(
        qemu_pids_using(runs.path()).len(),
        1,
        "one QEMU while the shell runs"
    );
    // The host terminal's size, given at start.
    t.line("stty size");
    t.wait_for("\n40 120\n", 1, Duration::from_secs(20));
    t.line("ndctl list -R");
    t.wait_for("\"dev\":\"region0\"", 1, Duration::from_secs(30));
    // Ctrl-C reaches the foreground job: the console is the shell's
    // controlling terminal.
    t.line("sleep 100");
    std::thread::sleep(Duration::from_secs(1));
    t.keys(&["C-c"]);
    t.line("echo rc=$?");
    t.wait_for("rc=130", 1, Duration::from_secs(20));
    // Job control: a background job, listed.
    t.line("sleep 100 & jobs");
    t.wait_for("Running", 1, Duration::from_secs(20));
    // A resize reaches the guest (SIGWINCH, then stty through the agent).
    t.tmux(&["resize-window", "-t", "t", "-x", "100", "-y", "30"]);
    std::thread::sleep(Duration::from_secs(2));
    t.line("stty size");
    t.wait_for("\n30 100\n", 1, Duration::from_secs(20));
    t.line("exit 3");
    assert_ended(&t, runs.path(), 3);
    assert!(
        std::fs::read_dir(runs.path()).unwrap().next().is_none(),
        "a shell that ended well leaves no run folder"
    );
}

#[test]
fn ctrl_a_x_stops_the_guest_whatever_runs_in_it() {
    let runs = tempfile::tempdir().unwrap();
    let t = boot_shell(runs.path());
    // Something that ignores Ctrl-C holds the terminal.
    t.line("trap '' INT; sleep 1000");
    std::thread::sleep(Duration::from_secs(1));
    t.keys(&["C-c"]);
    t.keys(&["C-a", "x"]);
    assert_ended(&t, runs.path(), 0);
}
