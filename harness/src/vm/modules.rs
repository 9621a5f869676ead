//! The kernel modules a topology needs, in load order: those the guest's
//! init loads at boot (no udev runs in the guest, so nothing else would),
//! and those it leaves to the harness, loaded after the agent answers.

use crate::drivers::{self, Function};
use crate::topology::Topology;

/// Every module the topology needs, in load order (no udev runs in the
/// guest, so nothing else would load them), each marked when the harness
/// loads it after the agent answers rather than init at boot: the drivers
/// of devices QEMU cannot restore, and for virtio-pmem the pmem stack
/// after its driver too, so that the probe order is the one of a boot
/// (loading virtio_pmem alone after nd_btt made the btt seed `btt0.1`
/// instead of `btt0.0` in one run out of five). A CXL region appears only
/// when the harness assembles it, so the pmem stack stays at boot there.
fn modules(topology: &Topology) -> Vec<(&'static str, bool)> {
    let of =
        |function: Function, late: bool| function.drivers().iter().map(move |d| (d.module, late));
    let mut m: Vec<(&str, bool)> = of(Function::Agent, false)
        .chain(of(Function::Panic, false))
        .collect();
    if topology.nfit_test == Some(crate::topology::MockBus::Loaded) {
        // Brings the mock libnvdimm and nfit it wraps.
        m.extend(of(Function::NfitTest, false));
    }
    if let Some(cxl_test) = topology.cxl_test {
        if cxl_test == crate::topology::MockBus::Loaded {
            m.push(("cxl_test", false));
        }
        // Bound by alias only: without udev, nothing else loads them.
        m.extend(["cxl_mock_mem", "dax_cxl"].map(|n| (n, false)));
    }
    let pmem_late = topology.pmem_drivers == crate::topology::PmemDrivers::AfterStart;
    if topology.has_nfit() {
        m.extend(of(Function::Nfit, pmem_late));
    }
    if topology.cxl.is_some() {
        m.extend(of(Function::Cxl, true));
    }
    if !topology.e820.is_empty() {
        m.extend(of(Function::E820, pmem_late));
    }
    let virtio_pmem = !topology.virtio_pmem.is_empty();
    if virtio_pmem {
        m.extend(of(Function::VirtioPmem, true));
    }
    if topology.has_pmem() {
        // ext4 (and, on 6.x, the checksum it asks the crypto API for) for
        // filesystems on fsdax: busybox mount does not load modules.
        let late = virtio_pmem || pmem_late;
        m.extend(
            of(Function::Pmem, late)
                .chain(of(Function::Dax, late))
                .chain(of(Function::Ext4, late)),
        );
    }
    m
}

/// Whether `module` is loaded only where the kernel has it
/// ([`drivers::Role::Helper`]: `dax_cxl` came with Linux 6.3,
/// `crc32c_generic` went with 7.x).
pub fn is_helper(module: &str) -> bool {
    drivers::role_of(module) == drivers::Role::Helper
}

