//! The guest agent (qemu-guest-agent over virtio-serial), through `qapi`'s
//! QGA client: readiness by guest-sync, commands by guest-exec, files by
//! guest-file-*. Every call has a deadline.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use qapi::futures::{QapiService, QgaStreamTokio};
use qapi::qga;
use tokio::io::WriteHalf;
use tokio::net::UnixStream;

/// One agent round trip should take well under this, even under TCG.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to connect to the guest agent at {path}: {source}")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("guest agent `{command}` failed: {message}")]
    Call {
        command: &'static str,
        message: String,
    },
    #[error("guest agent `{command}` got no answer within {timeout:?}")]
    CallTimeout {
        command: &'static str,
        timeout: Duration,
    },
    #[error("`{command}` did not finish within {timeout:?}")]
    CommandTimeout { command: String, timeout: Duration },
}

pub type Result<T> = std::result::Result<T, Error>;

type Service = QapiService<QgaStreamTokio<WriteHalf<UnixStream>>>;

/// What one guest command did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecOutput {
    /// None when a signal ended it.
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub duration: Duration,
}

impl ExecOutput {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
    pub fn success(&self) -> bool {
        self.exit_code == Some(0)
    }
}

/// A connection to the guest agent, replaced when an answer is lost.
pub struct Agent {
    socket: PathBuf,
    /// `None` after a failed reconnection; the next call tries again.
    link: std::sync::Mutex<Option<Link>>,
}

/// One connection: qapi's client and the task reading its answers.
struct Link {
    service: Arc<Service>,
    reader: tokio::task::JoinHandle<()>,
}

impl Link {
    fn over(stream: UnixStream) -> Link {
        let (service, events) = QgaStreamTokio::open(stream).into_parts();
        Link {
            service: Arc::new(service),
            reader: events.spawn_tokio(),
        }
    }

    /// Closes the connection: both halves of the socket, since QEMU takes
    /// the next client only once this one is gone.
    async fn close(self) {
        self.reader.abort();
        let _ = self.reader.await;
    }
}

/// Connects to the host end of the agent's port.
async fn open(socket: &Path) -> Result<UnixStream> {
    UnixStream::connect(socket)
        .await
        .map_err(|source| Error::Connect {
            path: socket.to_owned(),
            source,
        })
}

/// A fresh id for each sync: an answer to an older one must not pass.
fn sync_id() -> i32 {
    static SYNCS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    let n = SYNCS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    ((std::process::id() << 12) ^ n.wrapping_mul(2_654_435_761)) as i32 & i32::MAX
}

/// Connects and brings the stream to a clean point: requests sent on an
/// older connection that the agent has not answered yet are answered on
/// this one first (it answers in order, to whoever is connected). A 0xFF
/// byte resets the agent's parser (a request may have been cut off), then
/// `guest-sync-delimited` with a fresh id; everything up to the 0xFF the
/// agent puts before that answer, and the answer, is read and dropped.
async fn resync(socket: &Path, timeout: Duration) -> Result<UnixStream> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let connect = |source| Error::Connect {
        path: socket.to_owned(),
        source,
    };
    let mut stream = open(socket).await?;
    let id = sync_id();
    // The reset byte, then the request.
    let mut bytes = vec![0xffu8];
    bytes.extend_from_slice(
        format!("{{\"execute\":\"guest-sync-delimited\",\"arguments\":{{\"id\":{id}}}}}\n")
            .as_bytes(),
    );
    stream.write_all(&bytes).await.map_err(connect)?;
    let mut seen: Vec<u8> = Vec::new();
    let read = async {
        let mut chunk = [0u8; 4096];
        loop {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
            }
            seen.extend_from_slice(&chunk[..n]);
            while let Some(p) = seen.iter().position(|&b| b == 0xff) {
                let Some(nl) = seen[p..].iter().position(|&b| b == b'\n') else {
                    break;
                };
                let answer: Option<serde_json::Value> =
                    serde_json::from_slice(&seen[p + 1..p + nl]).ok();
                seen.drain(..p + nl + 1);
                if answer.and_then(|a| a.get("return").and_then(|r| r.as_i64())) == Some(id.into())
                {
                    return Ok(());
                }
            }
        }
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(Ok(())) => Ok(stream),
        Ok(Err(source)) => Err(connect(source)),
        Err(_) => Err(Error::CallTimeout {
            command: "guest-sync-delimited",
            timeout,
        }),
    }
}

