//! The host tools the harness runs (apt-get, dpkg-deb, depmod, tar, strip,
//! make, the chroot builds, git in `bisect`): each one under a deadline, in
//! a process group of its own that dies with it, and with its last lines
//! of output in every error.
//!
//! A tool that does not finish within its [`Limit`] is killed, the whole
//! group (make's compilers too) with SIGKILL, and the error says so:
//! "`TOOL` did not finish within 10m: killed", then its last lines. The
//! groups of the tools running now are in [`crate::supervisor`]'s registry,
//! which the Ctrl-C handler empties, since a tool in a group of its own
//! does not get the terminal's SIGINT.
//!
//! The deadlines, and how the environment changes them
//! (`NDHARNESS_TOOL_TIMEOUT_<KEY>`, `NDHARNESS_TOOL_TIMEOUT_SCALE`), are in
//! [`limit`].

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use crate::supervisor::{pipe, Enrolled, Watcher};

pub mod limit;
pub use limit::*;

/// How many of a tool's last output lines an error carries.
pub const TAIL_LINES: usize = 20;

/// How long a killed or finished tool's output may take to drain.
const DRAIN: Duration = Duration::from_secs(5);

/// A tool's last lines of output, as an error shows them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tail(pub Vec<String>);

impl std::fmt::Display for Tail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return Ok(());
        }
        write!(f, "; its last lines of output:")?;
        for line in &self.0 {
            write!(f, "\n    {line}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to run {tool}: {source}{}", install_hint(source))]
    Spawn {
        tool: String,
        source: std::io::Error,
    },
    #[error("{tool} did not finish within {}: killed{tail}", humantime::format_duration(*deadline))]
    Timeout {
        tool: String,
        deadline: Duration,
        tail: Tail,
    },
    #[error("failed to run {tool}: {status}{tail}")]
    Failed {
        tool: String,
        status: ExitStatus,
        tail: Tail,
        /// All it wrote to stderr (captured tools), for callers that tell
        /// one failure from another.
        stderr: String,
    },
    #[error("failed to write {path}: {source}")]
    Log {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn install_hint(e: &std::io::Error) -> &'static str {
    if e.kind() == std::io::ErrorKind::NotFound {
        "; run ci/setup-host to install the host tools"
    } else {
        ""
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// What a tool did.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    /// Its stdout and stderr, when captured apart (the default; empty with
    /// [`Tool::merged`], [`Tool::log`], [`Tool::inherit`]; no stdout with
    /// [`Tool::stdout_to`]).
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub tail: Tail,
}

impl Finished {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Where a tool's output goes.
enum Output<'a> {
    /// Kept: stdout and stderr in [`Finished`].
    Capture,
    /// stdout and stderr into one pipe, so the tail has their lines in the
    /// order they were written; only the tail is kept.
    Merged,
    /// Both, through one pipe, appended to a log file.
    Log(&'a Path),
    /// stdout to a file, stderr kept.
    StdoutTo(File),
    /// The harness's own stdout and stderr (no tail).
    Inherit,
}

/// One run of a host tool: `Tool::new(LIMIT, &mut cmd)`, where to send
/// its output, then [`Tool::run`] or [`Tool::output`].
pub struct Tool<'a> {
    cmd: &'a mut Command,
    limit: Limit,
    shown: String,
    output: Output<'a>,
    on_line: Option<&'a mut dyn FnMut(&str)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stream {
    Out,
    Err,
}

enum Event {
    Line(Stream, Vec<u8>),
    Eof,
    Exited,
}

impl<'a> Tool<'a> {
    pub fn new(limit: Limit, cmd: &'a mut Command) -> Tool<'a> {
        Tool {
            cmd,
            limit,
            shown: limit.name.to_owned(),
            output: Output::Capture,
            on_line: None,
        }
    }

    /// How errors name the tool (default: the limit's name).
    pub fn shown(mut self, name: impl Into<String>) -> Self {
        self.shown = name.into();
        self
    }

    /// Keeps only the last lines of stdout and stderr, in the order they
    /// were written (for a tool whose output is read by no one).
    pub fn merged(mut self) -> Self {
        self.output = Output::Merged;
        self
    }

    /// Appends stdout and stderr to `log`.
    pub fn log(mut self, log: &'a Path) -> Self {
        self.output = Output::Log(log);
        self
    }

    /// Sends stdout to `file`; stderr is kept.
    pub fn stdout_to(mut self, file: File) -> Self {
        self.output = Output::StdoutTo(file);
        self
    }

    /// Leaves stdout and stderr to the harness's own (a tool the user
    /// watches, such as `git bisect run`).
    pub fn inherit(mut self) -> Self {
        self.output = Output::Inherit;
        self
    }

    /// Calls `f` with each line of output as it comes (not with
    /// [`Tool::inherit`]).
    pub fn on_line(mut self, f: &'a mut dyn FnMut(&str)) -> Self {
        self.on_line = Some(f);
        self
    }

    /// Runs the tool to its end; an exit status other than 0 is an error
    /// carrying its last lines of output.
    pub fn run(self) -> Result<Finished> {
        let tool = self.shown.clone();
        let done = self.output()?;
        if done.status.success() {
            return Ok(done);
        }
        Err(Error::Failed {
            tool,
            status: done.status,
            stderr: String::from_utf8_lossy(&done.stderr).into_owned(),
            tail: done.tail,
        })
    }

    /// Runs the tool to its end, whatever its exit status; errors only
    /// when it would not start, or did not finish within its deadline.
    pub fn output(mut self) -> Result<Finished> {
        let deadline = self.limit.deadline();
        let (mut child, group) = self.spawn()?;
        let pgid = group.pgid();
        // Without a watcher the tool still has PR_SET_PDEATHSIG.
        let watcher = Watcher::start(pgid).ok();
        let (tx, rx) = mpsc::channel();
        let mut streams = 0;
        if let Some(out) = child.stdout.take() {
            read_lines(out, Stream::Out, tx.clone());
            streams += 1;
        }
        if let Some(err) = child.stderr.take() {
            read_lines(err, Stream::Err, tx.clone());
            streams += 1;
        }
        wait_for_exit(pgid, tx);
        let mut sink = Sink::new(&mut self);
        let started = Instant::now();
        let mut exited = false;
        let mut timed_out = false;
        while !exited && !timed_out {
            let left = deadline.saturating_sub(started.elapsed());
            match rx.recv_timeout(left) {
                Ok(Event::Exited) => exited = true,
                Ok(Event::Eof) => streams -= 1,
                Ok(Event::Line(stream, bytes)) => sink.take(stream, &bytes),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => timed_out = true,
            }
        }
        // The whole group goes: a hung tool, or what a finished one left
        // (and the watcher).
        group.kill();
        if let Some(watcher) = watcher {
            watcher.reap();
        }
        let drain_until = Instant::now() + DRAIN;
        while !exited || streams > 0 {
            let left = drain_until.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(Event::Exited) => exited = true,
                Ok(Event::Eof) => streams -= 1,
                Ok(Event::Line(stream, bytes)) => sink.take(stream, &bytes),
                Err(_) => break,
            }
        }
        let status = if exited {
            child.wait().ok()
        } else {
            // Not even SIGKILL ended it (a process stuck in the kernel):
            // left to the kernel rather than waited for.
            None
        };
        let (tail, stdout, stderr, log_error) = sink.finish();
        match status {
            Some(status) if !timed_out => match log_error {
                Some(e) => Err(e),
                None => Ok(Finished {
                    status,
                    stdout,
                    stderr,
                    tail,
                }),
            },
            _ => Err(Error::Timeout {
                tool: self.shown,
                deadline,
                tail,
            }),
        }
    }

    /// Starts the tool as the leader of a new process group, registered
    /// before anyone can interrupt.
    fn spawn(&mut self) -> Result<(std::process::Child, Enrolled)> {
        self.cmd.stdin(Stdio::null());
        let mut merged = None;
        self.output = match std::mem::replace(&mut self.output, Output::Capture) {
            Output::StdoutTo(file) => {
                // No stdout reaches the sink: only stderr is piped.
                self.cmd.stdout(file).stderr(Stdio::piped());
                Output::Capture
            }
            Output::Inherit => Output::Inherit,
            Output::Capture => {
                self.cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
                Output::Capture
            }
            one_pipe => {
                let (read, write) = pipe().map_err(|source| Error::Spawn {
                    tool: self.shown.clone(),
                    source,
                })?;
                let write_too = write.try_clone().map_err(|source| Error::Spawn {
                    tool: self.shown.clone(),
                    source,
                })?;
                self.cmd.stdout(write).stderr(write_too);
                merged = Some(read);
                one_pipe
            }
        };
        crate::supervisor::supervise(self.cmd);
        let registry = crate::supervisor::spawning();
        let spawned = self.cmd.spawn();
        if merged.is_some() {
            // The command keeps its copies of the pipe's writing end: the
            // reader would never see the end of the output.
            self.cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
        let mut child = spawned.map_err(|source| Error::Spawn {
            tool: self.shown.clone(),
            source,
        })?;
        let group = registry.enroll(child.id());
        if let Some(read) = merged {
            child.stdout = Some(read);
        }
        Ok((child, group))
    }
}

/// Sends each line of `pipe` to `tx`, then its end.
fn read_lines(pipe: impl std::io::Read + Send + 'static, stream: Stream, tx: Sender<Event>) {
    std::thread::spawn(move || {
        let mut reader = std::io::BufReader::new(pipe);
        loop {
            let mut line = Vec::new();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if tx.send(Event::Line(stream, line)).is_err() {
                        return;
                    }
                }
            }
        }
        let _ = tx.send(Event::Eof);
    });
}

