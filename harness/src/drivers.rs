//! What a guest needs from its kernel, by function (the agent's port, NFIT,
//! CXL, DAX, ext4, 9p, the mock buses...), and the kernel modules each
//! function takes: one table that the image builder ships from and the
//! guest loads from. Kernels differ in how they provide a function (6.1
//! builds `virtio_console` as a module, 6.12 builds it in; 7.x moved the
//! CRC code out of the crypto API, so `crc32c_generic` is gone), so a
//! module is either *required* (a kernel without it, as a module or built
//! in, cannot serve the function) or a *helper* (taken where the kernel has
//! it, left out without a word where it does not).

use serde::{Deserialize, Serialize};

/// One thing a guest image is for.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum Function {
    /// The guest agent's virtio-serial port.
    Agent,
    /// pvpanic: a late panic reported to QEMU.
    Panic,
    /// ACPI NFIT NVDIMMs.
    Nfit,
    /// Legacy e820 persistent memory (`memmap=`).
    E820,
    /// virtio-pmem devices.
    VirtioPmem,
    /// The pmem block and BTT drivers over any nd bus.
    Pmem,
    /// Device DAX over pmem, and kmem.
    Dax,
    /// ext4 for filesystems on fsdax.
    Ext4,
    /// CXL memory devices, ports and pmem regions.
    Cxl,
    /// Host folders in the guest (9p over virtio).
    Share,
    /// tools/testing/nvdimm's mock NFIT bus.
    NfitTest,
    /// tools/testing/cxl's mock CXL bus and memory devices.
    CxlTest,
    /// What ndctl's own tests mount, map and test on: xfs, device mapper,
    /// the ram disk of their working folder.
    NdctlTests,
    /// lkdtm, for the harness's own fault tests.
    Lkdtm,
}

/// Whether a function can do without a module.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Without it (as a module or built in) the function is missing.
    Required,
    /// Shipped and loaded where the kernel has it.
    Helper,
}

/// A kernel module as a function takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Driver {
    pub module: &'static str,
    pub role: Role,
    /// What it is, for the error that names it missing.
    pub what: &'static str,
}

/// A module of a function, `Required` or `Helper`: a struct literal, so
/// that the tables below are promoted to statics (a `const fn` call in them
/// would not be).
macro_rules! driver {
    ($role:ident, $module:literal, $what:literal) => {
        Driver {
            module: $module,
            role: Role::$role,
            what: $what,
        }
    };
}

impl Function {
    /// The modules the function takes, in load order.
    pub fn drivers(self) -> &'static [Driver] {
        match self {
            Function::Agent => &[
                driver!(Required, "virtio_pci", "virtio over PCI"),
                driver!(
                    Required,
                    "virtio_console",
                    "virtio-serial, the agent's port"
                ),
            ],
            Function::Panic => &[driver!(Required, "pvpanic_pci", "the pvpanic PCI device")],
            Function::Nfit => &[driver!(Required, "nfit", "the ACPI NFIT bus")],
            Function::E820 => &[driver!(Required, "nd_e820", "legacy e820 pmem")],
            Function::VirtioPmem => &[driver!(Required, "virtio_pmem", "virtio-pmem")],
            Function::Pmem => &[
                driver!(Required, "nd_pmem", "the pmem block driver"),
                driver!(Required, "nd_btt", "the BTT"),
            ],
            Function::Dax => &[
                driver!(Required, "dax_pmem", "device DAX over pmem"),
                driver!(Required, "device_dax", "the device DAX driver"),
                driver!(Required, "kmem", "dax as system RAM"),
            ],
            // 6.x's ext4 asks the crypto API for crc32c, which no udev
            // loads in the guest; 7.x computes it in lib/ and has no module.
            Function::Ext4 => &[
                driver!(Helper, "crc32c_generic", "crc32c for the crypto API"),
                driver!(Required, "ext4", "ext4"),
            ],
            Function::Cxl => &[
                driver!(Required, "cxl_acpi", "the CXL root (ACPI CEDT)"),
                driver!(Required, "cxl_pci", "CXL memory devices"),
                driver!(Required, "cxl_port", "CXL ports"),
                driver!(Required, "cxl_mem", "CXL memdevs"),
                driver!(
                    Required,
                    "cxl_pmem",
                    "CXL persistent memory (nvdimm bridge)"
                ),
                // CXL RAM regions as dax devices came with Linux 6.3; the pmem
                // regions the harness assembles do not need it.
                driver!(Helper, "dax_cxl", "CXL RAM regions as DAX"),
            ],
            Function::Share => &[
                driver!(Required, "9pnet_virtio", "9p over virtio"),
                driver!(Required, "9p", "the 9p filesystem"),
            ],
            Function::NfitTest => &[driver!(Required, "nfit_test", "the mock NFIT bus")],
            Function::CxlTest => &[
                driver!(Required, "cxl_test", "the mock CXL bus"),
                driver!(Required, "cxl_mock_mem", "the mock CXL memory devices"),
            ],
            Function::NdctlTests => &[
                driver!(Required, "dm_mod", "device mapper (dm.sh)"),
                driver!(Required, "xfs", "xfs (dax-xfs.sh, mmap.sh)"),
                driver!(Required, "brd", "the ram disk of the tests' working folder"),
            ],
            Function::Lkdtm => &[driver!(Required, "lkdtm", "lkdtm")],
        }
    }

    /// The name a recipe spells it with.
    pub fn name(self) -> String {
        serde_yaml_ng::to_string(&self)
            .expect("a unit variant serializes")
            .trim()
            .to_owned()
    }
}

/// The role of `module` in whichever function takes it (a module no
/// function names is required).
pub fn role_of(module: &str) -> Role {
    ALL.iter()
        .flat_map(|f| f.drivers())
        .find(|d| d.module == module)
        .map_or(Role::Required, |d| d.role)
}

/// Every function, in the order a recipe would list them.
pub const ALL: &[Function] = &[
    Function::Agent,
    Function::Panic,
    Function::Nfit,
    Function::E820,
    Function::VirtioPmem,
    Function::Pmem,
    Function::Dax,
    Function::Ext4,
    Function::Cxl,
    Function::Share,
    Function::NfitTest,
    Function::CxlTest,
    Function::NdctlTests,
    Function::Lkdtm,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_function_is_listed_once_and_named_in_kebab_case() {
        let mut names: Vec<String> = ALL.iter().map(|f| f.name()).collect();
        assert_eq!(names[4], "virtio-pmem");
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
    }

    #[test]
    fn each_module_belongs_to_one_function() {
        let mut modules: Vec<&str> = ALL
            .iter()
            .flat_map(|f| f.drivers())
            .map(|d| d.module)
            .collect();
        let total = modules.len();
        modules.sort();
        modules.dedup();
        assert_eq!(modules.len(), total);
    }

    #[test]
    fn helpers_are_what_some_kernels_lack() {
        assert_eq!(role_of("crc32c_generic"), Role::Helper);
        assert_eq!(role_of("dax_cxl"), Role::Helper);
        assert_eq!(role_of("cxl_pmem"), Role::Required);
        assert_eq!(role_of("not_a_module"), Role::Required);
    }
}
