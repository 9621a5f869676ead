//! Topology to QEMU command line: a pure function, snapshot-tested.

use std::path::{Path, PathBuf};

use super::share::{self, Share};
use crate::drivers::Function;
use crate::topology::Topology;

/// The accelerator a guest runs under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// The files one guest uses, all inside its run folder.
#[derive(Clone, Debug)]
pub struct GuestFiles {
    pub qmp_socket: PathBuf,
    pub agent_socket: PathBuf,
    /// The host end of the interactive shell's console (`ndharness boot`),
    /// a port added to the running guest: not on the command line.
    pub shell_socket: PathBuf,
    pub serial_log: PathBuf,
    /// What the shell's console sent, as QEMU logs it.
    pub shell_log: PathBuf,
    /// One backing file per NVDIMM, in topology order.
    pub nvdimm_backing: Vec<PathBuf>,
    /// (persistent memory, label area) per CXL type-3 device, in creation order.
    pub cxl_backing: Vec<(PathBuf, PathBuf)>,
    /// One backing file per virtio-pmem device.
    pub virtio_pmem_backing: Vec<PathBuf>,
}

impl GuestFiles {
    /// The files of a guest of `topology` whose run folder is `run` (and
    /// whose sockets live in `sockets`); nothing is created.
    pub fn under(run: &Path, sockets: &Path, topology: &Topology) -> GuestFiles {
        let cxl_devices = topology.cxl.as_ref().map_or(0, |c| c.devices().len());
        GuestFiles {
            qmp_socket: sockets.join("qmp.sock"),
            agent_socket: sockets.join("agent.sock"),
            shell_socket: sockets.join("shell.sock"),
            serial_log: run.join("serial.log"),
            shell_log: run.join("shell.log"),
            nvdimm_backing: (0..topology.nvdimms.len())
                .map(|i| run.join(format!("nvdimm{i}.img")))
                .collect(),
            cxl_backing: (0..cxl_devices)
                .map(|i| {
                    (
                        run.join(format!("cxl{i}.mem")),
                        run.join(format!("cxl{i}.lsa")),
                    )
                })
                .collect(),
            virtio_pmem_backing: (0..topology.virtio_pmem.len())
                .map(|i| run.join(format!("vpmem{i}.img")))
                .collect(),
        }
    }

    /// Every backing file QEMU maps shared (NVDIMMs, CXL memory and label
    /// areas, virtio-pmem): what a saved state leaves out and keeps beside
    /// it instead.
    pub fn backing(&self) -> Vec<&Path> {
        let mut v: Vec<&Path> = self.nvdimm_backing.iter().map(PathBuf::as_path).collect();
        for (mem, lsa) in &self.cxl_backing {
            v.push(mem);
            v.push(lsa);
        }
        v.extend(self.virtio_pmem_backing.iter().map(PathBuf::as_path));
        v
    }
}

/// Everything the command line depends on.
#[derive(Clone, Debug)]
pub struct LaunchSpec<'a> {
    pub topology: &'a Topology,
    pub kernel: &'a Path,
    pub initrd: &'a Path,
    pub files: &'a GuestFiles,
    pub accel: Accel,
    /// Appended to the kernel command line after the harness's own options.
    pub extra_append: &'a str,
    /// A saved VM state to start from (`-incoming defer`, then QMP
    /// `migrate-incoming file:PATH`) instead of
    /// booting; the rest of the command line must be the one it was saved from.
    pub incoming: Option<&'a Path>,
    /// Host folders shared into the guest (9p).
    pub shares: &'a [Share],
    /// QEMU's gdbstub on this local TCP port, the kernel without KASLR.
    pub gdb: Option<u16>,
}

/// The QMP id of the guest agent's virtio-serial port; its VSERPORT_CHANGE
/// event tells the harness that the agent opened it.
pub const AGENT_PORT_ID: &str = "agent0";

/// The kernel command line.
pub fn kernel_append(spec: &LaunchSpec) -> String {
    let mut modules = super::modules::guest_modules(spec.topology);
    if !spec.shares.is_empty() {
        modules.extend(Function::Share.drivers().iter().map(|d| d.module));
    }
    let mut a = vec![
        "console=ttyS0".to_owned(),
        // An early panic reboots at once, and -no-reboot turns that into a
        // QEMU exit the harness sees.
        "panic=-1".to_owned(),
        "rdinit=/init".to_owned(),
        format!("ndharness.modules={}", super::modules::marked(&modules)),
    ];
    if spec.topology.has_mock_bus() {
        // The mock modules' index, where the kernel has one (the guest's
        // init; image::module_index): every other topology runs the real
        // drivers.
        a.push("ndharness.mock_buses".to_owned());
    }
    if spec.gdb.is_some() {
        // Symbols at the addresses vmlinux gives them.
        a.push("nokaslr".to_owned());
    }
    for r in &spec.topology.e820 {
        a.push(format!("memmap={}!{}", r.size, r.offset));
    }
    if !spec.extra_append.is_empty() {
        a.push(spec.extra_append.to_owned());
    }
    a.join(" ")
}

