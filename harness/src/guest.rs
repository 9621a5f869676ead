//! The guest agent (qemu-guest-agent over virtio-serial), through `qapi`'s
//! QGA client: readiness by guest-sync, commands by guest-exec, files by
//! guest-file-*. Every call has a deadline.

use std::path::{Path, PathBuf};
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

/// A connection to the guest agent.
pub struct Agent {
    service: Service,
}

impl Agent {
    /// Connects to the host end of the agent's port. QEMU accepts at once;
    /// whether the agent listens is only known from [`Agent::sync`].
    pub async fn connect(socket: &Path) -> Result<Agent> {
        let stream = QgaStreamTokio::open_uds(socket)
            .await
            .map_err(|source| Error::Connect {
                path: socket.to_owned(),
                source,
            })?;
        let (service, events) = stream.into_parts();
        events.spawn_tokio();
        Ok(Agent { service })
    }

    async fn call<C>(&self, command: C, timeout: Duration) -> Result<C::Ok>
    where
        C: qapi::Command + qga::QgaCommand,
    {
        match tokio::time::timeout(timeout, self.service.execute(command)).await {
            Err(_) => Err(Error::CallTimeout {
                command: C::NAME,
                timeout,
            }),
            Ok(Err(e)) => Err(Error::Call {
                command: C::NAME,
                message: e.to_string(),
            }),
            Ok(Ok(v)) => Ok(v),
        }
    }

    /// guest-sync with a fresh id: the agent answers only when it runs.
    pub async fn sync(&self, timeout: Duration) -> Result<()> {
        let id = std::process::id() as i64 ^ Instant::now().elapsed().as_nanos() as i64;
        match tokio::time::timeout(timeout, self.service.guest_sync(id as i32)).await {
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

    /// Runs `path args...` in the guest and waits for it, up to `timeout`.
    pub async fn exec(&self, path: &str, args: &[String], timeout: Duration) -> Result<ExecOutput> {
        let start = Instant::now();
        let shown = std::iter::once(path.to_owned())
            .chain(args.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ");
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
                    capture_output: Some(qga::GuestExecCaptureOutput::flag(true)),
                },
                CALL_TIMEOUT,
            )
            .await?;
        // Most commands end within a few hundred ms: a short cap on the
        // interval keeps the wait after the end short (a 50 ms cap cost
        // ~25 ms per command), at one cheap status call per 20 ms.
        let mut poll = Duration::from_millis(2);
        loop {
            let status = self
                .call(qga::guest_exec_status { pid: started.pid }, CALL_TIMEOUT)
                .await?;
            if status.exited {
                return Ok(ExecOutput {
                    exit_code: status.exitcode.map(|c| c as i32),
                    signal: status.signal.map(|s| s as i32),
                    stdout: status.out_data.unwrap_or_default(),
                    stderr: status.err_data.unwrap_or_default(),
                    duration: start.elapsed(),
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
        let _ = tokio::time::timeout(
            Duration::from_millis(500),
            self.service.execute(qga::guest_exec {
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
