//! A step run with its power cuts taken, without killing anything: the
//! guest stopped at each point and its backing files copied (QEMU maps them
//! shared, so what is in them at a stop is exactly what a power cut there
//! would leave), then let go. One run of the step gives every crash image.
//!
//! Points: before each label write (a breakpoint through QEMU's gdbstub on
//! the bus's control entry, `acpi_nfit_ctl` or `cxl_pmem_ctl`, taken when
//! its command is `ND_CMD_SET_CONFIG_DATA`, before the write reaches QEMU),
//! before each write through a namespace's byte interface (a breakpoint on
//! `nsio_rw_bytes`, taken when it writes: BTT's data blocks, flog, map and
//! info blocks, a pfn info block), or at random moments (QMP `stop`), and
//! always after the step.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::vm::agent::ExecOutput;
use crate::vm::gdb::remote::{self as gdb, x86_64, GdbClient};
use crate::vm::machine::{self, Machine};

/// `ND_CMD_SET_CONFIG_DATA`: a label area write.
const SET_CONFIG_DATA: u64 = 6;
/// The kernel's `WRITE`, `nsio_rw_bytes`'s `rw` for a write.
const WRITE: u64 = 1;
/// How long the recorder waits on the stub before looking whether the
/// step is done.
const POLL: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Guest(#[from] machine::Error),
    #[error("gdbstub: {0}")]
    Gdb(#[from] gdb::Error),
    #[error("{path}: {source}")]
    Copy {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the guest has no `{0}` in /proc/kallsyms (is its driver loaded?)")]
    NoSymbol(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Which writes a recorded step is cut before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Watched {
    /// Label area writes: the bus's control entry
    /// (`entry(nd_desc, nvdimm, cmd, buf, buf_len, cmd_rc)`) called with
    /// `ND_CMD_SET_CONFIG_DATA`, `buf` starting `{ u32 in_offset; u32
    /// in_length; }`.
    LabelWrites,
    /// Writes through a namespace's byte interface:
    /// `nsio_rw_bytes(ndns, offset, buf, size, rw, flags)` with `rw` WRITE.
    NamespaceWrites,
}

impl Watched {
    /// The writes a case's cut points are taken before; none for random
    /// moments.
    pub fn of(points: &crate::suite::CutPoints) -> Option<Watched> {
        match points {
            crate::suite::CutPoints::LabelWrites => Some(Watched::LabelWrites),
            crate::suite::CutPoints::NamespaceWrites => Some(Watched::NamespaceWrites),
            crate::suite::CutPoints::Random { .. } => None,
        }
    }

    /// The kernel function the breakpoint is set on.
    pub fn entry(self, topology: &crate::topology::Topology) -> &'static str {
        match self {
            Watched::LabelWrites if topology.nvdimms.is_empty() => "cxl_pmem_ctl",
            Watched::LabelWrites => "acpi_nfit_ctl",
            Watched::NamespaceWrites => "nsio_rw_bytes",
        }
    }

    /// What the transcript calls them.
    pub fn noun(self) -> &'static str {
        match self {
            Watched::LabelWrites => "label writes",
            Watched::NamespaceWrites => "namespace writes",
        }
    }
}

/// One write the step made before which a cut was taken: to a DIMM's
/// label area, or through a namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaWrite {
    /// 1-based, in the order the guest made them.
    pub number: usize,
    /// The DIMM (`nmem0`) or the namespace (`namespace0.0`).
    pub device: String,
    pub offset: u64,
    pub length: u64,
}

/// Where a crash image was taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CrashPoint {
    /// Just before watched write `n` (1-based) reached the media.
    BeforeWrite(usize),
    /// At a moment of the step, from its start.
    At(Duration),
    /// After the step ended.
    AfterStep,
}

impl std::fmt::Display for CrashPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CrashPoint::BeforeWrite(n) => write!(f, "before write {n}"),
            CrashPoint::At(t) => write!(f, "at {:.3} s", t.as_secs_f64()),
            CrashPoint::AfterStep => f.write_str("after the step"),
        }
    }
}

/// The backing files as a cut left them.
#[derive(Clone, Debug)]
pub struct CrashImage {
    pub point: CrashPoint,
    pub dir: PathBuf,
}

/// What a recorded step did.
pub struct Recorded {
    pub output: std::result::Result<ExecOutput, machine::Error>,
    pub writes: Vec<MediaWrite>,
    pub images: Vec<CrashImage>,
}

/// The address of kernel symbol `name` in the guest.
pub async fn symbol(m: &Machine, name: &str) -> Result<u64> {
    // The name exactly: `grep -w` also takes `NAME.cold`, listed first.
    let script = format!("awk '$3 == \"{name}\" {{ print $1; exit }}' /proc/kallsyms");
    let argv = crate::command_line::shell(script);
    let out = m.exec(&argv, Duration::from_secs(30)).await?;
    let text = out.stdout_text();
    let address = text.split_whitespace().next().unwrap_or("");
    u64::from_str_radix(address, 16)
        .ok()
        .filter(|a| *a != 0)
        .ok_or_else(|| Error::NoSymbol(name.to_owned()))
}

