//! QEMU's gdbstub in a running guest, and the run control a power cut
//! needs around it: the stub started at run time on a Unix socket beside
//! QMP's (the command line, and so the
//! saved state's key, stays as it is), the guest paused and resumed
//! through QMP, and the backing files the guest writes its NVDIMMs, label
//! areas and CXL memory into.

use std::path::{Path, PathBuf};

use super::{Machine, Result};

impl Machine {
    /// Starts QEMU's gdbstub on a Unix socket at `socket` (QMP's
    /// human-monitor-command `gdbserver`; the stub pauses the guest when a
    /// debugger connects).
    pub async fn start_gdbserver(&self, socket: &Path) -> Result<()> {
        let command_line = format!("gdbserver unix:{},server=on,wait=off", socket.display());
        self.qmp
            .execute(qapi::qmp::human_monitor_command {
                command_line,
                cpu_index: None,
            })
            .await?;
        Ok(())
    }

    /// Pauses every vCPU (QMP `stop`): what is in the backing files then is
    /// what a power cut at this moment would leave.
    pub async fn pause(&self) -> Result<()> {
        self.qmp.execute(qapi::qmp::stop {}).await?;
        Ok(())
    }

    /// Resumes a paused guest (QMP `cont`).
    pub async fn resume(&self) -> Result<()> {
        self.qmp.execute(qapi::qmp::cont {}).await?;
        Ok(())
    }

    /// The files behind the guest's NVDIMMs, label areas, CXL memory and
    /// virtio-pmem devices.
    pub fn backing_files(&self) -> Vec<PathBuf> {
        self.run
            .files
            .backing()
            .into_iter()
            .map(Path::to_owned)
            .collect()
    }
}
