//! QMP, through the `qapi` crate: negotiate, typed commands under a timeout,
//! and the events that end a case (SHUTDOWN, GUEST_PANICKED) or tell that
//! the guest agent opened its port (VSERPORT_CHANGE).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use qapi::futures::{QapiService, QmpStreamTokio};
use qapi::qmp;
use tokio::io::WriteHalf;
use tokio::net::UnixStream;
use tokio::sync::watch;

pub const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to connect to QMP at {path}: {source}")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("QMP `{command}` failed: {message}")]
    Command {
        command: &'static str,
        message: String,
    },
    #[error("QMP `{command}` got no answer within {timeout:?}")]
    Timeout {
        command: &'static str,
        timeout: Duration,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

/// What the events have told about the guest so far.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GuestEvents {
    /// Ports opened by the guest, by QMP id.
    pub open_ports: Vec<String>,
    pub panicked: Option<String>,
    pub shutdown: Option<String>,
    /// The QMP connection closed (QEMU exited).
    pub disconnected: bool,
}

type Service = QapiService<QmpStreamTokio<WriteHalf<UnixStream>>>;

/// A negotiated QMP connection.
pub struct Qmp {
    service: Service,
    events: watch::Receiver<GuestEvents>,
    log: Arc<Mutex<std::fs::File>>,
}

impl Qmp {
    /// Connects, retrying while QEMU creates the socket, and negotiates.
    pub async fn connect(socket: &Path, log_path: &Path, deadline: Instant) -> Result<Qmp> {
        let connect_err = |source| Error::Connect {
            path: socket.to_owned(),
            source,
        };
        let stream = loop {
            match QmpStreamTokio::open_uds(socket).await {
                Ok(s) => break s,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => return Err(connect_err(e)),
            }
        };
        let stream = tokio::time::timeout(TIMEOUT, stream.negotiate())
            .await
            .map_err(|_| Error::Timeout {
                command: "qmp_capabilities",
                timeout: TIMEOUT,
            })?
            .map_err(connect_err)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .map_err(connect_err)?;
        let log = Arc::new(Mutex::new(log));
        let (service, mut stream_events) = stream.into_parts();
        let (tx, rx) = watch::channel(GuestEvents::default());
        let elog = log.clone();
        let _ = stream_events.release();
        tokio::spawn(async move {
            while let Some(ev) = stream_events.next().await {
                let Ok(ev) = ev else { break };
                let json = serde_json::to_string(&ev).unwrap_or_else(|_| format!("{ev:?}"));
                log_line(&elog, "event", &json);
                tx.send_modify(|s| record(s, &ev));
            }
            tx.send_modify(|s| s.disconnected = true);
        });
        Ok(Qmp {
            service,
            events: rx,
            log,
        })
    }

    /// Runs one typed command under [`TIMEOUT`], recording it in the QMP log.
    pub async fn execute<C>(&self, command: C) -> Result<C::Ok>
    where
        C: qapi::Command + qmp::QmpCommand + serde::Serialize,
        C::Ok: serde::Serialize,
    {
        let json = serde_json::to_string(&command).unwrap_or_default();
        log_line(&self.log, &format!("-> {}", C::NAME), &json);
        let res = tokio::time::timeout(TIMEOUT, self.service.execute(command))
            .await
            .map_err(|_| Error::Timeout {
                command: C::NAME,
                timeout: TIMEOUT,
            })?;
        match res {
            Ok(ok) => {
                log_line(
                    &self.log,
                    &format!("<- {}", C::NAME),
                    &serde_json::to_string(&ok).unwrap_or_default(),
                );
                Ok(ok)
            }
            Err(e) => {
                log_line(&self.log, &format!("<- {} error", C::NAME), &e.to_string());
                Err(Error::Command {
                    command: C::NAME,
                    message: e.to_string(),
                })
            }
        }
    }

    /// A watch over the events seen so far.
    pub fn events(&self) -> watch::Receiver<GuestEvents> {
        self.events.clone()
    }

    pub async fn status(&self) -> Result<String> {
        let s = self.execute(qmp::query_status {}).await?;
        Ok(serde_json::to_value(s.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default())
    }

    pub async fn memory_devices(&self) -> Result<Vec<qmp::MemoryDeviceInfo>> {
        self.execute(qmp::query_memory_devices {}).await
    }

    /// The QEMU ids of every PCI device, behind bridges too.
    pub async fn pci_ids(&self) -> Result<Vec<String>> {
        fn walk(devices: &[qmp::PciDeviceInfo], out: &mut Vec<String>) {
            for d in devices {
                out.push(d.qdev_id.clone());
                if let Some(children) = d.pci_bridge.as_ref().and_then(|b| b.devices.as_ref()) {
                    walk(children, out);
                }
            }
        }
        let mut out = Vec::new();
        for bus in self.execute(qmp::query_pci {}).await? {
            walk(&bus.devices, &mut out);
        }
        Ok(out)
    }

    /// Asks QEMU to exit; its connection closing is the answer.
    pub async fn quit(&self) {
        let _ =
            tokio::time::timeout(Duration::from_secs(2), self.service.execute(qmp::quit {})).await;
    }
}

fn record(s: &mut GuestEvents, ev: &qmp::Event) {
    match ev {
        qmp::Event::VSERPORT_CHANGE { data, .. } => {
            s.open_ports.retain(|p| p != &data.id);
            if data.open {
                s.open_ports.push(data.id.clone());
            }
        }
        qmp::Event::GUEST_PANICKED { data, .. } => {
            s.panicked = Some(format!("{:?}", data.action));
        }
        qmp::Event::SHUTDOWN { data, .. } => {
            s.shutdown = Some(format!("{:?}", data.reason));
        }
        _ => {}
    }
}

fn log_line(log: &Mutex<std::fs::File>, what: &str, json: &str) {
    if let Ok(mut f) = log.lock() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default();
        let _ = writeln!(f, "{t:.3} {what} {json}");
    }
}

