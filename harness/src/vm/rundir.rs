//! One private folder per guest: sockets, serial log, QMP log, backing files,
//! and everything a failing case leaves behind as evidence.

use std::path::{Path, PathBuf};

use super::cmdline::GuestFiles;
use super::qemu::{Error, Result};
use crate::size::Size;
use crate::topology::Topology;

/// Unix socket paths longer than this do not fit in sockaddr_un.
const MAX_SOCKET_PATH: usize = 100;

pub struct RunDir {
    pub path: PathBuf,
    pub files: GuestFiles,
    /// Holds the sockets when the run folder's own path is too long for them.
    _socket_dir: Option<tempfile::TempDir>,
}

impl RunDir {
    /// Creates `parent/name` (or `name-2`, ...) with sparse backing files.
    pub fn create(parent: &Path, name: &str, topology: &Topology) -> Result<RunDir> {
        let err = |path: &Path| {
            let path = path.to_owned();
            move |source| Error::RunDir { path, source }
        };
        std::fs::create_dir_all(parent).map_err(err(parent))?;
        let safe: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.@".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path = (1..)
            .map(|i| {
                if i == 1 {
                    parent.join(&safe)
                } else {
                    parent.join(format!("{safe}-{i}"))
                }
            })
            .find(|p| std::fs::create_dir(p).is_ok())
            .expect("some suffix is free");
        let path = path.canonicalize().map_err(err(&path))?;

        let (sock_dir, holder) = if path.join("agent.sock").as_os_str().len() > MAX_SOCKET_PATH {
            let t = tempfile::Builder::new()
                .prefix("ndh-")
                .tempdir()
                .map_err(err(&path))?;
            (t.path().to_owned(), Some(t))
        } else {
            (path.clone(), None)
        };
        let files = GuestFiles::under(&path, &sock_dir, topology);
        let mut sized: Vec<(&PathBuf, Size)> = Vec::new();
        sized.extend(
            files
                .nvdimm_backing
                .iter()
                .zip(topology.nvdimms.iter().map(|d| d.size)),
        );
        sized.extend(
            files
                .virtio_pmem_backing
                .iter()
                .zip(topology.virtio_pmem.iter().map(|d| d.size)),
        );
        if let Some(c) = &topology.cxl {
            for ((mem, lsa), (_, d)) in files.cxl_backing.iter().zip(c.devices()) {
                sized.push((mem, d.size));
                sized.push((lsa, d.lsa));
            }
        }
        // Sparse: a 1 GiB NVDIMM costs nothing until the guest writes it.
        for (p, size) in sized {
            let f = std::fs::File::create(p).map_err(err(p))?;
            f.set_len(size.bytes()).map_err(err(p))?;
        }
        Ok(RunDir {
            files,
            path,
            _socket_dir: holder,
        })
    }

    pub fn qemu_log(&self) -> PathBuf {
        self.path.join("qemu.log")
    }

    pub fn qmp_log(&self) -> PathBuf {
        self.path.join("qmp.log")
    }

    /// Keeps one boot's logs under a suffix before the same guest boots
    /// again (QEMU would truncate them).
    pub fn keep_boot_logs(&self, boot: usize) {
        for p in [
            self.files.serial_log.clone(),
            self.qemu_log(),
            self.qmp_log(),
        ] {
            let mut name = p.as_os_str().to_owned();
            name.push(format!(".boot{boot}"));
            let _ = std::fs::rename(&p, PathBuf::from(name));
        }
    }

    /// The last `lines` lines of the serial console, for error messages.
    pub fn serial_tail(&self, lines: usize) -> String {
        tail(&self.files.serial_log, lines)
    }

    /// The console around the last kernel panic: what led to it and the
    /// start of its trace; the plain tail when there is no panic line.
    pub fn serial_panic_excerpt(&self) -> String {
        let text = std::fs::read(&self.files.serial_log).unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        let lines: Vec<&str> = text.lines().collect();
        match lines
            .iter()
            .rposition(|l| l.contains(crate::kmsg::PANIC_LINE))
        {
            Some(i) => lines[i.saturating_sub(12)..(i + 30).min(lines.len())].join("\n"),
            None => self.serial_tail(40),
        }
    }

    /// Removes the folder (a passing case keeps nothing).
    pub fn remove(self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Copies `src` to `dst` with the same holes: only the data extents are
/// read and written, so a 1 GiB backing file the guest barely touched
/// copies in microseconds and stays sparse.
pub fn copy_sparse(src: &Path, dst: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    use std::os::unix::io::AsRawFd;
    let from = std::fs::File::open(src)?;
    let len = from.metadata()?.len();
    let to = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(dst)?;
    to.set_len(len)?;
    let (fi, fo) = (from.as_raw_fd(), to.as_raw_fd());
    let mut pos: libc::off_t = 0;
    let mut buf = Vec::new();
    while (pos as u64) < len {
        // SAFETY: plain lseek on a descriptor this function owns.
        let data = unsafe { libc::lseek(fi, pos, libc::SEEK_DATA) };
        if data < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENXIO) {
                break; // only a hole is left
            }
            return Err(e);
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fi, data, libc::SEEK_HOLE) };
        if hole < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let (mut off_in, mut off_out) = (data, data);
        while off_in < hole {
            let want = (hole - off_in) as usize;
            // SAFETY: both offsets point at live locals; the kernel copies
            // between the two descriptors this function owns.
            let n = unsafe { libc::copy_file_range(fi, &mut off_in, fo, &mut off_out, want, 0) };
            if n > 0 {
                continue;
            }
            if n == 0 {
                break;
            }
            let e = std::io::Error::last_os_error();
            if !matches!(
                e.raw_os_error(),
                Some(libc::EXDEV | libc::ENOSYS | libc::EOPNOTSUPP)
            ) {
                return Err(e);
            }
            // No copy_file_range between these files: read and write.
            buf.resize(want.min(1 << 20), 0);
            let n = from.read_at(&mut buf, off_in as u64)?;
            if n == 0 {
                break;
            }
            to.write_all_at(&buf[..n], off_out as u64)?;
            off_in += n as libc::off_t;
            off_out += n as libc::off_t;
        }
        pos = hole;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    #[test]
    fn a_sparse_copy_keeps_data_and_holes() {
        let dir = tempfile::tempdir().unwrap();
        let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
        let f = std::fs::File::create(&src).unwrap();
        f.set_len(64 << 20).unwrap();
        f.write_all_at(b"label area", 0).unwrap();
        f.write_all_at(&[7u8; 8192], 40 << 20).unwrap();
        drop(f);
        // What the copy replaces must not survive it.
        std::fs::write(&dst, vec![1u8; 100 << 10]).unwrap();
        copy_sparse(&src, &dst).unwrap();
        assert_eq!(std::fs::read(&src).unwrap(), std::fs::read(&dst).unwrap());
        use std::os::unix::fs::MetadataExt;
        let blocks = std::fs::metadata(&dst).unwrap().blocks() * 512;
        assert!(blocks < 4 << 20, "{blocks} bytes allocated for 64 MiB");
    }
}
