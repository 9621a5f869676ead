//! A minimal GDB remote-serial-protocol client for QEMU's gdbstub over a
//! Unix socket: breakpoints, continue, step, registers and memory, with a
//! deadline on every call and typed errors. Enough to stop a guest at a
//! kernel function (the label-write entry, `nsio_rw_bytes`) and read its
//! arguments.
//!
//! QEMU 10.0.2's stub, as this client relies on it:
//! - connecting pauses the VM; [`GdbClient::detach`] removes every
//!   breakpoint and lets it run again. Closing without detaching leaves
//!   both in place, so a client dropped undetached detaches best-effort;
//! - it has no no-ack mode: it acks each packet with `+` and expects a `+`
//!   for each reply (it never waits for it);
//! - while the VM runs, any byte but 0x03 pauses it without a stop reply,
//!   so nothing is sent between [`GdbClient::cont`] and the stop but
//!   [`GdbClient::interrupt`];
//! - a breakpoint at the resume address fires again at once: step off it
//!   ([`GdbClient::step`]) before continuing.

mod packet;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::time::Instant;

use packet::{Decoder, Received};
pub use packet::{ParseError, StopEvent, StopReply, SIGINT, SIGTRAP};

/// The deadline of a call that the guest does not have to reach first.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// The largest memory read in one `m` packet (QEMU's packet buffer is
/// 4 KiB, and a reply takes two hex digits a byte).
const MEMORY_CHUNK: usize = 1024;

/// How often a packet the stub refused (`-`) is sent again.
const RESENDS: usize = 3;

/// x86_64 register numbers in QEMU's gdbstub (target/i386/gdbstub.c),
/// also their places in a `g` reply.
pub mod x86_64 {
    pub const RAX: u32 = 0;
    pub const RBX: u32 = 1;
    pub const RCX: u32 = 2;
    pub const RDX: u32 = 3;
    pub const RSI: u32 = 4;
    pub const RDI: u32 = 5;
    pub const RBP: u32 = 6;
    pub const RSP: u32 = 7;
    pub const R8: u32 = 8;
    pub const R9: u32 = 9;
    pub const RIP: u32 = 16;
}

/// The stopped CPU's general registers and RIP, read in one round trip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Registers([u64; packet::GENERAL_REGISTERS]);

impl Registers {
    /// Register `number` ([`x86_64`] numbering, RIP at most).
    pub fn get(&self, number: u32) -> u64 {
        self.0[number as usize]
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to connect to the gdbstub at {path}: {source}")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("gdbstub `{command}`: {source}")]
    Io {
        command: String,
        source: std::io::Error,
    },
    #[error("gdbstub `{command}` got no answer within {timeout:?}")]
    Timeout { command: String, timeout: Duration },
    #[error("gdbstub closed the connection during `{command}` (QEMU exited?)")]
    Closed { command: String },
    #[error("gdbstub refused `{command}` {attempts} times (bad checksum)")]
    Nacked { command: String, attempts: usize },
    #[error("gdbstub answered `{command}` with error {code:#04x}")]
    Refused { command: String, code: u8 },
    #[error("gdbstub does not support `{command}` (empty reply)")]
    Unsupported { command: String },
    #[error("gdbstub answered `{command}` with `{reply}`: {problem}")]
    Malformed {
        command: String,
        reply: String,
        problem: ParseError,
    },
    #[error(
        "gdbstub `{command}` sent while the guest runs: interrupt and wait for the stop first"
    )]
    Running { command: String },
    #[error("the guest is gone during `{command}`: {event:?}")]
    TargetGone { command: String, event: StopEvent },
}

pub type Result<T> = std::result::Result<T, Error>;

/// A connection to one gdbstub.
pub struct GdbClient {
    stream: UnixStream,
    decoder: Decoder,
    received: VecDeque<Received>,
    timeout: Duration,
    /// A `c` was sent and its stop not read yet.
    running: bool,
    detached: bool,
}

impl GdbClient {
    /// Connects to the stub at `socket`, retrying while QEMU creates it,
    /// for at most `timeout` (also the deadline of later calls). The VM is
    /// paused from here until [`GdbClient::cont`] or [`GdbClient::detach`].
    pub async fn connect(socket: &Path, timeout: Duration) -> Result<GdbClient> {
        let deadline = Instant::now() + timeout;
        loop {
            let attempt = tokio::time::timeout_at(deadline, UnixStream::connect(socket)).await;
            let Ok(attempt) = attempt else {
                let command = "connect".to_owned();
                return Err(Error::Timeout { command, timeout });
            };
            match attempt {
                Ok(stream) => return Ok(GdbClient::over(stream, timeout)),
                Err(e) if Instant::now() < deadline && retryable(&e) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(source) => {
                    return Err(Error::Connect {
                        path: socket.to_owned(),
                        source,
                    })
                }
            }
        }
    }