/// Builds the argv (without the program name) for one guest.
pub fn argv(spec: &LaunchSpec) -> Vec<String> {
    let t = spec.topology;
    let mut a: Vec<String> = Vec::new();
    machine_args(&mut a, spec);
    numa(&mut a, t);
    boot_args(&mut a, spec);
    channel_args(&mut a, spec.files);
    a.extend(share::args(spec.shares));
    if let Some(port) = spec.gdb {
        // Local only: the stub gives whoever connects the whole machine.
        push(&mut a, &["-gdb", &format!("tcp:127.0.0.1:{port}")]);
    }
    pmem_args(&mut a, t, spec.files);
    if let Some(c) = &t.cxl {
        cxl_args(&mut a, c, &spec.files.cxl_backing);
    }
    a
}

fn push(a: &mut Vec<String>, parts: &[&str]) {
    a.extend(parts.iter().map(|s| s.to_string()));
}

/// The machine: its kind and features, the accelerator and CPU, CPUs and
/// memory.
fn machine_args(a: &mut Vec<String>, spec: &LaunchSpec) {
    let t = spec.topology;
    let m = &t.machine;
    let nvdimm = if t.has_nfit() { ",nvdimm=on" } else { "" };
    push(
        a,
        &[
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
        ],
    );
    let cxl = if t.cxl.is_some() { ",cxl=on" } else { "" };
    push(
        a,
        &[
            "-machine",
            &format!("{}{nvdimm}{cxl}", t.machine_kind().qemu_name()),
        ],
    );
    // Region commit needs the guest to see no hypervisor: with it the kernel
    // refuses to flush CPU caches ("Failed to synchronize CPU cache state").
    let hide = if t.cxl.is_some() {
        ",hypervisor=off"
    } else {
        ""
    };
    // Single-threaded TCG: multi-threaded TCG lost a vCPU's timer wakeup
    // (RCU stall, guest never ready) or hit an iotlb_to_section assertion in
    // about one boot in a hundred; one thread boots as fast here.
    match spec.accel {
        Accel::Tcg => push(
            a,
            &["-accel", "tcg,thread=single", "-cpu", &format!("max{hide}")],
        ),
        Accel::Kvm => push(a, &["-accel", "kvm", "-cpu", &format!("host{hide}")]),
    }
    // One socket per NUMA node: CPUs of one socket split across nodes make
    // the kernel warn (topology_sane) at boot.
    let smp = if m.numa_nodes > 1 {
        format!("{},sockets={}", m.cpus, m.numa_nodes)
    } else {
        m.cpus.to_string()
    };
    push(a, &["-smp", &smp]);
    if !t.has_memory_devices() {
        push(a, &["-m", &m.memory.to_string()]);
    } else {
        let (slots, maxmem) = t.hotplug_space();
        push(
            a,
            &["-m", &format!("{},slots={slots},maxmem={maxmem}", m.memory)],
        );
    }
}

/// The kernel, the initramfs, the command line, and a state to restore.
fn boot_args(a: &mut Vec<String>, spec: &LaunchSpec) {
    push(
        a,
        &["-kernel", &path(spec.kernel), "-initrd", &path(spec.initrd)],
    );
    push(a, &["-append", &kernel_append(spec)]);
    if spec.incoming.is_some() {
        // The harness sets the migration capabilities the state was saved
        // with, then sends `migrate-incoming` (see vm::machine::state).
        push(a, &["-incoming", "defer"]);
    }
}

/// What the host talks to the guest through: the serial console (a log
/// file), QMP, the guest agent's virtio-serial port, and pvpanic.
fn channel_args(a: &mut Vec<String>, f: &GuestFiles) {
    push(
        a,
        &[
            "-chardev",
            &format!("file,id=serial0,path={}", path(&f.serial_log)),
        ],
    );
    push(a, &["-serial", "chardev:serial0"]);
    push(
        a,
        &[
            "-chardev",
            &format!(
                "socket,id=qmp0,path={},server=on,wait=off",
                path(&f.qmp_socket)
            ),
        ],
    );
    push(a, &["-mon", "chardev=qmp0,mode=control"]);
    push(
        a,
        &[
            "-chardev",
            &format!(
                "socket,id=agent0chr,path={},server=on,wait=off",
                path(&f.agent_socket)
            ),
        ],
    );
    push(a, &["-device", "virtio-serial-pci,id=vser0"]);
    push(
        a,
        &[
            "-device",
            &format!(
                "virtserialport,id={AGENT_PORT_ID},chardev=agent0chr,name=org.qemu.guest_agent.0"
            ),
        ],
    );
    push(a, &["-device", "pvpanic-pci"]);
}

