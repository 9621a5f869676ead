//! The host's half of `ndharness boot`'s interactive shell: the terminal
//! in raw mode (restored on every way out: the end of the session, an
//! error, a panic's unwinding, and the Ctrl-C handler's exit through
//! [`restore_terminal`]), keystrokes to the guest's console and its output
//! to the terminal, the terminal's size at start and on SIGWINCH, and the
//! escape that stops the guest whatever runs in it: Ctrl-a x, as in QEMU's
//! own console (Ctrl-a a sends a Ctrl-a). The guest's half is
//! [`ndharness::vm::machine::shell`].

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ndharness::vm::machine::shell::{GuestShell, ShellSpec, Size};
use ndharness::vm::machine::Error as GuestError;
use ndharness::vm::Machine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

/// Ctrl-a: the escape's first key.
const ESCAPE: u8 = 0x01;

/// The terminal's settings before raw mode, for every way out.
static SAVED: Mutex<Option<libc::termios>> = Mutex::new(None);

/// How a session ended.
pub enum End {
    /// The shell exited (its exit code; none when a signal ended it).
    Exited(Option<i32>),
    /// Ctrl-a x.
    Escape,
    /// The terminal went away, or the harness was asked to stop (SIGHUP,
    /// SIGTERM): the signal's number.
    Signal(i32),
    /// The guest panicked or QEMU exited.
    Gone(GuestError),
}

/// Whether `boot` opens a shell: stdin is a terminal, and this process is
/// in its foreground (a job started with `&` keeps the old behaviour rather
/// than be stopped by the terminal).
pub fn wanted() -> bool {
    // SAFETY: plain queries on fd 0 and on this process.
    unsafe { libc::isatty(0) == 1 && libc::tcgetpgrp(0) == libc::getpgrp() }
}

/// The host terminal's size, if it has one.
fn window_size() -> Option<Size> {
    // SAFETY: TIOCGWINSZ fills the winsize it is given.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_row > 0 && ws.ws_col > 0).then_some(Size {
        rows: ws.ws_row,
        cols: ws.ws_col,
    })
}

/// Puts the terminal back as it was before the shell (nothing when it is
/// not in raw mode): safe to call from any thread, any number of times.
pub fn restore_terminal() {
    let saved = SAVED.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(t) = saved {
        // SAFETY: tcsetattr with settings tcgetattr gave.
        unsafe {
            libc::tcsetattr(0, libc::TCSANOW, &t);
        }
    }
}

/// Raw mode while it lives: every key goes to the guest (Ctrl-C, Ctrl-Z
/// included), nothing is echoed or translated on the host.
struct RawMode;