    /// A client over a connected stream, `timeout` the deadline of a call.
    pub fn over(stream: UnixStream, timeout: Duration) -> GdbClient {
        GdbClient {
            stream,
            decoder: Decoder::default(),
            received: VecDeque::new(),
            timeout,
            running: false,
            detached: false,
        }
    }

    /// Why the target is stopped (`?`): after connecting, `T05…`.
    pub async fn halt_reason(&mut self) -> Result<StopReply> {
        let reply = self.transact("?").await?;
        stopped("?", &reply)
    }

    /// A breakpoint at `addr` (`Z0`). Under TCG it never touches guest
    /// memory, so read-only kernel text is fine and there is no limit.
    pub async fn set_breakpoint(&mut self, addr: u64) -> Result<()> {
        let command = format!("Z0,{addr:x},1");
        let reply = self.transact(&command).await?;
        expect_ok(&command, &reply)
    }

    /// Removes the breakpoint at `addr` (`z0`).
    pub async fn remove_breakpoint(&mut self, addr: u64) -> Result<()> {
        let command = format!("z0,{addr:x},1");
        let reply = self.transact(&command).await?;
        expect_ok(&command, &reply)
    }

    /// Lets the guest run (`c`); the stop comes through
    /// [`GdbClient::wait_stop`]. From a breakpoint address, step first.
    pub async fn cont(&mut self) -> Result<()> {
        self.ensure_stopped("c")?;
        let deadline = Instant::now() + self.timeout;
        self.send("c", deadline).await?;
        self.running = true;
        Ok(())
    }

    /// Waits up to `timeout` for the guest to stop (a breakpoint, or the
    /// stop an [`GdbClient::interrupt`] asked for). On a timeout the guest
    /// is still running.
    pub async fn wait_stop(&mut self, timeout: Duration) -> Result<StopReply> {
        let deadline = Instant::now() + timeout;
        let reply = self.receive("c", deadline, timeout).await?;
        self.running = false;
        stopped("c", &reply)
    }

    /// Executes one instruction (`s`), breakpoints at the current address
    /// ignored, and returns the stop that follows it.
    pub async fn step(&mut self) -> Result<StopReply> {
        let reply = self.transact("s").await?;
        stopped("s", &reply)
    }

    /// Register `number` of the CPU that stopped ([`x86_64`] numbering).
    pub async fn read_register(&mut self, number: u32) -> Result<u64> {
        let command = format!("p{number:x}");
        let reply = self.transact(&command).await?;
        packet::parse_register(&reply).map_err(|problem| malformed(&command, &reply, problem))
    }

    /// The general registers and RIP of the CPU that stopped (`g`): one
    /// round trip where [`GdbClient::read_register`] takes one a register.
    pub async fn read_registers(&mut self) -> Result<Registers> {
        let reply = self.transact("g").await?;
        packet::parse_registers(&reply)
            .map(Registers)
            .map_err(|problem| malformed("g", &reply, problem))
    }