/// The ACPI NFIT NVDIMMs and the virtio-pmem devices, each on its backing
/// file.
fn pmem_args(a: &mut Vec<String>, t: &Topology, f: &GuestFiles) {
    for (i, (d, backing)) in t.nvdimms.iter().zip(&f.nvdimm_backing).enumerate() {
        push(
            a,
            &[
                "-object",
                &format!(
                    "memory-backend-file,id=nvmem{i},share=on,mem-path={},size={}",
                    path(backing),
                    d.size
                ),
            ],
        );
        let label = if d.label_size.bytes() == 0 {
            String::new()
        } else {
            format!(",label-size={}", d.label_size)
        };
        let node = if t.machine.numa_nodes > 1 {
            format!(",node={}", d.node)
        } else {
            String::new()
        };
        push(
            a,
            &[
                "-device",
                &format!("nvdimm,id=nvdimm{i},memdev=nvmem{i}{label}{node}"),
            ],
        );
    }
    for (i, (v, backing)) in t.virtio_pmem.iter().zip(&f.virtio_pmem_backing).enumerate() {
        a.push("-object".into());
        a.push(format!(
            "memory-backend-file,id=vpmem{i},share=on,mem-path={},size={}",
            path(backing),
            v.size
        ));
        a.push("-device".into());
        a.push(format!("virtio-pmem-pci,id=virtio-pmem{i},memdev=vpmem{i}"));
    }
}

/// The QEMU ids of the PCI devices the topology asks for, as `query-pci`
/// reports them once QEMU built the machine.
pub fn pci_ids(t: &Topology) -> Vec<String> {
    let mut ids = vec!["vser0".to_owned()];
    ids.extend((0..t.virtio_pmem.len()).map(|i| format!("virtio-pmem{i}")));
    let Some(c) = &t.cxl else { return ids };
    for (h, hb) in c.host_bridges.iter().enumerate() {
        ids.push(format!("cxl.{h}"));
        for (r, rp) in hb.root_ports.iter().enumerate() {
            ids.push(format!("rp{h}.{r}"));
            if let Some(sw) = &rp.switch {
                ids.push(format!("us{h}.{r}"));
                ids.extend((0..sw.downstream.len()).map(|s| format!("ds{h}.{r}.{s}")));
            }
        }
    }
    ids.extend((0..c.devices().len()).map(|i| format!("cxl-pmem{i}")));
    ids
}

/// PCI bus numbers of host bridge `i`: spaced widely so that root ports and
/// switches below each have buses of their own.
fn bus_nr(i: usize) -> usize {
    12 + 40 * i
}

fn cxl_args(a: &mut Vec<String>, c: &crate::topology::cxl::Cxl, backing: &[(PathBuf, PathBuf)]) {
    let devices = c.devices();
    let mut slot = 0;
    let dev = |a: &mut Vec<String>, bus: &str, index: usize| {
        let (mem, lsa) = &backing[index];
        let d = devices[index].1;
        a.push("-object".into());
        a.push(format!(
            "memory-backend-file,id=cxlmem{index},share=on,mem-path={},size={}",
            path(mem),
            d.size
        ));
        a.push("-object".into());
        a.push(format!(
            "memory-backend-file,id=cxllsa{index},share=on,mem-path={},size={}",
            path(lsa),
            d.lsa
        ));
        a.push("-device".into());
        a.push(format!(
            "cxl-type3,bus={bus},persistent-memdev=cxlmem{index},lsa=cxllsa{index},id=cxl-pmem{index},sn={}",
            index + 1
        ));
    };
    let mut index = 0;
    for (h, hb) in c.host_bridges.iter().enumerate() {
        a.push("-device".into());
        a.push(format!(
            "pxb-cxl,bus_nr={},bus=pcie.0,id=cxl.{h}",
            bus_nr(h)
        ));
        for (r, rp) in hb.root_ports.iter().enumerate() {
            let rp_id = format!("rp{h}.{r}");
            slot += 1;
            a.push("-device".into());
            a.push(format!(
                "cxl-rp,port={r},bus=cxl.{h},id={rp_id},chassis=0,slot={slot}"
            ));
            if rp.device.is_some() {
                dev(a, &rp_id, index);
                index += 1;
            }
            let Some(sw) = &rp.switch else { continue };
            let us = format!("us{h}.{r}");
            a.push("-device".into());
            a.push(format!("cxl-upstream,bus={rp_id},id={us}"));
            for (s, dp) in sw.downstream.iter().enumerate() {
                let ds = format!("ds{h}.{r}.{s}");
                slot += 1;
                a.push("-device".into());
                a.push(format!(
                    "cxl-downstream,port={s},bus={us},id={ds},chassis=0,slot={slot}"
                ));
                if dp.device.is_some() {
                    dev(a, &ds, index);
                    index += 1;
                }
            }
        }
    }
    for (w, win) in c.windows.iter().enumerate() {
        let mut m: Vec<String> = win
            .targets
            .iter()
            .enumerate()
            .map(|(i, t)| format!("cxl-fmw.{w}.targets.{i}=cxl.{t}"))
            .collect();
        m.push(format!("cxl-fmw.{w}.size={}", win.size));
        m.push(format!(
            "cxl-fmw.{w}.interleave-granularity={}",
            win.granularity.bytes()
        ));
        a.push("-M".into());
        a.push(m.join(","));
    }
}

