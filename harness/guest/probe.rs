//! `ndharness-probe`: the guest's own test program, for what no shell tool
//! in the image can do: map a device-dax device or a DAX file (with or
//! without MAP_SYNC) and write and read every chunk of it, issue a raw label
//! ioctl that ndctl refuses in userspace, and race writers on one sector of
//! a block device from several CPUs. It prints one line of what it saw and
//! exits 0 when the operation went through, 1 when the kernel refused it
//! (the errno's name on the line), 2 on a usage error and 3 on a SIGBUS.
//!
//! Built by the harness's build script with the harness's own compiler,
//! statically linked and std-only (the system calls are declared here), and
//! installed as /usr/bin/ndharness-probe in every image.

use std::ffi::c_void;
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};

extern "C" {
    fn mmap(addr: *mut c_void, len: usize, prot: i32, flags: i32, fd: i32, off: i64)
        -> *mut c_void;
    fn munmap(addr: *mut c_void, len: usize) -> i32;
    fn ioctl(fd: i32, request: u64, ...) -> i32;
    fn signal(signum: i32, handler: usize) -> usize;
    fn sched_setaffinity(pid: i32, size: usize, mask: *const u64) -> i32;
    fn write(fd: i32, buf: *const u8, count: usize) -> isize;
    fn _exit(code: i32) -> !;
}

const PROT_READ_WRITE: i32 = 0x1 | 0x2;
const MAP_SHARED: i32 = 0x01;
const MAP_SHARED_VALIDATE: i32 = 0x03;
const MAP_SYNC: i32 = 0x80000;
const MAP_FAILED: *mut c_void = !0usize as *mut c_void;
const SIGBUS: i32 = 7;
const O_DIRECT: i32 = 0o40000;

/// `_IOWR('N', nr, size)`, the libnvdimm ioctls.
const fn nd_ioctl(nr: u64, size: u64) -> u64 {
    (3 << 30) | (size << 16) | ((b'N' as u64) << 8) | nr
}
const ND_IOCTL_GET_CONFIG_SIZE: u64 = nd_ioctl(4, 12);
const ND_IOCTL_GET_CONFIG_DATA: u64 = nd_ioctl(5, 12);
const ND_IOCTL_SET_CONFIG_DATA: u64 = nd_ioctl(6, 8);

const EXIT_REFUSED: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_SIGBUS: i32 = 3;

const USAGE: &str = "usage:
  ndharness-probe map PATH --length BYTES [--offset BYTES] [--sync] [--fill STRIDE]
      map PATH shared (--sync: MAP_SHARED_VALIDATE|MAP_SYNC); with --fill, write
      a tag at both ends of every STRIDE-byte chunk, then read them all back
  ndharness-probe label-write NMEM_DEVICE [--bytes N]
      read the first N (default 8) bytes of the DIMM's label area and write
      them back unchanged with ND_CMD_SET_CONFIG_DATA
  ndharness-probe race BLOCK_DEVICE --sector-size BYTES [--writers N] [--writes N]
      N writers, one per CPU, write sector 0 at once (O_DIRECT), each write
      followed by one of a sector of the writer's own (each written once);
      then sector 0 must hold a writer's last write and every other sector
      what was written to it";