/// The modules as the guest's init reads them (`ndharness.modules=`): comma
/// separated, a helper marked with a trailing `?`.
pub fn marked(modules: &[&str]) -> String {
    modules
        .iter()
        .map(|m| match is_helper(m) {
            true => format!("{m}?"),
            false => (*m).to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The modules the guest's init loads (`ndharness.modules=`).
pub fn guest_modules(topology: &Topology) -> Vec<&'static str> {
    modules(topology)
        .into_iter()
        .filter_map(|(n, late)| (!late).then_some(n))
        .collect()
}

/// Drivers the harness loads once the agent answers, after the point a warm
/// start restores: the kernel has not touched these devices when the state
/// is saved, so what the drivers find is the restored QEMU's freshly reset
/// devices (QEMU 10.0.2 saves no state for CXL ports and memory devices,
/// nor for virtio-pmem); a power-cut case's pmem drivers too, so that its
/// restarts read their own crash images' labels. A cold boot loads them at
/// the same point, so both give the same records.
pub fn driver_modules(topology: &Topology) -> Vec<&'static str> {
    modules(topology)
        .into_iter()
        .filter_map(|(n, late)| late.then_some(n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::cmdline::{kernel_append, Accel, GuestFiles, LaunchSpec};
    use std::path::Path;

    #[test]
    fn modules_follow_devices() {
        let t = crate::topology::Topology {
            machine: Default::default(),
            nvdimms: vec![],
            cxl: None,
            e820: vec![],
            virtio_pmem: vec![],
            nfit_test: None,
            cxl_test: None,
            pmem_drivers: Default::default(),
        };
        assert!(!guest_modules(&t).contains(&"nfit"));
        assert!(!guest_modules(&t).contains(&"nd_pmem"));
        let t = crate::topology::load("nfit-1").unwrap().topology;
        assert!(guest_modules(&t).contains(&"nfit"));
        assert!(!guest_modules(&t).contains(&"nfit_test"));
        // The mock bus loads before the drivers that bind to its regions,
        // and no QEMU NVDIMM (so no ACPI NFIT) comes with it.
        let t = crate::topology::load("nfit-test").unwrap().topology;
        let m = guest_modules(&t);
        let pos = |n: &str| m.iter().position(|x| *x == n);
        assert!(pos("nfit_test").unwrap() < pos("nd_pmem").unwrap(), "{m:?}");
        assert!(!t.has_nfit());
    }

    #[test]
    fn pmem_drivers_after_start_leave_nfit_and_the_stack_to_the_harness() {
        let mut t = crate::topology::load("nfit-1").unwrap().topology;
        t.pmem_drivers = crate::topology::PmemDrivers::AfterStart;
        let at_boot = guest_modules(&t);
        assert!(
            !at_boot.contains(&"nfit") && !at_boot.contains(&"nd_pmem"),
            "{at_boot:?}"
        );
        let late = driver_modules(&t);
        let pos = |n: &str| late.iter().position(|x| *x == n);
        assert!(pos("nfit").unwrap() < pos("nd_pmem").unwrap(), "{late:?}");
    }

    #[test]
    fn cxl_test_brings_what_only_udev_would_load() {
        let t = crate::topology::load("cxl-test").unwrap().topology;
        let m = guest_modules(&t);
        let pos = |name| m.iter().position(|x| *x == name);
        assert!(
            pos("cxl_test").unwrap() < pos("cxl_mock_mem").unwrap(),
            "{m:?}"
        );
        assert!(
            pos("dax_cxl").is_some() && pos("nd_pmem").is_some(),
            "{m:?}"
        );
        assert!(
            driver_modules(&t).is_empty(),
            "a mock bus is saved with its state"
        );
        let t = crate::topology::load("cxl-test-modules").unwrap().topology;
        let m = guest_modules(&t);
        assert!(
            !m.contains(&"cxl_test") && m.contains(&"cxl_mock_mem"),
            "{m:?}"
        );
    }

    #[test]
    fn cxl_and_virtio_pmem_drivers_wait_for_the_harness() {
        // Not loaded by init: a saved state must predate their probe.
        for name in ["cxl-x4", "virtio-pmem-1"] {
            let t = crate::topology::load(name).unwrap().topology;
            let append = kernel_append(&LaunchSpec {
                topology: &t,
                kernel: Path::new("k"),
                initrd: Path::new("i"),
                files: &GuestFiles::under(Path::new("r"), Path::new("r"), &t),
                accel: Accel::Tcg,
                extra_append: "",
                incoming: None,
                shares: &[],
                gdb: None,
            });
            let drivers = driver_modules(&t);
            for d in &drivers {
                assert!(!append.contains(d), "{name}: {d} in {append}");
            }
            assert!(guest_modules(&t).contains(&"virtio_console"), "{name}");
        }
        // virtio-pmem's region appears with its driver: the pmem drivers
        // follow it, as at boot. A CXL region appears only when assembled.
        let t = crate::topology::load("virtio-pmem-1").unwrap().topology;
        assert_eq!(driver_modules(&t)[..2], ["virtio_pmem", "nd_pmem"]);
        let t = crate::topology::load("cxl-x2").unwrap().topology;
        assert!(guest_modules(&t).contains(&"nd_pmem"));
        assert_eq!(driver_modules(&t).last(), Some(&"dax_cxl"));
        let t = crate::topology::load("nfit-2").unwrap().topology;
        assert!(driver_modules(&t).is_empty());
    }
}
