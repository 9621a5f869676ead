//! A step run with its power cuts taken, without killing anything: the
//! guest stopped at each point and its backing files copied (QEMU maps them
//! shared, so what is in them at a stop is exactly what a power cut there
//! would leave), then let go. One run of the step gives every crash image.
//!
//! Points: before each label write (a breakpoint through QEMU's gdbstub on
//! the bus's control entry, `acpi_nfit_ctl` or `cxl_pmem_ctl`, taken when
//! its command is `ND_CMD_SET_CONFIG_DATA`, before the write reaches QEMU),
//! or at random moments (QMP `stop`), and always after the step.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::vm::agent::ExecOutput;
use crate::vm::gdb::remote::{self as gdb, x86_64, GdbClient};
use crate::vm::machine::{self, Machine};

/// `ND_CMD_SET_CONFIG_DATA`: a label area write.
const SET_CONFIG_DATA: u64 = 6;
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

/// One label write the step made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelWrite {
    /// 1-based, in the order the guest made them.
    pub number: usize,
    pub dimm: String,
    pub offset: u32,
    pub length: u32,
}

/// Where a crash image was taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CrashPoint {
    /// Just before label write `n` (1-based) reached the device.
    BeforeWrite(usize),
    /// At a moment of the step, from its start.
    At(Duration),
    /// After the step ended.
    AfterStep,
}

impl std::fmt::Display for CrashPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CrashPoint::BeforeWrite(n) => write!(f, "before label write {n}"),
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
    pub writes: Vec<LabelWrite>,
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

/// Runs `argv` in the guest with an image taken before each label write
/// through `entry` (the bus's control function) and after the step, into
/// `crash_dir/N`.
pub async fn label_writes(
    m: &Machine,
    argv: &[String],
    timeout: Duration,
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
    let writes: RefCell<Vec<LabelWrite>> = RefCell::new(Vec::new());
    let mut images = Vec::new();
    let run = async {
        let out = m.exec(argv, timeout).await;
        done.set(true);
        out
    };
    let watch = async {
        loop {
            match stub.wait_stop(POLL).await {
                Ok(_) => {
                    let next = writes.borrow().len() + 1;
                    if let Some(write) = label_write(&mut stub, next).await? {
                        let dir = crash_dir.join(write.number.to_string());
                        copy_files(&files, &dir)?;
                        images.push(CrashImage {
                            point: CrashPoint::BeforeWrite(write.number),
                            dir,
                        });
                        writes.borrow_mut().push(write);
                    }
                    // A breakpoint at the resume address fires again: step
                    // over it first.
                    stub.step().await?;
                    stub.cont().await?;
                }
                Err(gdb::Error::Timeout { .. }) if done.get() => break,
                Err(gdb::Error::Timeout { .. }) => {}
                Err(e) => return Err(Error::from(e)),
            }
        }
        stub.detach().await?;
        Ok::<(), Error>(())
    };
    let (output, watched) = tokio::join!(run, watch);
    watched?;
    finish(&files, crash_dir, images, output, writes.into_inner())
}

/// The label write the stopped CPU is about to make, if its call is one:
/// `entry(nd_desc, nvdimm, cmd, buf, buf_len, cmd_rc)`, the header of `buf`
/// being `{ u32 in_offset; u32 in_length; }`.
async fn label_write(stub: &mut GdbClient, number: usize) -> Result<Option<LabelWrite>> {
    let command = stub.read_register(x86_64::RDX).await? & 0xffff_ffff;
    if command != SET_CONFIG_DATA {
        return Ok(None);
    }
    let buffer = stub.read_register(x86_64::RCX).await?;
    let header = stub.read_memory(buffer, 8).await?;
    let word = |at: usize| u32::from_le_bytes(header[at..at + 4].try_into().expect("4 bytes"));
    let dimm = dimm_name(stub).await.unwrap_or_else(|_| "?".into());
    Ok(Some(LabelWrite {
        number,
        dimm,
        offset: word(0),
        length: word(4),
    }))
}

/// The name of the DIMM in the call (`nvdimm->dev.kobj.name`: `struct
/// nvdimm` starts with three longs, then its `struct device`, whose
/// kobject's first member is the name).
async fn dimm_name(stub: &mut GdbClient) -> Result<String> {
    let nvdimm = stub.read_register(x86_64::RSI).await?;
    let pointer = stub.read_memory(nvdimm + 24, 8).await?;
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
    writes: Vec<LabelWrite>,
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