    /// `len` bytes of guest virtual memory at `addr`, as the stopped CPU
    /// sees it, in reads of at most 1 KiB.
    pub async fn read_memory(&mut self, addr: u64, len: usize) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let at = addr.wrapping_add(out.len() as u64);
            let want = (len - out.len()).min(MEMORY_CHUNK);
            let command = format!("m{at:x},{want:x}");
            let reply = self.transact(&command).await?;
            let bytes = packet::decode_hex(&reply)
                .map_err(|problem| malformed(&command, &reply, problem))?;
            if bytes.len() != want {
                let problem = ParseError::MemoryLength {
                    expected: want,
                    got: bytes.len(),
                };
                return Err(malformed(&command, &reply, problem));
            }
            out.extend_from_slice(&bytes);
        }
        Ok(out)
    }

    /// Asks a running guest to stop (the raw byte 0x03, no packet); the
    /// stop, signal [`SIGINT`], comes through [`GdbClient::wait_stop`].
    pub async fn interrupt(&mut self) -> Result<()> {
        let deadline = Instant::now() + self.timeout;
        self.write(b"\x03", "interrupt", deadline).await
    }

    /// Removes every breakpoint, lets the VM run and closes (`D`). A guest
    /// still running from [`GdbClient::cont`] is interrupted first.
    pub async fn detach(mut self) -> Result<()> {
        if self.running {
            self.interrupt().await?;
            self.wait_stop(self.timeout).await?;
        }
        let reply = self.transact("D").await?;
        self.detached = true;
        expect_ok("D", &reply)?;
        let _ = self.stream.shutdown().await;
        Ok(())
    }

    /// Sends `command` and returns the reply packet, under one deadline.
    async fn transact(&mut self, command: &str) -> Result<Vec<u8>> {
        self.ensure_stopped(command)?;
        let deadline = Instant::now() + self.timeout;
        self.send(command, deadline).await?;
        let reply = self.receive(command, deadline, self.timeout).await?;
        if reply.is_empty() {
            return Err(Error::Unsupported {
                command: command.to_owned(),
            });
        }
        if let Some(code) = packet::error_code(&reply) {
            return Err(Error::Refused {
                command: command.to_owned(),
                code,
            });
        }
        Ok(reply)
    }

    /// While the guest runs, any byte but 0x03 would pause it with no
    /// stop reply, leaving both sides waiting.
    fn ensure_stopped(&self, command: &str) -> Result<()> {
        if self.running {
            return Err(Error::Running {
                command: command.to_owned(),
            });
        }
        Ok(())
    }

    /// Sends a packet until the stub acks it.
    async fn send(&mut self, command: &str, deadline: Instant) -> Result<()> {
        let framed = packet::encode(command.as_bytes());
        for _ in 0..=RESENDS {
            self.write(&framed, command, deadline).await?;
            loop {
                match self.next_received(command, deadline, self.timeout).await? {
                    Received::Ack => return Ok(()),
                    Received::Nack => break,
                    // A reply to an earlier command that was never read
                    // (its call timed out): its ack is owed, then it is
                    // dropped.
                    Received::Packet(_) => self.write(b"+", command, deadline).await?,
                    Received::Corrupt { .. } => {}
                }
            }
        }
        Err(Error::Nacked {
            command: command.to_owned(),
            attempts: RESENDS + 1,
        })
    }

    /// Reads the next packet, acking it, asking again for corrupt ones.
    async fn receive(
        &mut self,
        command: &str,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Vec<u8>> {
        loop {
            match self.next_received(command, deadline, timeout).await? {
                Received::Packet(payload) => {
                    self.write(b"+", command, deadline).await?;
                    return Ok(payload);
                }
                Received::Corrupt { .. } => self.write(b"-", command, deadline).await?,
                Received::Ack | Received::Nack => {}
            }
        }
    }

    async fn next_received(
        &mut self,
        command: &str,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Received> {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(item) = self.received.pop_front() {
                return Ok(item);
            }
            let read = tokio::time::timeout_at(deadline, self.stream.read(&mut buf)).await;
            let n = match read {
                Err(_) => {
                    return Err(Error::Timeout {
                        command: command.to_owned(),
                        timeout,
                    })
                }
                Ok(Err(source)) => return Err(io_error(command, source)),
                Ok(Ok(0)) => {
                    return Err(Error::Closed {
                        command: command.to_owned(),
                    })
                }
                Ok(Ok(n)) => n,
            };
            for b in &buf[..n] {
                if let Some(item) = self.decoder.push(*b) {
                    self.received.push_back(item);
                }
            }
        }
    }

    async fn write(&mut self, bytes: &[u8], command: &str, deadline: Instant) -> Result<()> {
        match tokio::time::timeout_at(deadline, self.stream.write_all(bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(io_error(command, source)),
            Err(_) => Err(Error::Timeout {
                command: command.to_owned(),
                timeout: self.timeout,
            }),
        }
    }
}

impl Drop for GdbClient {
    /// Best effort, without waiting: a stub left attached keeps the VM
    /// paused and its breakpoints set.
    fn drop(&mut self) {
        if self.detached {
            return;
        }
        if self.running {
            let _ = self.stream.try_write(b"\x03");
        }
        let _ = self.stream.try_write(&packet::encode(b"D"));
    }
}

fn retryable(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
    )
}

fn io_error(command: &str, source: std::io::Error) -> Error {
    if matches!(
        source.kind(),
        std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
    ) {
        return Error::Closed {
            command: command.to_owned(),
        };
    }
    Error::Io {
        command: command.to_owned(),
        source,
    }
}

fn malformed(command: &str, reply: &[u8], problem: ParseError) -> Error {
    Error::Malformed {
        command: command.to_owned(),
        reply: String::from_utf8_lossy(reply).into_owned(),
        problem,
    }
}

fn expect_ok(command: &str, reply: &[u8]) -> Result<()> {
    if reply == b"OK" {
        return Ok(());
    }
    Err(Error::Malformed {
        command: command.to_owned(),
        reply: String::from_utf8_lossy(reply).into_owned(),
        problem: ParseError::NotOk,
    })
}

fn stopped(command: &str, reply: &[u8]) -> Result<StopReply> {
    match packet::parse_stop(reply) {
        Ok(StopEvent::Stopped(stop)) => Ok(stop),
        Ok(event) => Err(Error::TargetGone {
            command: command.to_owned(),
            event,
        }),
        Err(problem) => Err(malformed(command, reply, problem)),
    }
}

#[cfg(test)]
mod tests;