impl Agent {
    /// Connects to the host end of the agent's port. QEMU accepts at once;
    /// whether the agent listens is only known from [`Agent::sync`].
    pub async fn connect(socket: &Path) -> Result<Agent> {
        let stream = open(socket).await?;
        Ok(Agent {
            socket: socket.to_owned(),
            link: std::sync::Mutex::new(Some(Link::over(stream))),
        })
    }

    fn service(&self) -> Option<Arc<Service>> {
        let link = self.link.lock().unwrap_or_else(|e| e.into_inner());
        link.as_ref().map(|l| l.service.clone())
    }

    async fn call<C>(&self, command: C, timeout: Duration) -> Result<C::Ok>
    where
        C: qapi::Command + qga::QgaCommand,
    {
        let service = match self.service() {
            Some(s) => s,
            None => {
                self.reconnect().await?;
                self.service().expect("just connected")
            }
        };
        match tokio::time::timeout(timeout, service.execute(command)).await {
            Err(_) => {
                drop(service);
                // The agent protocol has no request ids: qapi's client takes
                // the next answer for the pending call, so after a lost one
                // the late answer would be taken for the next call's (and
                // the client refuses further calls). A new connection,
                // synchronized, starts clean; if that fails, the next call
                // tries again.
                let _ = self.reconnect().await;
                Err(Error::CallTimeout {
                    command: C::NAME,
                    timeout,
                })
            }
            Ok(Err(e)) => Err(Error::Call {
                command: C::NAME,
                message: e.to_string(),
            }),
            Ok(Ok(v)) => Ok(v),
        }
    }

    /// Replaces the connection with a synchronized one ([`resync`]).
    async fn reconnect(&self) -> Result<()> {
        let old = self.link.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(old) = old {
            old.close().await;
        }
        let stream = resync(&self.socket, CALL_TIMEOUT).await?;
        *self.link.lock().unwrap_or_else(|e| e.into_inner()) = Some(Link::over(stream));
        Ok(())
    }