/// The mapping offset being touched, for the SIGBUS handler's line.
static TOUCHING: AtomicUsize = AtomicUsize::new(usize::MAX);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("map") => map_command(&args[1..]),
        Some("label-write") => label_write_command(&args[1..]),
        Some("race") => race_command(&args[1..]),
        _ => Err(Failure::Usage(String::from("no such command"))),
    };
    match result {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(Failure::Refused(line)) => {
            println!("{line}");
            ExitCode::from(EXIT_REFUSED)
        }
        Err(Failure::Usage(why)) => {
            eprintln!("ndharness-probe: {why}\n{USAGE}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

enum Failure {
    /// The kernel said no (or gave back other data than was written).
    Refused(String),
    Usage(String),
}

/// `what: ENAME (message)` for the last OS error.
fn refused(what: &str) -> Failure {
    let error = std::io::Error::last_os_error();
    Failure::Refused(format!("{what}: {}", errno_text(&error)))
}

fn errno_text(error: &std::io::Error) -> String {
    let code = error.raw_os_error().unwrap_or(0);
    let name = match code {
        1 => "EPERM",
        2 => "ENOENT",
        5 => "EIO",
        6 => "ENXIO",
        7 => "E2BIG",
        12 => "ENOMEM",
        14 => "EFAULT",
        16 => "EBUSY",
        22 => "EINVAL",
        25 => "ENOTTY",
        95 => "EOPNOTSUPP",
        _ => "errno",
    };
    let message = error.to_string();
    let message = message.split(" (os error").next().unwrap_or_default();
    format!("{name} {code} ({message})")
}

/// `--name VALUE` options after the positional arguments.
struct Options<'a> {
    args: &'a [String],
}

impl<'a> Options<'a> {
    fn positional(&self, index: usize, what: &str) -> Result<&'a str, Failure> {
        self.args
            .get(index)
            .filter(|a| !a.starts_with("--"))
            .map(String::as_str)
            .ok_or_else(|| Failure::Usage(format!("{what} is missing")))
    }

    fn flag(&self, name: &str) -> bool {
        self.args.iter().any(|a| a == name)
    }

    fn number(&self, name: &str) -> Result<Option<u64>, Failure> {
        let Some(at) = self.args.iter().position(|a| a == name) else {
            return Ok(None);
        };
        let text = self
            .args
            .get(at + 1)
            .ok_or_else(|| Failure::Usage(format!("{name} needs a value")))?;
        parse_size(text)
            .map(Some)
            .ok_or_else(|| Failure::Usage(format!("{name} {text}: not a size")))
    }

    fn required(&self, name: &str) -> Result<u64, Failure> {
        self.number(name)?
            .ok_or_else(|| Failure::Usage(format!("{name} is required")))
    }
}

/// `4096`, `0x1000`, `2M`, `1G`.
fn parse_size(text: &str) -> Option<u64> {
    let (digits, unit) = match text.char_indices().last()? {
        (at, 'K' | 'k') => (&text[..at], 1 << 10),
        (at, 'M' | 'm') => (&text[..at], 1 << 20),
        (at, 'G' | 'g') => (&text[..at], 1 << 30),
        _ => (text, 1),
    };
    let value = match digits.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok()?,
        None => digits.parse().ok()?,
    };
    value.checked_mul(unit)
}

fn open_read_write(path: &str, extra_flags: i32) -> Result<File, Failure> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(extra_flags)
        .open(path)
        .map_err(|e| Failure::Refused(format!("open {path}: {}", errno_text(&e))))
}

fn map_command(args: &[String]) -> Result<String, Failure> {
    let options = Options { args };
    let path = options.positional(0, "PATH")?;
    let length = options.required("--length")? as usize;
    let offset = options.number("--offset")?.unwrap_or(0);
    let sync = options.flag("--sync");
    let stride = options.number("--fill")?.map(|s| s as usize);
    if length == 0 || stride.is_some_and(|s| s < 16 || length % s != 0) {
        return Err(Failure::Usage(String::from(
            "--length must be non-zero and a multiple of --fill, itself at least 16",
        )));
    }
    let file = open_read_write(path, 0)?;
    let flags = if sync {
        MAP_SHARED_VALIDATE | MAP_SYNC
    } else {
        MAP_SHARED
    };
    // SAFETY: a fresh shared mapping of an open file; nothing else aliases it.
    let base = unsafe {
        mmap(
            std::ptr::null_mut(),
            length,
            PROT_READ_WRITE,
            flags,
            file.as_raw_fd(),
            offset as i64,
        )
    };
    let how = if sync { " with MAP_SYNC" } else { "" };
    if base == MAP_FAILED {
        return Err(refused(&format!("mmap {length} bytes{how}")));
    }
    let mut line = format!("mapped {length} bytes{how}");
    if let Some(stride) = stride {
        // SAFETY: the handler only formats into a stack buffer and exits.
        unsafe { signal(SIGBUS, on_sigbus as *const () as usize) };
        let chunks = length / stride;
        // SAFETY: base..base+length is the mapping made above; every access
        // is an aligned u64 inside it.
        let mismatch = unsafe { fill_and_verify(base.cast::<u8>(), chunks, stride) };
        if let Some(chunk) = mismatch {
            return Err(Failure::Refused(format!(
                "{line}: chunk {chunk} of {chunks} (at {:#x}) does not read back what was written",
                chunk * stride
            )));
        }
        line.push_str(&format!(
            ", {chunks} chunks of {stride} bytes written and read back"
        ));
    }
    // SAFETY: the mapping made above, unmapped once.
    unsafe { munmap(base, length) };
    Ok(line)
}

fn tag(chunk: usize, end: usize) -> u64 {
    0x6e64_6800_0000_0000 ^ ((chunk as u64) << 1) ^ end as u64
}