impl RawMode {
    fn enter() -> std::io::Result<RawMode> {
        // SAFETY: tcgetattr/cfmakeraw/tcsetattr on a termios of our own.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut t) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            *SAVED.lock().unwrap_or_else(|e| e.into_inner()) = Some(t);
            let mut raw = t;
            libc::cfmakeraw(&mut raw);
            if libc::tcsetattr(0, libc::TCSANOW, &raw) != 0 {
                let e = std::io::Error::last_os_error();
                restore_terminal();
                return Err(e);
            }
        }
        Ok(RawMode)
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// The escape key sequence, across reads: what goes to the guest, and
/// whether Ctrl-a x was typed.
#[derive(Default)]
struct Escape {
    after_ctrl_a: bool,
}

impl Escape {
    fn feed(&mut self, bytes: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(bytes.len());
        for &b in bytes {
            if std::mem::take(&mut self.after_ctrl_a) {
                match b {
                    b'x' => return (out, true),
                    ESCAPE | b'a' => out.push(ESCAPE),
                    other => out.extend([ESCAPE, other]),
                }
            } else if b == ESCAPE {
                self.after_ctrl_a = true;
            } else {
                out.push(b);
            }
        }
        (out, false)
    }
}

/// Opens the shell in `m` and relays the terminal to it until it ends.
pub async fn session(m: &Machine, name: &str) -> anyhow::Result<End> {
    let spec = ShellSpec {
        term: std::env::var("TERM").unwrap_or_else(|_| "vt100".into()),
        size: window_size(),
        name: name.to_owned(),
    };
    let shell = m.open_shell(&spec).await?;
    eprintln!("shell in the guest: `exit` or Ctrl-a x stops the guest (Ctrl-a a sends Ctrl-a)");
    let raw = RawMode::enter()?;
    let end = relay(m, shell).await;
    drop(raw);
    end
}

/// Stops the stdin thread when the session ends, however it ends.
struct StopFlag(Arc<AtomicBool>);

impl Drop for StopFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

async fn relay(m: &Machine, mut shell: GuestShell) -> anyhow::Result<End> {
    let (tx, mut keys) = mpsc::channel(16);
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || read_stdin(&tx, &flag));
    let _stop = StopFlag(stop);
    let mut winch = signal(SignalKind::window_change())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut escape = Escape::default();
    let mut buf = vec![0u8; 16 << 10];
    let gone = m.gone("while the shell ran");
    tokio::pin!(gone);
    loop {
        tokio::select! {
            input = keys.recv() => {
                let Some(bytes) = input else { return Ok(End::Signal(libc::SIGHUP)) };
                let (send, quit) = escape.feed(&bytes);
                shell.console.write_all(&send).await?;
                if quit {
                    return Ok(End::Escape);
                }
            }
            n = shell.console.read(&mut buf) => {
                match n? {
                    // QEMU closed its end: it is going away.
                    0 => return Ok(End::Gone(gone.await)),
                    n => write_out(&buf[..n])?,
                }
            }
            _ = winch.recv() => {
                if let Some(size) = window_size() {
                    // A size the guest missed is no reason to end the session.
                    let _ = m.resize_shell(size).await;
                }
            }
            _ = hup.recv() => return Ok(End::Signal(libc::SIGHUP)),
            _ = term.recv() => return Ok(End::Signal(libc::SIGTERM)),
            _ = tick.tick() => {
                if let Some(code) = m.session_ended(&shell).await? {
                    drain(&mut shell, &mut buf).await?;
                    return Ok(End::Exited(code));
                }
            }
            e = &mut gone => return Ok(End::Gone(e)),
        }
    }
}

/// What the console still sends after the shell ended (its last words).
async fn drain(shell: &mut GuestShell, buf: &mut [u8]) -> std::io::Result<()> {
    let wait = Duration::from_millis(100);
    while let Ok(Ok(n @ 1..)) = tokio::time::timeout(wait, shell.console.read(buf)).await {
        write_out(&buf[..n])?;
    }
    Ok(())
}

fn write_out(bytes: &[u8]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()
}

/// Reads the terminal on a thread of its own (a read cannot be cancelled;
/// polling with a short timeout lets the thread see the session's end).
fn read_stdin(keys: &mpsc::Sender<Vec<u8>>, stop: &AtomicBool) {
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        let mut pfd = libc::pollfd {
            fd: 0,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll and read on fd 0 with buffers of our own.
        let ready = unsafe { libc::poll(&mut pfd, 1, 100) };
        if ready == 0 || (ready < 0 && interrupted()) {
            continue;
        }
        if ready < 0 {
            return;
        }
        let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 && interrupted() {
            continue;
        }
        // End of input: the terminal is gone.
        if n <= 0 || keys.blocking_send(buf[..n as usize].to_vec()).is_err() {
            return;
        }
    }
}

fn interrupted() -> bool {
    let e = std::io::Error::last_os_error().kind();
    matches!(
        e,
        std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctrl_a_x_ends_and_ctrl_a_a_sends_one_ctrl_a() {
        let mut e = Escape::default();
        assert_eq!(e.feed(b"ls\r"), (b"ls\r".to_vec(), false));
        assert_eq!(e.feed(b"\x01a\x01\x01"), (vec![ESCAPE, ESCAPE], false));
        // Ctrl-a then any other key: both go to the guest.
        assert_eq!(e.feed(b"\x01c"), (vec![ESCAPE, b'c'], false));
        // Split across reads.
        assert_eq!(e.feed(b"echo\x01"), (b"echo".to_vec(), false));
        assert_eq!(e.feed(b"x"), (vec![], true));
        let mut e = Escape::default();
        assert_eq!(e.feed(b"a\x03\x01xyz"), (b"a\x03".to_vec(), true));
    }
}