    /// guest-sync with a fresh id: the agent answers only when it runs.
    pub async fn sync(&self, timeout: Duration) -> Result<()> {
        let id = sync_id();
        let Some(service) = self.service() else {
            return self.reconnect().await;
        };
        match tokio::time::timeout(timeout, service.guest_sync(id)).await {
            Err(_) => Err(Error::CallTimeout {
                command: "guest-sync",
                timeout,
            }),
            Ok(Err(e)) => Err(Error::Call {
                command: "guest-sync",
                message: e.to_string(),
            }),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// Starts `path args...` in the guest and returns its pid; its output
    /// is captured (for [`Agent::status`]) when `capture` is set.
    pub async fn spawn(&self, path: &str, args: &[String], capture: bool) -> Result<i64> {
        let started = self
            .call(
                qga::guest_exec {
                    path: path.to_owned(),
                    arg: Some(args.to_vec()),
                    env: Some(vec![
                        "PATH=/usr/sbin:/usr/bin:/usr/libexec/busybox".into(),
                        "HOME=/root".into(),
                        "LANG=C".into(),
                    ]),
                    input_data: None,
                    // `true` (stdout and stderr apart) is what every agent
                    // takes; the `mode` form came with QEMU 8.1.
                    capture_output: capture.then_some(qga::GuestExecCaptureOutput::flag(true)),
                },
                CALL_TIMEOUT,
            )
            .await?;
        Ok(started.pid)
    }

    /// How a command [`Agent::spawn`] started ended, or `None` while it
    /// runs (its duration is left zero). The agent forgets a command once
    /// it has reported its end.
    pub async fn status(&self, pid: i64) -> Result<Option<ExecOutput>> {
        let status = self
            .call(qga::guest_exec_status { pid }, CALL_TIMEOUT)
            .await?;
        Ok(status.exited.then(|| ExecOutput {
            exit_code: status.exitcode.map(|c| c as i32),
            signal: status.signal.map(|s| s as i32),
            stdout: status.out_data.unwrap_or_default(),
            stderr: status.err_data.unwrap_or_default(),
            duration: Duration::ZERO,
        }))
    }

    /// Runs `path args...` in the guest and waits for it, up to `timeout`.
    pub async fn exec(&self, path: &str, args: &[String], timeout: Duration) -> Result<ExecOutput> {
        let start = Instant::now();
        let shown = std::iter::once(path.to_owned())
            .chain(args.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ");
        let pid = self.spawn(path, args, true).await?;
        // Most commands end within a few hundred ms: a short cap on the
        // interval keeps the wait after the end short (a 50 ms cap cost
        // ~25 ms per command), at one cheap status call per 20 ms.
        let mut poll = Duration::from_millis(2);
        let mut lost = 0;
        loop {
            let status = match self.status(pid).await {
                Ok(s) => s,
                // A guest that froze for a moment (firmware activation
                // quiesces user space and devices) can lose a request or its
                // answer; the connection is new now and the command still
                // runs, unless that answer was its end (the agent forgets a
                // command once it has reported its end).
                Err(Error::CallTimeout { .. }) if lost < 3 && start.elapsed() < timeout => {
                    lost += 1;
                    continue;
                }
                Err(Error::Call { command, message }) if lost > 0 => {
                    return Err(Error::Call {
                        command,
                        message: format!(
                            "{message} (after {lost} lost answer(s): the lost one may have been the command's end)"
                        ),
                    })
                }
                Err(e) => return Err(e),
            };
            if let Some(out) = status {
                return Ok(ExecOutput {
                    duration: start.elapsed(),
                    ..out
                });
            }
            if start.elapsed() > timeout {
                return Err(Error::CommandTimeout {
                    command: shown,
                    timeout,
                });
            }
            tokio::time::sleep(poll).await;
            poll = (poll * 2).min(Duration::from_millis(20));
        }
    }

    /// Reads `path` from byte `offset` to its current end.
    pub async fn read_file_from(&self, path: &str, offset: u64) -> Result<Vec<u8>> {
        let handle = self
            .call(
                qga::guest_file_open {
                    path: path.to_owned(),
                    mode: Some("r".into()),
                },
                CALL_TIMEOUT,
            )
            .await?;
        let res = self.read_open(handle, offset).await;
        let _ = self
            .call(qga::guest_file_close { handle }, CALL_TIMEOUT)
            .await;
        res
    }

    async fn read_open(&self, handle: i64, offset: u64) -> Result<Vec<u8>> {
        if offset > 0 {
            self.call(
                qga::guest_file_seek {
                    handle,
                    offset: offset as i64,
                    whence: qga::GuestFileWhence::name(qga::QGASeek::set),
                },
                CALL_TIMEOUT,
            )
            .await?;
        }
        let mut data = Vec::new();
        loop {
            let chunk = self
                .call(
                    qga::guest_file_read {
                        handle,
                        count: Some(1 << 20),
                    },
                    CALL_TIMEOUT,
                )
                .await?;
            data.extend_from_slice(&chunk.buf_b64);
            if chunk.eof || chunk.count == 0 {
                return Ok(data);
            }
        }
    }

    /// Asks the guest to power off; the agent does not answer this one.
    pub async fn poweroff(&self) {
        let Some(service) = self.service() else {
            return;
        };
        let _ = tokio::time::timeout(
            Duration::from_millis(500),
            service.execute(qga::guest_exec {
                path: "/usr/libexec/busybox/poweroff".into(),
                arg: Some(vec!["-f".into()]),
                env: None,
                input_data: None,
                capture_output: None,
            }),
        )
        .await;
    }
}