/// Writes a tag at the start and end of every chunk, then reads them all;
/// the first chunk whose tags differ.
///
/// # Safety
/// `base` must point at a writable mapping of `chunks * stride` bytes.
unsafe fn fill_and_verify(base: *mut u8, chunks: usize, stride: usize) -> Option<usize> {
    let slots = |chunk: usize| [chunk * stride, chunk * stride + stride - 8];
    for chunk in 0..chunks {
        for (end, at) in slots(chunk).into_iter().enumerate() {
            TOUCHING.store(at, Ordering::Relaxed);
            base.add(at).cast::<u64>().write_volatile(tag(chunk, end));
        }
    }
    (0..chunks).find(|&chunk| {
        slots(chunk).into_iter().enumerate().any(|(end, at)| {
            TOUCHING.store(at, Ordering::Relaxed);
            base.add(at).cast::<u64>().read_volatile() != tag(chunk, end)
        })
    })
}

extern "C" fn on_sigbus(_signal: i32) {
    let mut line = *b"SIGBUS at offset 0x0000000000000000 of the mapping\n";
    let at = TOUCHING.load(Ordering::Relaxed);
    for digit in 0..16 {
        let nibble = (at >> (4 * (15 - digit))) & 0xf;
        line[19 + digit] = b"0123456789abcdef"[nibble];
    }
    // SAFETY: write(2) and _exit(2) are async-signal-safe.
    unsafe {
        write(1, line.as_ptr(), line.len());
        _exit(EXIT_SIGBUS);
    }
}

fn label_write_command(args: &[String]) -> Result<String, Failure> {
    let options = Options { args };
    let path = options.positional(0, "NMEM_DEVICE")?;
    let bytes = options.number("--bytes")?.unwrap_or(8) as u32;
    let file = open_read_write(path, 0)?;
    let fd = file.as_raw_fd();
    // struct nd_cmd_get_config_size { status, config_size, max_xfer }
    let mut size = [0u32; 3];
    // SAFETY: the buffer is the command's 12-byte structure.
    if unsafe { ioctl(fd, ND_IOCTL_GET_CONFIG_SIZE, size.as_mut_ptr()) } != 0 {
        return Err(refused("GET_CONFIG_SIZE"));
    }
    if bytes == 0 || bytes > size[1] || bytes > size[2] {
        return Err(Failure::Usage(format!(
            "--bytes {bytes}: the label area is {} bytes, {} at a time",
            size[1], size[2]
        )));
    }
    // struct nd_cmd_get_config_data_hdr { in_offset, in_length, status, out_buf[] }
    let mut get = vec![0u8; 12 + bytes as usize];
    get[4..8].copy_from_slice(&bytes.to_ne_bytes());
    // SAFETY: header and payload in one buffer of the size the header says.
    if unsafe { ioctl(fd, ND_IOCTL_GET_CONFIG_DATA, get.as_mut_ptr()) } != 0 {
        return Err(refused("GET_CONFIG_DATA"));
    }
    // struct nd_cmd_set_config_hdr { in_offset, in_length, in_buf[] }, then status
    let mut set = vec![0u8; 8 + bytes as usize + 4];
    set[4..8].copy_from_slice(&bytes.to_ne_bytes());
    set[8..8 + bytes as usize].copy_from_slice(&get[12..]);
    // SAFETY: as above.
    if unsafe { ioctl(fd, ND_IOCTL_SET_CONFIG_DATA, set.as_mut_ptr()) } != 0 {
        return Err(refused("SET_CONFIG_DATA"));
    }
    Ok(format!(
        "SET_CONFIG_DATA: {bytes} bytes written at offset 0 of {path}"
    ))
}

