//! Guest topologies: the machine and the persistent-memory devices it carries.
//!
//! A topology is plain data, loaded from YAML (a shipped name such as `nfit-1`,
//! or a file), validated before anything boots, and turned into a QEMU command
//! line by [`crate::vm::cmdline`].

pub mod cxl;
pub mod named;

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::size::Size;

pub use named::{names as named_topologies, NAMED};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unknown topology `{name}`: shipped topologies are {known}; or pass the path of a YAML file")]
    Unknown { name: String, known: String },
    #[error(transparent)]
    Yaml(#[from] crate::yaml::Error),
    #[error("invalid topology {origin}: at `{yaml_path}`: {reason}")]
    Invalid {
        origin: String,
        yaml_path: String,
        reason: String,
    },
    #[error("invalid topology {origin}: at `{yaml_path}`: {reason}")]
    Cxl {
        origin: String,
        yaml_path: String,
        reason: cxl::Error,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

/// The [`Error::Invalid`] of a topology from `origin`.
fn invalid(origin: &str, yaml_path: &str, reason: impl Into<String>) -> Error {
    Error::Invalid {
        origin: origin.to_owned(),
        yaml_path: yaml_path.to_owned(),
        reason: reason.into(),
    }
}

/// A guest topology.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    #[serde(default)]
    pub machine: Machine,
    /// ACPI NFIT NVDIMMs, each with its own backing file.
    #[serde(default)]
    pub nvdimms: Vec<Nvdimm>,
    /// CXL persistent memory (`cxl: { ways: 6 }` or written out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cxl: Option<cxl::Cxl>,
    /// Legacy e820 persistent memory: ranges of guest RAM the kernel treats
    /// as pmem (`memmap=SIZE!OFFSET`), as ndctl's own dax tests use.
    #[serde(default)]
    pub e820: Vec<E820Pmem>,
    /// virtio-pmem devices, each with its own backing file.
    #[serde(default)]
    pub virtio_pmem: Vec<VirtioPmem>,
    /// The kernel's mock NVDIMM bus (tools/testing/nvdimm): `modprobe
    /// nfit_test` gives bus nfit_test.0 with a 2-way and a 4-way interleaved
    /// region over nmem0-3, and nfit_test.1. Needs an image that builds it
    /// (`kernel: { nfit_test: true }` in its recipe: images/nfit-test.yaml).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nfit_test: Option<MockBus>,
    /// The kernel's mock CXL bus (tools/testing/cxl): `modprobe cxl_test`
    /// gives a CXL root with host bridges, switches, 11 memory devices
    /// (cxl_mock_mem) and auto-assembled regions, XOR interleave with
    /// `interleave_arithmetic=1`. Needs a kernel built with it
    /// (`--kernel debian-6.12-mock`, or `--kernel-tree`); cxl_mock_mem and
    /// dax_cxl are loaded at boot either way (no udev loads them later).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cxl_test: Option<MockBus>,
    /// When the NVDIMM and pmem drivers load: not in topology files, set
    /// for a case that starts guests again on crash images (power cuts).
    #[serde(skip)]
    pub pmem_drivers: PmemDrivers,
}

/// When the guest's NVDIMM bus and pmem drivers load.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PmemDrivers {
    /// At boot, by the guest's init.
    #[default]
    AtBoot,
    /// By the harness once the agent answers, after the point a warm start
    /// restores: a guest restored from a state saved before them reads the
    /// labels of its own backing files (a crash image's), not those the
    /// template's kernel had read into memory.
    AfterStart,
}

