//! One private folder per guest: sockets, serial log, QMP log, backing files,
//! and everything a failing case leaves behind as evidence.

use std::path::{Path, PathBuf};

use super::cmdline::GuestFiles;
use super::{Error, Result};
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
            .rposition(|l| l.contains("Kernel panic - not syncing"))
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
