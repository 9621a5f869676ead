//! QEMU's own view of the machine against the topology: its memory devices
//! (at every start) and its PCI tree (once the guest has numbered the
//! bridges).

use super::{Error, Result};
use crate::topology::Topology;
use crate::vm::{cmdline, qmp::Qmp};

/// Every PCI device the topology implies must be in QEMU's own PCI tree.
pub(super) async fn check_pci(qmp: &Qmp, topology: &Topology) -> Result<()> {
    let present = qmp.pci_ids().await?;
    let missing: Vec<String> = cmdline::pci_ids(topology)
        .into_iter()
        .filter(|id| !present.contains(id))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::Mismatch(format!(
            "PCI devices {missing:?} are not in QEMU's query-pci (present: {present:?})"
        )))
    }
}

/// Compares QEMU's own list of memory devices with the topology.
pub(super) async fn check_memory_devices(
    qmp: &Qmp,
    topology: &Topology,
) -> Result<serde_json::Value> {
    let devices = qmp.memory_devices().await?;
    let json = serde_json::to_value(&devices).unwrap_or_default();
    let nvdimms: Vec<_> = devices
        .iter()
        .filter_map(|d| match d {
            qapi::qmp::MemoryDeviceInfo::nvdimm(w) => Some(&w.data),
            _ => None,
        })
        .collect();
    if nvdimms.len() != topology.nvdimms.len() {
        return Err(Error::Mismatch(format!(
            "{} NVDIMMs in QEMU, {} in the topology",
            nvdimms.len(),
            topology.nvdimms.len()
        )));
    }
    for (i, (q, t)) in nvdimms.iter().zip(&topology.nvdimms).enumerate() {
        let expected = t.size.bytes() - t.label_size.bytes();
        if q.size as u64 != expected && q.size as u64 != t.size.bytes() {
            return Err(Error::Mismatch(format!(
                "nvdimm{i} is {} bytes in QEMU, the topology asks for {}",
                q.size, t.size
            )));
        }
    }
    Ok(json)
}
