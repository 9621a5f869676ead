//! An interactive shell in a running guest, for `ndharness boot`: a
//! `virtconsole` port added through QMP (`chardev-add` of a socket, then
//! `device_add` on the agent's virtio-serial bus), which the guest's
//! virtio_console driver makes a tty, `/dev/hvc0`; a shell started on it
//! by the agent with that tty as its controlling terminal (busybox `setsid
//! -c`), so job control and Ctrl-C work; the size of the host's terminal
//! set with `stty rows R cols C`, which also signals SIGWINCH to the
//! shell's foreground job. The port is added to the running guest rather
//! than put on the command line, so that a guest restored from a saved
//! state (whose command line must be the one it was saved with) gets it
//! as a cold boot does.

use std::time::Duration;

use qapi::qmp;
use tokio::net::UnixStream;

use super::{Error, Machine, Result};

/// The tty the guest's virtio_console driver makes of the first console
/// port: the guest has no other.
const TTY: &str = "/dev/hvc0";

/// The port's name, as the guest sees it in /sys/class/virtio-ports.
const PORT_NAME: &str = "org.ndharness.shell.0";

/// A terminal's size, in character cells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size {
    pub rows: u16,
    pub cols: u16,
}

/// What the shell looks like: the terminal type and size, and the name its
/// prompt shows.
#[derive(Clone, Debug)]
pub struct ShellSpec {
    pub term: String,
    pub size: Option<Size>,
    pub name: String,
}

/// A shell running in the guest: its console's host end and its pid for
/// the agent.
pub struct GuestShell {
    pub console: UnixStream,
    pub pid: i64,
}

impl Machine {
    /// Adds the console port, connects to it and starts the shell on it.
    pub async fn open_shell(&self, spec: &ShellSpec) -> Result<GuestShell> {
        let files = &self.run.files;
        let socket = qmp::ChardevSocket {
            base: qmp::ChardevCommon {
                logappend: None,
                logfile: Some(files.shell_log.display().to_string()),
            },
            nodelay: None,
            reconnect: None,
            server: Some(true),
            telnet: None,
            tls_authz: None,
            tls_creds: None,
            tn3270: None,
            wait: Some(false),
            websocket: None,
            addr: qmp::SocketAddressLegacy::unix(
                qmp::UnixSocketAddress {
                    abstract_: None,
                    tight: None,
                    path: files.shell_socket.display().to_string(),
                }
                .into(),
            ),
        };
        self.qmp
            .execute(qmp::chardev_add {
                id: "shell0chr".into(),
                backend: qmp::ChardevBackend::socket(socket.into()),
            })
            .await?;
        let mut arguments = qapi::Dictionary::new();
        arguments.insert("chardev".into(), "shell0chr".into());
        arguments.insert("name".into(), PORT_NAME.into());
        self.qmp
            .execute(qmp::device_add {
                driver: "virtconsole".into(),
                bus: Some("vser0.0".into()),
                id: Some("shell0".into()),
                arguments,
            })
            .await?;
        // Connected before the shell starts, so that its first prompt is
        // not lost (QEMU drops what a port sends with no client).
        let console = UnixStream::connect(&files.shell_socket)
            .await
            .map_err(|e| Error::Shell(format!("{}: {e}", files.shell_socket.display())))?;
        let args = ["-c".to_owned(), launch_script(spec)];
        let spawned = self.agent.spawn("/bin/sh", &args, false);
        let pid = self.guard("while starting the shell", spawned).await??;
        Ok(GuestShell { console, pid })
    }

    /// Gives the shell's terminal `size`: the kernel tells its foreground
    /// job (SIGWINCH).
    pub async fn resize_shell(&self, size: Size) -> Result<()> {
        let argv = stty(size);
        let out = self.exec(&argv, Duration::from_secs(10)).await?;
        if !out.success() {
            return Err(Error::Shell(format!(
                "`{}`: {}",
                argv.join(" "),
                out.stderr_text().trim()
            )));
        }
        Ok(())
    }

    /// The shell's exit code once it has ended (`Some(None)`: a signal
    /// ended it); `None` while it runs.
    pub async fn session_ended(&self, shell: &GuestShell) -> Result<Option<Option<i32>>> {
        let status = self.agent.status(shell.pid);
        let out = self.guard("while the shell runs", status).await??;
        Ok(out.map(|o| o.exit_code))
    }
}

fn stty(size: Size) -> Vec<String> {
    [
        "stty",
        "-F",
        TTY,
        "rows",
        &size.rows.to_string(),
        "cols",
        &size.cols.to_string(),
    ]
    .map(str::to_owned)
    .to_vec()
}

/// The guest's shell line that waits for the console's tty (the port's
/// driver binds it a moment after `device_add`), opens it, sizes it (once
/// open: the tty of a console nobody holds open is made anew, size zero, on
/// the next open) and becomes an interactive shell with it as controlling
/// terminal.
fn launch_script(spec: &ShellSpec) -> String {
    let quote = crate::command_line::quote;
    let size = spec
        .size
        .map(|s| format!("stty rows {} cols {}; ", s.rows, s.cols))
        .unwrap_or_default();
    let prompt = format!("[{}] \\w # ", spec.name);
    format!(
        "i=0; until : <>{TTY} 2>/dev/null; do i=$((i + 1)); \
         [ $i -gt 200 ] && {{ echo 'no console at {TTY}' >&2; exit 1; }}; sleep 0.05; done; \
         exec <>{TTY} >&0 2>&0; {size}cd /root 2>/dev/null || cd /; \
         export TERM={} PS1={} HOME=/root; exec setsid -c sh -i",
        quote(&spec.term),
        quote(&prompt)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shell_gets_its_tty_as_controlling_terminal_and_the_hosts_size() {
        let spec = ShellSpec {
            term: "tmux-256color".into(),
            size: Some(Size {
                rows: 40,
                cols: 120,
            }),
            name: "nfit-1".into(),
        };
        let s = launch_script(&spec);
        assert!(
            s.contains("exec <>/dev/hvc0 >&0 2>&0; stty rows 40 cols 120; cd /root"),
            "{s}"
        );
        assert!(
            s.contains(r#"export TERM=tmux-256color PS1="[nfit-1] \\w # ""#),
            "{s}"
        );
        assert!(s.ends_with("exec setsid -c sh -i"), "{s}");
        let s = launch_script(&ShellSpec { size: None, ..spec });
        assert!(!s.contains("stty"), "{s}");
    }
}