/// Why a case step's QMP command was refused or failed.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    #[error("`{name}` is not a QMP command a step can send; these are: {}", STEP_COMMANDS.join(", "))]
    UnknownCommand { name: String },
    #[error("arguments of `{name}`: {reason}")]
    BadArguments { name: String, reason: String },
    #[error("`{name}` has no argument `{argument}`")]
    UnknownArgument { name: String, argument: String },
    /// QEMU's answer was an error.
    #[error("{0}")]
    Failed(String),
}

/// The QMP commands a case step may send, each through its `qapi` type:
/// arguments are checked against QEMU's schema when the case is parsed,
/// not when the guest is already up.
macro_rules! step_commands {
    ($($name:literal => $ty:ident),* $(,)?) => {
        /// The commands a `qmp` step accepts.
        pub const STEP_COMMANDS: &[&str] = &[$($name),*];

        /// Checks a step's command and arguments without running them.
        pub fn check_step(name: &str, args: &serde_json::Value) -> std::result::Result<(), StepError> {
            match name {
                $($name => typed_args::<qmp::$ty>(name, args).map(|_| ()),)*
                _ => Err(unknown_command(name)),
            }
        }

        impl Qmp {
            /// Runs a step's command; its answer as JSON.
            pub async fn execute_step(
                &self,
                name: &str,
                args: &serde_json::Value,
            ) -> std::result::Result<serde_json::Value, StepError> {
                match name {
                    $($name => {
                        let c = typed_args::<qmp::$ty>(name, args)?;
                        let ok = self
                            .execute(c)
                            .await
                            .map_err(|e| StepError::Failed(e.to_string()))?;
                        Ok(serde_json::to_value(ok).unwrap_or_default())
                    })*
                    _ => Err(unknown_command(name)),
                }
            }
        }
    };
}

step_commands! {
    "cxl-inject-poison" => cxl_inject_poison,
    "cxl-inject-general-media-event" => cxl_inject_general_media_event,
    "cxl-inject-dram-event" => cxl_inject_dram_event,
    "cxl-inject-memory-module-event" => cxl_inject_memory_module_event,
    "cxl-inject-uncorrectable-errors" => cxl_inject_uncorrectable_errors,
    "cxl-inject-correctable-error" => cxl_inject_correctable_error,
    "device_del" => device_del,
    "query-memory-devices" => query_memory_devices,
    "query-pci" => query_pci,
    "query-status" => query_status,
    "human-monitor-command" => human_monitor_command,
}

fn unknown_command(name: &str) -> StepError {
    StepError::UnknownCommand {
        name: name.to_owned(),
    }
}

/// The arguments as the command's type, refusing any the type lacks (the
/// generated types accept unknown fields; QEMU would not).
fn typed_args<C>(name: &str, args: &serde_json::Value) -> std::result::Result<C, StepError>
where
    C: serde::de::DeserializeOwned + serde::Serialize,
{
    let args = if args.is_null() {
        serde_json::Value::Object(Default::default())
    } else {
        args.clone()
    };
    let typed: C = serde_json::from_value(args.clone()).map_err(|e| StepError::BadArguments {
        name: name.to_owned(),
        reason: e.to_string(),
    })?;
    let back = serde_json::to_value(&typed).unwrap_or_default();
    if let (Some(given), Some(known)) = (args.as_object(), back.as_object()) {
        if let Some(k) = given.keys().find(|k| !known.contains_key(*k)) {
            return Err(StepError::UnknownArgument {
                name: name.to_owned(),
                argument: k.clone(),
            });
        }
    }
    Ok(typed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_arguments_are_checked_against_the_schema() {
        let ok =
            serde_json::json!({"path": "/machine/peripheral/cxl-pmem0", "start": 0, "length": 64});
        assert_eq!(check_step("cxl-inject-poison", &ok), Ok(()));
        let missing = serde_json::json!({"path": "/x", "start": 0});
        let e = check_step("cxl-inject-poison", &missing).unwrap_err();
        assert!(e.to_string().contains("length"), "{e}");
        let extra = serde_json::json!({"path": "/x", "start": 0, "length": 64, "len": 1});
        let e = check_step("cxl-inject-poison", &extra).unwrap_err();
        assert!(e.to_string().contains("no argument `len`"), "{e}");
        assert_eq!(check_step("query-status", &serde_json::Value::Null), Ok(()));
        let e = check_step("migrate", &serde_json::Value::Null).unwrap_err();
        assert!(e.to_string().contains("cxl-inject-poison"), "{e}");
    }
}