/// Copies every backing file into `dir` (sparse).
fn copy_files(files: &[PathBuf], dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Copy {
        path: dir.to_owned(),
        source,
    })?;
    for file in files {
        let to = dir.join(file.file_name().expect("a backing file has a name"));
        crate::vm::copy_sparse(file, &to).map_err(|source| Error::Copy { path: to, source })?;
    }
    Ok(())
}

/// Runs `argv` in the guest with an image taken before each `watched`
/// write through `entry` (the address of [`Watched::entry`]) and after the
/// step, into `crash_dir/N`.
pub async fn before_writes(
    m: &Machine,
    argv: &[String],
    timeout: Duration,
    watched: Watched,
    entry: u64,
    crash_dir: &Path,
) -> Result<Recorded> {
    // Beside QMP's socket: the run folder's path may be too long for one.
    let socket = m.run.files.qmp_socket.with_file_name("gdb.sock");
    m.start_gdbserver(&socket).await?;
    let mut stub = GdbClient::connect(&socket, gdb::TIMEOUT).await?;
    stub.set_breakpoint(entry).await?;
    stub.cont().await?;
    let files = m.backing_files();
    let done = Cell::new(false);
    let writes: RefCell<Vec<MediaWrite>> = RefCell::new(Vec::new());
    let mut images = Vec::new();
    let run = async {
        let out = m.exec(argv, timeout).await;
        done.set(true);
        out
    };
    let mut log = StopLog::default();
    let watch = async {
        // A stop another vCPU reported while the stopped one stepped: it
        // is handled before the guest goes on.
        let mut pending: Option<gdb::StopReply> = None;
        // Per vCPU, the write whose step another vCPU's stop cut short:
        // that vCPU may report it again (not a new write), or finish the
        // step (not at the entry) and go on.
        let mut cut_short: HashMap<Option<String>, Call> = HashMap::new();
        loop {
            let stop = match pending.take() {
                Some(stop) => stop,
                None => match stub.wait_stop(POLL).await {
                    Ok(stop) => stop,
                    Err(gdb::Error::Timeout { .. }) if done.get() => break,
                    Err(gdb::Error::Timeout { .. }) => continue,
                    Err(e) => return Err(Error::from(e)),
                },
            };
            // One round trip: the address and the call's arguments.
            let registers = stub.read_registers().await?;
            let pc = registers.get(x86_64::RIP);
            if pc != entry {
                // Not the breakpoint: a vCPU finishing a step it was given
                // when another one stopped first.
                cut_short.remove(&stop.thread);
                log.note(&stop, pc, "not at the entry: let go");
                stub.cont().await?;
                continue;
            }
            let call = Call::read(&mut stub, &stop, &registers, watched).await?;
            // Reported again once: a later equal call is a new write.
            let reported_again = cut_short.remove(&stop.thread).as_ref() == Some(&call);
            if !call.is_write(watched) {
                log.note(&stop, pc, &format!("{call}: not a write"));
            } else if reported_again {
                log.note(
                    &stop,
                    pc,
                    "the write whose step was cut short, again: not counted",
                );
            } else {
                let number = writes.borrow().len() + 1;
                let write = call.write(&mut stub, watched, number).await?;
                log.note(&stop, pc, &format!("write {number}"));
                let dir = crash_dir.join(write.number.to_string());
                copy_files(&files, &dir)?;
                images.push(CrashImage {
                    point: CrashPoint::BeforeWrite(write.number),
                    dir,
                });
                writes.borrow_mut().push(write);
            }
            // A breakpoint at the resume address fires again: step over
            // it first. Another vCPU may stop during the step.
            let stepped = stub.step().await?;
            if stepped.thread != stop.thread {
                log.note(&stepped, 0, "stopped while another vCPU stepped");
                if call.is_write(watched) {
                    cut_short.insert(stop.thread.clone(), call);
                }
                pending = Some(stepped);
                continue;
            }
            stub.cont().await?;
        }
        stub.detach().await?;
        Ok::<(), Error>(())
    };
    let (output, watching) = tokio::join!(run, watch);
    log.save(crash_dir);
    watching?;
    finish(&files, crash_dir, images, output, writes.into_inner())
}

/// A call of the watched entry as the stopped vCPU is about to make it:
/// its first five arguments and, for a label write, the header of its
/// buffer. Two reports of one call are equal.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Call {
    thread: Option<String>,
    stack: u64,
    /// RDI, RSI, RDX, RCX, R8.
    args: [u64; 5],
    header: Vec<u8>,
}

impl std::fmt::Display for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "arguments {:x?}", self.args)
    }
}