/// Whether the guest loads a mock bus at boot.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MockBus {
    /// Loaded before the pmem drivers: the buses are there when a case starts.
    Loaded,
    /// Shipped, not loaded: for ndctl's own tests, which load and unload it.
    Available,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct E820Pmem {
    pub size: Size,
    /// Start within guest RAM.
    pub offset: Size,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VirtioPmem {
    pub size: Size,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Machine {
    /// pc or q35; q35 when the topology has CXL, else pc.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<MachineKind>,
    #[serde(default = "default_memory")]
    pub memory: Size,
    #[serde(default = "default_cpus")]
    pub cpus: u32,
    #[serde(default = "default_nodes")]
    pub numa_nodes: u32,
    /// Memory slots kept free for NVDIMMs hotplugged by a case.
    #[serde(default)]
    pub hotplug_slots: u32,
    /// Address space kept for them (added to maxmem).
    #[serde(default = "zero")]
    pub hotplug_memory: Size,
}

fn zero() -> Size {
    Size(0)
}

impl Default for Machine {
    fn default() -> Self {
        Machine {
            kind: None,
            memory: default_memory(),
            cpus: default_cpus(),
            numa_nodes: default_nodes(),
            hotplug_slots: 0,
            hotplug_memory: zero(),
        }
    }
}

fn default_memory() -> Size {
    Size::gib(1)
}
fn default_cpus() -> u32 {
    2
}
fn default_nodes() -> u32 {
    1
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MachineKind {
    Pc,
    Q35,
}

impl MachineKind {
    pub fn qemu_name(self) -> &'static str {
        match self {
            MachineKind::Pc => "pc",
            MachineKind::Q35 => "q35",
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Nvdimm {
    /// Size of the backing file; the label area is carved from its end.
    pub size: Size,
    #[serde(default = "default_label_size")]
    pub label_size: Size,
    #[serde(default)]
    pub node: u32,
}

fn default_label_size() -> Size {
    Size(128 << 10)
}

/// Where a topology came from, for error messages.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub name: String,
    pub topology: Topology,
}

/// Resolves `spec`: a shipped topology name, or the path of a YAML file.
pub fn load(spec: &str) -> Result<Loaded> {
    let path = Path::new(spec);
    let looks_like_path = spec.ends_with(".yaml") || spec.ends_with(".yml") || spec.contains('/');
    let (name, origin, topology) = if looks_like_path {
        let topology: Topology = crate::yaml::load(path)?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| spec.to_owned());
        (name, path.display().to_string(), topology)
    } else {
        let text = named::get(spec).ok_or_else(|| Error::Unknown {
            name: spec.to_owned(),
            known: named::names().join(", "),
        })?;
        let topology: Topology = crate::yaml::parse(&format!("topology {spec}"), text)?;
        (spec.to_owned(), format!("`{spec}`"), topology)
    };
    let topology = topology.expand(&origin)?;
    topology.validate(&origin)?;
    Ok(Loaded { name, topology })
}

impl Topology {
    /// The machine QEMU emulates.
    pub fn machine_kind(&self) -> MachineKind {
        self.machine.kind.unwrap_or(if self.cxl.is_some() {
            MachineKind::Q35
        } else {
            MachineKind::Pc
        })
    }

    /// Writes out shorthands (`cxl: { ways: N }`).
    pub fn expand(mut self, origin: &str) -> Result<Topology> {
        if let Some(cxl) = &self.cxl {
            self.cxl = Some(cxl.expand().map_err(|reason| Error::Cxl {
                origin: origin.to_owned(),
                yaml_path: "cxl.ways".into(),
                reason,
            })?);
        }
        Ok(self)
    }

    /// Checks what QEMU and the kernel need before anything boots.
    pub fn validate(&self, origin: &str) -> Result<()> {
        self.validate_machine(origin)?;
        self.validate_nvdimms(origin)?;
        if let Some(cxl) = &self.cxl {
            if self.machine_kind() != MachineKind::Q35 {
                return Err(invalid(origin, "machine.kind", "CXL needs a q35 machine"));
            }
            cxl.validate()
                .map_err(|violation| invalid(origin, &violation.yaml_path, violation.reason))?;
        }
        self.validate_e820(origin)?;
        for (index, device) in self.virtio_pmem.iter().enumerate() {
            if device.size.bytes() % (2 << 20) != 0 || device.size.bytes() < 16 << 20 {
                return Err(invalid(
                    origin,
                    &format!("virtio_pmem[{index}].size"),
                    format!(
                        "a virtio-pmem device is a multiple of 2M and at least 16M; got {}",
                        device.size
                    ),
                ));
            }
        }
        let machine = &self.machine;
        if (machine.hotplug_slots == 0) != (machine.hotplug_memory.bytes() == 0) {
            return Err(invalid(
                origin,
                "machine.hotplug_memory",
                "hotplug needs both free slots (hotplug_slots) and address space (hotplug_memory)",
            ));
        }
        if self.nvdimms.len() > 256 {
            return Err(invalid(
                origin,
                "nvdimms",
                "QEMU allows at most 256 memory slots",
            ));
        }
        Ok(())
    }

    /// CPUs, NUMA nodes and RAM.
    fn validate_machine(&self, origin: &str) -> Result<()> {
        let machine = &self.machine;
        if machine.cpus == 0 {
            return Err(invalid(
                origin,
                "machine.cpus",
                "a guest needs at least one CPU",
            ));
        }
        if machine.numa_nodes == 0 || !machine.cpus.is_multiple_of(machine.numa_nodes) {
            return Err(invalid(
                origin,
                "machine.numa_nodes",
                format!(
                    "{} NUMA nodes for {} CPUs is not possible: each node is one socket with the \
                     same number of CPUs, so the CPU count must divide by the node count",
                    machine.numa_nodes, machine.cpus
                ),
            ));
        }
        if machine.memory.bytes() < Size::mib(256).bytes() {
            return Err(invalid(
                origin,
                "machine.memory",
                format!(
                    "{} of RAM is too little for the guest image; use at least 256M",
                    machine.memory
                ),
            ));
        }
        if !machine
            .memory
            .bytes()
            .is_multiple_of(u64::from(machine.numa_nodes) << 20)
        {
            return Err(invalid(
                origin,
                "machine.memory",
                format!(
                    "{} does not split evenly into {} NUMA nodes",
                    machine.memory, machine.numa_nodes
                ),
            ));
        }
        Ok(())
    }

    /// Each NVDIMM's node, label area and size.
    fn validate_nvdimms(&self, origin: &str) -> Result<()> {
        let nodes = self.machine.numa_nodes;
        for (index, nvdimm) in self.nvdimms.iter().enumerate() {
            let at = |field: &str| format!("nvdimms[{index}].{field}");
            if nvdimm.node >= nodes {
                return Err(invalid(
                    origin,
                    &at("node"),
                    format!(
                        "node {} does not exist: the machine has {nodes} NUMA node(s)",
                        nvdimm.node
                    ),
                ));
            }
            let (size, label) = (nvdimm.size.bytes(), nvdimm.label_size.bytes());
            if label != 0 && label < 128 << 10 {
                return Err(invalid(
                    origin,
                    &at("label_size"),
                    format!(
                        "QEMU needs a label area of at least 128K, or 0 for none; got {}",
                        nvdimm.label_size
                    ),
                ));
            }
            // QEMU carves the label area from the end of the file; a size of
            // 2M multiples plus the label size leaves a region of whole 2M
            // units (one whose available size can equal its size).
            let whole = |bytes: u64| bytes.is_multiple_of(2 << 20);
            let aligned = whole(size) || (size > label && whole(size - label));
            if !aligned || size < 128 << 20 {
                return Err(invalid(
                origin,
                    &at("size"),
                    format!(
                        "an NVDIMM is a multiple of 2M (or that plus its label size) and at least 128M; got {}",
                        nvdimm.size
                    ),
                ));
            }
        }
        Ok(())
    }

    /// e820 ranges must sit inside RAM, clear of the kernel below and of the
    /// initramfs QEMU loads at the top of RAM, and must not overlap.
    fn validate_e820(&self, origin: &str) -> Result<()> {
        let mem = self.machine.memory.bytes();
        let low = Size::mib(256).bytes();
        let mut taken: Vec<(u64, u64)> = Vec::new();
        for (index, range) in self.e820.iter().enumerate() {
            let (start, end) = (
                range.offset.bytes(),
                range.offset.bytes() + range.size.bytes(),
            );
            let reason = if range.size.bytes() == 0
                || range.size.bytes() % (2 << 20) != 0
                || start % (2 << 20) != 0
            {
                Some(format!(
                    "size and offset are multiples of 2M; got {} at {}",
                    range.size, range.offset
                ))
            } else if start < low || end + low > mem {
                Some(format!(
                    "{}..{} must lie within {}..{} of the machine's {} (the kernel sits below, the initramfs above)",
                    range.offset,
                    Size(end),
                    Size(low),
                    Size(mem.saturating_sub(low)),
                    self.machine.memory
                ))
            } else if taken
                .iter()
                .any(|(taken_start, taken_end)| start < *taken_end && *taken_start < end)
            {
                Some("e820 ranges overlap".into())
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(invalid(origin, &format!("e820[{index}]"), reason));
            }
            taken.push((start, end));
        }
        Ok(())
    }

    /// Memory slots and the maximum memory QEMU must reserve for the NVDIMMs.
    pub fn hotplug_space(&self) -> (usize, Size) {
        let machine = &self.machine;
        let slots = self.nvdimms.len() + self.virtio_pmem.len() + machine.hotplug_slots as usize;
        let dimms: u64 = self.nvdimms.iter().map(|d| d.size.bytes()).sum::<u64>()
            + self.virtio_pmem.iter().map(|d| d.size.bytes()).sum::<u64>();
        (
            slots.max(1),
            Size(machine.memory.bytes() + dimms + machine.hotplug_memory.bytes()),
        )
    }

    /// Whether QEMU needs memory slots and maxmem.
    pub fn has_memory_devices(&self) -> bool {
        self.has_nfit() || !self.virtio_pmem.is_empty()
    }

    /// Whether any libnvdimm bus exists in the guest.
    pub fn has_pmem(&self) -> bool {
        self.has_memory_devices()
            || self.cxl.is_some()
            || !self.e820.is_empty()
            || self.has_mock_bus()
    }

    /// Whether the topology has a mock bus (nfit_test or cxl_test, loaded
    /// or available): it needs a kernel with the mock modules, and its
    /// guest runs them instead of the real drivers.
    pub fn has_mock_bus(&self) -> bool {
        self.nfit_test.is_some() || self.cxl_test.is_some()
    }

    /// Whether QEMU needs ACPI NFIT (`nvdimm=on`): NVDIMMs now or later.
    pub fn has_nfit(&self) -> bool {
        !self.nvdimms.is_empty() || self.machine.hotplug_slots > 0
    }
}

#[cfg(test)]
mod tests;