fn race_command(args: &[String]) -> Result<String, Failure> {
    let options = Options { args };
    let path = options.positional(0, "BLOCK_DEVICE")?.to_string();
    let sector = options.required("--sector-size")? as usize;
    let writers = options.number("--writers")?.unwrap_or(2) as usize;
    let writes = options.number("--writes")?.unwrap_or(2000) as usize;
    if sector == 0 || sector % 512 != 0 || writers == 0 {
        return Err(Failure::Usage(String::from(
            "--sector-size must be a multiple of 512 and --writers at least 1",
        )));
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let file = std::sync::Arc::new(open_read_write(&path, O_DIRECT)?);
    let start = std::sync::Arc::new(std::sync::Barrier::new(writers));
    // Writer w's own sectors: 1 + w, 1 + w + writers, ...: each written once.
    let own_sector = move |writer: usize, write: usize| 1 + writer + writers * write;
    let handles: Vec<_> = (0..writers)
        .map(|writer| {
            let file = file.clone();
            let start = start.clone();
            std::thread::spawn(move || -> std::io::Result<()> {
                pin_to_cpu(writer % cpus);
                let mut buffer = AlignedBuffer::new(sector);
                start.wait();
                for write in 0..writes {
                    buffer.fill(writer as u64, write as u64);
                    file.write_all_at(buffer.bytes(), 0)?;
                    let lba = own_sector(writer, write);
                    buffer.fill(OWN_CONTENT, lba as u64);
                    file.write_all_at(buffer.bytes(), (lba * sector) as u64)?;
                }
                Ok(())
            })
        })
        .collect();
    for handle in handles {
        match handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                return Err(Failure::Refused(format!("write: {}", errno_text(&error))))
            }
            Err(_) => return Err(Failure::Refused(String::from("a writer panicked"))),
        }
    }
    let mut read = AlignedBuffer::new(sector);
    let mut want = AlignedBuffer::new(sector);
    let sectors = writers * writes;
    for lba in 1..=sectors {
        want.fill(OWN_CONTENT, lba as u64);
        file.read_exact_at(read.bytes_mut(), (lba * sector) as u64)
            .map_err(|e| Failure::Refused(format!("read sector {lba}: {}", errno_text(&e))))?;
        if read.bytes() != want.bytes() {
            return Err(Failure::Refused(format!(
                "sector {lba} does not hold what was written to it (it holds {})",
                read.describe()
            )));
        }
    }
    file.read_exact_at(read.bytes_mut(), 0)
        .map_err(|e| Failure::Refused(format!("read sector 0: {}", errno_text(&e))))?;
    if !read.is_a_last_write(writes as u64) {
        return Err(Failure::Refused(format!(
            "sector 0 holds none of the writers' last writes (it holds {})",
            read.describe()
        )));
    }
    Ok(format!(
        "{writers} writers x {writes} writes of sector 0 on {} CPUs, each followed by a sector of its own: sector 0 holds a last write, the {sectors} others read back as written",
        cpus.min(writers)
    ))
}

/// The writer field of a sector written once, with its own number.
const OWN_CONTENT: u64 = 0xffff;

fn pin_to_cpu(cpu: usize) {
    let mut mask = [0u64; 16];
    mask[cpu / 64] |= 1 << (cpu % 64);
    // SAFETY: a CPU mask of 1024 bits for the calling thread.
    unsafe { sched_setaffinity(0, std::mem::size_of_val(&mask), mask.as_ptr()) };
}

/// A sector-sized buffer aligned for O_DIRECT, filled with `(writer, n)`.
struct AlignedBuffer {
    words: Vec<u64>,
    offset: usize,
    len: usize,
}

impl AlignedBuffer {
    fn new(len: usize) -> Self {
        let words = vec![0u64; (len + 4096) / 8];
        let address = words.as_ptr() as usize;
        let offset = (4096 - address % 4096) % 4096 / 8;
        AlignedBuffer { words, offset, len }
    }

    fn fill(&mut self, writer: u64, n: u64) {
        let writer = writer & 0xffff;
        let count = self.len / 8;
        for (index, word) in self.words[self.offset..self.offset + count]
            .iter_mut()
            .enumerate()
        {
            *word = (writer << 48) ^ (n << 16) ^ index as u64;
        }
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: the words are plain data inside the vector.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().add(self.offset).cast(), self.len) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above, borrowed mutably.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.words.as_mut_ptr().add(self.offset).cast(),
                self.len,
            )
        }
    }

    /// Whether the buffer is one writer's last write of sector 0, whole.
    fn is_a_last_write(&self, writes: u64) -> bool {
        let first = self.words[self.offset];
        let writer = first >> 48;
        writer != OWN_CONTENT && {
            let mut want = AlignedBuffer::new(self.len);
            want.fill(writer, writes - 1);
            want.bytes() == self.bytes()
        }
    }

    /// Whose content a sector holds: `writer W's write N` or `sector N's`.
    fn describe(&self) -> String {
        let first = self.words[self.offset];
        let (writer, n) = (first >> 48, (first >> 16) & 0xffff_ffff);
        if writer == OWN_CONTENT {
            format!("sector {n}'s data")
        } else {
            format!("writer {writer}'s write {n} to sector 0")
        }
    }
}