impl Call {
    async fn read(
        stub: &mut GdbClient,
        stop: &gdb::StopReply,
        registers: &gdb::Registers,
        watched: Watched,
    ) -> Result<Call> {
        let args = [
            x86_64::RDI,
            x86_64::RSI,
            x86_64::RDX,
            x86_64::RCX,
            x86_64::R8,
        ]
        .map(|register| registers.get(register));
        let mut call = Call {
            thread: stop.thread.clone(),
            stack: registers.get(x86_64::RSP),
            args,
            header: Vec::new(),
        };
        if watched == Watched::LabelWrites && call.is_write(watched) {
            call.header = stub.read_memory(call.args[3], 8).await?;
        }
        Ok(call)
    }

    /// Whether the call writes what `watched` names (the 32-bit `cmd` or
    /// `rw` argument).
    fn is_write(&self, watched: Watched) -> bool {
        match watched {
            Watched::LabelWrites => self.args[2] & 0xffff_ffff == SET_CONFIG_DATA,
            Watched::NamespaceWrites => self.args[4] & 0xffff_ffff == WRITE,
        }
    }

    /// The write this call makes (the vCPU still stopped in it).
    async fn write(
        &self,
        stub: &mut GdbClient,
        watched: Watched,
        number: usize,
    ) -> Result<MediaWrite> {
        let (device, offset, length) = match watched {
            Watched::LabelWrites => {
                let word = |at: usize| {
                    u32::from_le_bytes(self.header[at..at + 4].try_into().expect("4 bytes"))
                };
                // `struct nvdimm` starts with three longs, then its device.
                (self.args[1] + 24, u64::from(word(0)), u64::from(word(4)))
            }
            // `struct nd_namespace_common` starts with an int, then its
            // device.
            Watched::NamespaceWrites => (self.args[0] + 8, self.args[1], self.args[3]),
        };
        let device = device_name(stub, device)
            .await
            .unwrap_or_else(|_| "?".into());
        Ok(MediaWrite {
            number,
            device,
            offset,
            length,
        })
    }
}

/// Every stop the recorder saw and what it made of it, kept in the crash
/// folder as `stops.log`: the evidence when a count of writes
/// differs from its snapshot.
#[derive(Default)]
struct StopLog {
    lines: Vec<String>,
}

impl StopLog {
    fn note(&mut self, stop: &gdb::StopReply, pc: u64, what: &str) {
        let thread = stop.thread.as_deref().unwrap_or("-");
        self.lines.push(format!(
            "thread {thread} signal {} pc {pc:#x}: {what}",
            stop.signal
        ));
    }

    /// Best effort: the log is evidence, not a result.
    fn save(&self, crash_dir: &Path) {
        let mut text = self.lines.join("\n");
        text.push('\n');
        let _ = std::fs::create_dir_all(crash_dir);
        let _ = std::fs::write(crash_dir.join("stops.log"), text);
    }
}

/// The name of the `struct device` at `device` (its kobject's first
/// member is the name).
async fn device_name(stub: &mut GdbClient, device: u64) -> Result<String> {
    let pointer = stub.read_memory(device, 8).await?;
    let name_at = u64::from_le_bytes(pointer.try_into().expect("8 bytes"));
    let name = stub.read_memory(name_at, 16).await?;
    let end = name.iter().position(|b| *b == 0).unwrap_or(name.len());
    Ok(String::from_utf8_lossy(&name[..end]).into_owned())
}

/// Runs `argv` with an image taken at each of `moments` (from the step's
/// start; the guest paused while its files are copied) and after it.
pub async fn at_moments(
    m: &Machine,
    argv: &[String],
    timeout: Duration,
    moments: &[Duration],
    crash_dir: &Path,
) -> Result<Recorded> {
    let files = m.backing_files();
    let started = Instant::now();
    let done = Cell::new(false);
    let mut images = Vec::new();
    let run = async {
        let out = m.exec(argv, timeout).await;
        done.set(true);
        out
    };
    let cut = async {
        for (i, moment) in moments.iter().enumerate() {
            tokio::time::sleep_until((started + *moment).into()).await;
            if done.get() {
                break;
            }
            m.pause().await?;
            let dir = crash_dir.join(format!("t{}", i + 1));
            let copied = copy_files(&files, &dir);
            m.resume().await?;
            copied?;
            images.push(CrashImage {
                point: CrashPoint::At(*moment),
                dir,
            });
        }
        Ok::<(), Error>(())
    };
    let (output, cuts) = tokio::join!(run, cut);
    cuts?;
    finish(&files, crash_dir, images, output, Vec::new())
}

/// The recording's end: the image after the step added to the cuts'.
fn finish(
    files: &[PathBuf],
    crash_dir: &Path,
    mut images: Vec<CrashImage>,
    output: std::result::Result<ExecOutput, machine::Error>,
    writes: Vec<MediaWrite>,
) -> Result<Recorded> {
    let dir = crash_dir.join("after");
    copy_files(files, &dir)?;
    images.push(CrashImage {
        point: CrashPoint::AfterStep,
        dir,
    });
    Ok(Recorded {
        output,
        writes,
        images,
    })
}