fn numa(a: &mut Vec<String>, t: &Topology) {
    let m = &t.machine;
    if m.numa_nodes <= 1 {
        return;
    }
    let per_node = crate::size::Size(m.memory.bytes() / u64::from(m.numa_nodes));
    for n in 0..m.numa_nodes {
        a.push("-object".into());
        a.push(format!("memory-backend-ram,id=ram{n},size={per_node}"));
        let cpus: String = (0..m.cpus)
            .filter(|c| c / (m.cpus / m.numa_nodes) == n)
            .map(|c| format!(",cpus={c}"))
            .collect();
        a.push("-numa".into());
        a.push(format!("node,nodeid={n}{cpus},memdev=ram{n}"));
    }
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(name: &str, accel: Accel) -> String {
        render_with(name, accel, &[], None)
    }

    fn render_with(name: &str, accel: Accel, shares: &[Share], gdb: Option<u16>) -> String {
        let t = crate::topology::load(name).unwrap().topology;
        let run = Path::new("<run>");
        let f = GuestFiles::under(run, run, &t);
        let spec = LaunchSpec {
            topology: &t,
            kernel: Path::new("<image>/vmlinuz"),
            initrd: Path::new("<image>/initramfs.cpio"),
            files: &f,
            accel,
            extra_append: "",
            incoming: None,
            shares,
            gdb,
        };
        // One option and its value per line reads like a review diff should.
        let mut out = String::new();
        for arg in argv(&spec) {
            if arg.starts_with('-') && !out.is_empty() {
                out.push('\n');
            } else if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(&arg);
        }
        out
    }

    #[test]
    fn argv_of_every_shipped_topology() {
        for name in crate::topology::named_topologies() {
            insta::assert_snapshot!(format!("argv-{name}"), render(name, Accel::Tcg));
        }
    }

    #[test]
    fn every_pci_id_appears_in_argv() {
        for name in crate::topology::named_topologies() {
            let t = crate::topology::load(name).unwrap().topology;
            let text = render(name, Accel::Tcg);
            for id in pci_ids(&t) {
                assert!(
                    text.contains(&format!("id={id},")) || text.contains(&format!("id={id}\n")),
                    "{name}: {id}"
                );
            }
        }
    }

    #[test]
    fn kvm_uses_host_cpu() {
        let text = render("nfit-1", Accel::Kvm);
        assert!(text.contains("-accel kvm\n-cpu host"), "{text}");
    }

    #[test]
    fn shares_add_9p_devices_and_their_modules() {
        let shares = [Share::parse("/tmp/x", Path::new("/")).unwrap()];
        let text = render_with("nfit-1", Accel::Tcg, &shares, None);
        assert!(
            text.contains("\n-fsdev local,id=fsdev0,path=/tmp/x,security_model=none\n-device virtio-9p-pci,id=share0,fsdev=fsdev0,mount_tag=share0\n"),
            "{text}"
        );
        assert!(text.contains(",ext4,9pnet_virtio,9p\n"), "{text}");
        assert!(!render("nfit-1", Accel::Tcg).contains("9p"));
    }

    #[test]
    fn gdb_adds_a_local_stub_and_nokaslr() {
        let text = render_with("nfit-1", Accel::Tcg, &[], Some(1234));
        assert!(text.contains("\n-gdb tcp:127.0.0.1:1234\n"), "{text}");
        assert!(text.contains(" nokaslr\n"), "{text}");
        assert!(!render("nfit-1", Accel::Tcg).contains("nokaslr"));
    }
}