/// Tells `tx` when the process `pid` has exited, without reaping it: until
/// it is reaped its id cannot be reused, so killing its group stays safe.
fn wait_for_exit(pid: i32, tx: Sender<Event>) {
    std::thread::spawn(move || {
        loop {
            // SAFETY: waitid fills the siginfo it is given; WNOWAIT leaves
            // the child to be reaped by its owner.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            let r = unsafe {
                libc::waitid(
                    libc::P_PID,
                    pid as libc::id_t,
                    &mut info,
                    libc::WEXITED | libc::WNOWAIT,
                )
            };
            if r == 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                break;
            }
        }
        let _ = tx.send(Event::Exited);
    });
}

/// Where the lines of one run go: the log, the captured output, the tail,
/// the caller's callback.
struct Sink<'s, 'a> {
    log: Option<(PathBuf, Option<File>)>,
    capture_stdout: bool,
    on_line: Option<&'s mut (dyn FnMut(&str) + 'a)>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    tail: VecDeque<String>,
    log_error: Option<Error>,
}

impl<'s, 'a> Sink<'s, 'a> {
    fn new(tool: &'s mut Tool<'a>) -> Self {
        let mut log_error = None;
        let log = match tool.output {
            Output::Log(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| {
                        log_error = Some(Error::Log {
                            path: path.to_owned(),
                            source,
                        })
                    })
                    .ok();
                Some((path.to_owned(), file))
            }
            _ => None,
        };
        Sink {
            capture_stdout: matches!(tool.output, Output::Capture),
            log,
            on_line: tool.on_line.as_deref_mut(),
            stdout: Vec::new(),
            stderr: Vec::new(),
            tail: VecDeque::new(),
            log_error,
        }
    }

    fn take(&mut self, stream: Stream, bytes: &[u8]) {
        if let Some((path, Some(file))) = &mut self.log {
            if let Err(source) = file.write_all(bytes) {
                self.log_error.get_or_insert(Error::Log {
                    path: path.clone(),
                    source,
                });
            }
        } else if stream == Stream::Err {
            self.stderr.extend_from_slice(bytes);
        } else if self.capture_stdout {
            self.stdout.extend_from_slice(bytes);
        }
        let text = String::from_utf8_lossy(bytes);
        let line = text.trim_end_matches(['\n', '\r']);
        if let Some(f) = self.on_line.as_mut() {
            f(line);
        }
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line.to_owned());
    }

    fn finish(self) -> (Tail, Vec<u8>, Vec<u8>, Option<Error>) {
        (
            Tail(self.tail.into()),
            self.stdout,
            self.stderr,
            self.log_error,
        )
    }
}

#[cfg(test)]
mod tests;
