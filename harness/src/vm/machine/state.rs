//! Saved states: a guest paused and written to a file with QMP `migrate`
//! to a `file:` URI (its shared backing files kept beside it as sparse
//! copies), and a new QEMU started with `-incoming defer` loading it
//! (QMP `migrate-incoming file:PATH`, once its QMP events are watched)
//! and resumed.

use std::path::Path;
use std::time::{Duration, Instant};

use super::{exited, Error, Machine, Result};
use crate::vm::qmp::Qmp;
use crate::vm::{qemu, QemuProcess, RunDir};

impl Machine {
    /// Pauses the guest (first copying into its memory the PCI headers QEMU
    /// does not save, when the topology has such devices), writes its RAM
    /// and device state to `state` with QMP `migrate` to a `file:` URI
    /// (`x-ignore-shared`: the NVDIMM, label, CXL and virtio-pmem backends
    /// stay out of it and are copied, sparse, beside it), and ends QEMU.
    pub async fn save(mut self, state: &Path) -> Result<RunDir> {
        if self.defers_drivers() {
            self.pci_state("save").await?;
        }
        self.qmp.execute(qapi::qmp::stop {}).await?;
        set_capabilities(&self.qmp).await?;
        self.qmp
            .execute(qapi::qmp::migrate {
                uri: Some(format!("file:{}", state.display())),
                channels: None,
                detach: None,
                resume: None,
            })
            .await?;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let info = self.qmp.execute(qapi::qmp::query_migrate {}).await?;
            use qapi::qmp::MigrationStatus as S;
            match info.status {
                Some(S::completed) => break,
                Some(S::failed | S::cancelled) => {
                    return Err(Error::State(format!(
                        "saving it failed: {}",
                        info.error_desc.unwrap_or_default()
                    )))
                }
                _ if Instant::now() > deadline => {
                    return Err(Error::State("saving it took over 120 s".into()))
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        self.qemu.kill().await;
        // The shared backing files are not in the state: kept beside it.
        let dir = backing_dir(state);
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| {
                Error::Qemu(qemu::Error::RunDir {
                    path: path.clone(),
                    source,
                })
            }
        };
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        for f in self.run.files.backing() {
            let to = dir.join(f.file_name().expect("a backing file has a name"));
            crate::vm::copy_sparse(f, &to).map_err(io(&to))?;
        }
        Ok(self.run)
    }
}

/// Where [`Machine::save`] keeps the guest's shared backing files: QEMU
/// saves them out of the state (`x-ignore-shared`), so a restore finds
/// them as they were when the state was saved, each trial on its own copy.
pub fn backing_dir(state: &Path) -> std::path::PathBuf {
    let mut name = state.as_os_str().to_owned();
    name.push(".files");
    name.into()
}

/// The capability a state is saved and loaded with: RAM blocks that map a
/// shared file (NVDIMM, CXL memory and label areas, virtio-pmem) stay out
/// of the state. Loading a 1 GiB NVDIMM's pages into a fresh file cost 0.3
/// to 2.5 s per restore; a sparse copy of the file costs microseconds.
async fn set_capabilities(qmp: &Qmp) -> Result<()> {
    qmp.execute(qapi::qmp::migrate_set_capabilities {
        capabilities: vec![qapi::qmp::MigrationCapabilityStatus {
            capability: qapi::qmp::MigrationCapability::x_ignore_shared,
            state: true,
        }],
    })
    .await?;
    Ok(())
}

/// Gives a guest about to be restored the backing files of the saved one.
pub(super) fn restore_backing(state: &Path, run: &RunDir) -> Result<()> {
    let dir = backing_dir(state);
    for f in run.files.backing() {
        let from = dir.join(f.file_name().expect("a backing file has a name"));
        if !from.exists() {
            return Err(Error::State(format!(
                "{} is missing: a state is kept with its backing files",
                from.display()
            )));
        }
        crate::vm::copy_sparse(&from, f).map_err(|source| qemu::Error::RunDir {
            path: f.to_owned(),
            source,
        })?;
    }
    Ok(())
}

/// Gives a guest about to start the backing files in `dir` (by name).
pub(super) fn backing_from(dir: &Path, run: &RunDir) -> Result<()> {
    for f in run.files.backing() {
        let from = dir.join(f.file_name().expect("a backing file has a name"));
        crate::vm::copy_sparse(&from, f).map_err(|source| qemu::Error::RunDir {
            path: from.clone(),
            source,
        })?;
    }
    Ok(())
}

/// Starts loading `state` into a QEMU started with `-incoming defer`, waits
/// for it and resumes the guest; returns the status after that.
pub(super) async fn load(
    qmp: &Qmp,
    state: &Path,
    process: &mut QemuProcess,
    run: &RunDir,
    deadline: Instant,
) -> Result<String> {
    set_capabilities(qmp).await?;
    qmp.execute(qapi::qmp::migrate_incoming {
        uri: Some(format!("file:{}", state.display())),
        channels: None,
        exit_on_error: None,
    })
    .await?;
    restored(qmp, process, run, deadline).await
}

/// Waits for QEMU to finish loading an incoming state (it ends paused, as
/// it was saved), then resumes the guest; returns the status after that.
async fn restored(
    qmp: &Qmp,
    process: &mut QemuProcess,
    run: &RunDir,
    deadline: Instant,
) -> Result<String> {
    loop {
        let status = qmp.status().await?;
        match status.as_str() {
            "paused" | "postmigrate" | "prelaunch" => break,
            "inmigrate" | "restore-vm" if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            "inmigrate" | "restore-vm" => {
                return Err(Error::State(
                    "it did not load before the boot deadline".into(),
                ))
            }
            "running" => return Ok(status),
            other => {
                if let Some(st) = process.wait(Duration::from_millis(200)).await {
                    return Err(exited(
                        run,
                        "while restoring the saved state",
                        st.to_string(),
                    ));
                }
                return Err(Error::State(format!("QEMU is `{other}` after loading it")));
            }
        }
    }
    qmp.execute(qapi::qmp::cont {}).await?;
    qmp.status().await.map_err(Into::into)
}
