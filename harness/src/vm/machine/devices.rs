//! The devices QEMU 10.0.2 does not save (CXL, virtio-pmem): their drivers,
//! which the guest's init leaves to the harness, the PCI headers kept in
//! guest memory across a saved state, the CXL regions committed again after
//! a restore; and NVDIMM hotplug through QMP.

use std::time::Duration;

use super::{Error, Machine, Result};
use crate::size::Size;
use crate::vm::agent::ExecOutput;
use crate::vm::{modules, qemu};

const PCI_STATE: &str = "/usr/libexec/ndharness/pci-state";
/// Decommits and commits every committed CXL region (the kernel's own
/// sysfs path: decommitting releases the region's driver), and binds it
/// again.
const RECOMMIT_REGIONS: &str = "for r in /sys/bus/cxl/devices/region*; do \
     [ \"$(cat \"$r/commit\" 2>/dev/null)\" = 1 ] || continue; \
     echo 0 >\"$r/commit\" && echo 1 >\"$r/commit\" && \
     echo \"${r##*/}\" >/sys/bus/cxl/drivers/cxl_region/bind || exit; \
     done";
/// Flushes the nd bus's asynchronous probes (regions, namespaces and their
/// seed devices) as a boot's idle moments would: a step started while they
/// run found `btt0.1` where a settled guest has `btt0.0`.
const FLUSH_ND_PROBES: &str = "for f in /sys/bus/nd/devices/ndbus*/wait_probe; do \
     [ ! -e \"$f\" ] || cat \"$f\" >/dev/null; done";

impl Machine {
    /// `pci-state save|restore` in the guest: the PCI headers QEMU 10.0.2
    /// saves none of (CXL ports and devices, virtio-pmem), kept in guest
    /// memory so they go with the state.
    pub(super) async fn pci_state(&self, action: &str) -> Result<()> {
        let argv = [PCI_STATE.to_owned(), action.to_owned()];
        let out = self.exec(&argv, Duration::from_secs(30)).await?;
        if !out.success() {
            return Err(Error::State(format!(
                "pci-state {action}: {}",
                out.stderr_text().trim()
            )));
        }
        Ok(())
    }

    /// Whether the guest's init leaves drivers to the harness (devices QEMU
    /// does not save: CXL, virtio-pmem; and every power-cut case's pmem
    /// drivers), loaded by [`Self::load_drivers`].
    pub fn defers_drivers(&self) -> bool {
        !self.drivers.is_empty()
    }

    /// Loads the drivers the guest's init leaves to the harness
    /// ([`modules::driver_modules`]), after writing back the PCI
    /// headers of a restored guest; their kernel records stay for
    /// [`Self::take_unattributed`]. `Ok(None)` when the topology has none;
    /// the output of a failing `modprobe` otherwise.
    pub async fn load_drivers(&mut self) -> Result<Option<ExecOutput>> {
        if !self.defers_drivers() {
            return Ok(None);
        }
        if self.restored {
            self.pci_state("restore").await?;
        }
        let argv = crate::command_line::shell(drivers_script(&self.drivers));
        let out = self.exec(&argv, Duration::from_secs(120)).await?;
        self.read_kernel_log().await?;
        Ok(Some(out))
    }

    /// Reconnects a guest restored with its drivers bound (and its CXL
    /// regions assembled) to the devices QEMU 10.0.2 restores as if reset:
    /// writes their PCI headers back, then commits every committed CXL
    /// region again, so that the kernel programs the HDM decoders anew (the
    /// restore leaves them uncommitted: the region's memory would read as
    /// nothing and writes would be lost), binds it again and flushes the nd
    /// bus's probes as [`Self::load_drivers`] does. Their kernel records
    /// stay for [`Self::take_unattributed`]. `Ok(None)` unless the guest
    /// was restored and has such devices.
    pub async fn reattach_devices(&mut self) -> Result<Option<ExecOutput>> {
        if !self.restored || !self.defers_drivers() {
            return Ok(None);
        }
        let script = format!(
            "{PCI_STATE} restore >/dev/null || exit; {RECOMMIT_REGIONS}; {FLUSH_ND_PROBES}"
        );
        let argv = crate::command_line::shell(script);
        let out = self.exec(&argv, Duration::from_secs(120)).await?;
        self.read_kernel_log().await?;
        Ok(Some(out))
    }

    /// Adds an NVDIMM through QMP with a new backing file in the run folder;
    /// returns how many NVDIMMs the guest had before.
    pub async fn hotplug_nvdimm(&mut self, size: Size, label_size: Size) -> Result<usize> {
        use qapi::qmp;
        let before = self.nvdimms;
        let i = self.hotplugged;
        self.hotplugged += 1;
        let backing = self.run.path.join(format!("hotplug{i}.img"));
        let io = |source| qemu::Error::RunDir {
            path: backing.clone(),
            source,
        };
        std::fs::File::create(&backing)
            .and_then(|f| f.set_len(size.bytes()))
            .map_err(io)?;
        let memdev = format!("hpmem{i}");
        let base = qmp::MemoryBackendProperties {
            dump: None,
            host_nodes: None,
            merge: None,
            policy: None,
            prealloc: None,
            prealloc_context: None,
            prealloc_threads: None,
            reserve: None,
            share: Some(true),
            x_use_canonical_path_for_ramblock_id: None,
            size: size.bytes(),
        };
        let file = qmp::MemoryBackendFileProperties {
            base,
            align: None,
            discard_data: None,
            offset: None,
            pmem: None,
            readonly: None,
            rom: None,
            mem_path: backing.display().to_string(),
        };
        self.qmp
            .execute(qmp::object_add(qmp::ObjectOptions::memory_backend_file {
                id: memdev.clone(),
                memory_backend_file: file,
            }))
            .await?;
        let mut arguments = qapi::Dictionary::new();
        arguments.insert("memdev".into(), memdev.into());
        arguments.insert("label-size".into(), label_size.bytes().into());
        self.qmp
            .execute(qmp::device_add {
                driver: "nvdimm".into(),
                bus: None,
                id: Some(format!("hpdimm{i}")),
                arguments,
            })
            .await?;
        self.nvdimms += 1;
        Ok(before)
    }
}

/// Loads `drivers` in order (an optional one only when the kernel has it,
/// [`modules::is_helper`]), then flushes the nd bus's probes
/// ([`FLUSH_ND_PROBES`]).
fn drivers_script(drivers: &[&str]) -> String {
    let (optional, required): (Vec<&str>, Vec<&str>) =
        drivers.iter().partition(|d| modules::is_helper(d));
    let mut s = format!("modprobe -a {} || exit; ", required.join(" "));
    for m in optional {
        s.push_str(&format!("! modprobe -n -q {m} || modprobe {m} || exit; "));
    }
    s.push_str(FLUSH_ND_PROBES);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_optional_driver_is_loaded_only_where_the_kernel_has_it() {
        let s = drivers_script(&["cxl_acpi", "cxl_pci", "dax_cxl"]);
        assert!(
            s.starts_with("modprobe -a cxl_acpi cxl_pci || exit; "),
            "{s}"
        );
        assert!(
            s.contains("! modprobe -n -q dax_cxl || modprobe dax_cxl || exit; "),
            "{s}"
        );
        assert!(s.ends_with("done"), "{s}");
    }
}
